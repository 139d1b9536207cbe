"""The job's last steps for a trained model: the parrot check (recorded in training.json,
shown in the card) and, when the request asks, the publish to the Hub (recorded in
publish.json). A failed publish does not fail the job: the model is safe in the object
store and the operator retries the publish without training again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from botfleet import api
from botfleet.artifacts import Publication
from botfleet.layout import Layout
from botfleet.publishing import hub_repo, job_token, publish_bot
from botfleet.storage import Storage

from .parrot import parrot_check


def record_parrot_check(spec: api.BotSpec, storage: Storage, model_dir: Path) -> dict:
    """Measure the model in ``model_dir`` (a copy of ``model/``) against the training posts
    and add the report to training.json, here and in the store; returns the record."""
    layout = Layout(spec.model_uri)
    report = parrot_check(str(model_dir), storage.read_text(layout.train_txt), seed=spec.training.seed)
    record = {**json.loads((model_dir / "training.json").read_text()), "parrot": report.to_dict()}
    (model_dir / "training.json").write_text(json.dumps(record, indent=2))
    storage.write_json(layout.training, record)
    print(f"parrot check: {report.summary()}", file=sys.stderr)
    return record


def publish_if_asked(spec: api.BotSpec, storage: Storage, tracking_run_url: str | None) -> Publication | None:
    """Publish to the Hub when ``spec.publish`` asks; publish.json says how it went."""
    hub = hub_repo(spec)
    if hub is None:
        return None
    publication = publish_bot(
        spec,
        storage,
        hub,
        job_token(spec),
        allow_parrot=spec.publish.allow_parrot,
        tracking_run_url=tracking_run_url,
    )
    storage.write_json(Layout(spec.model_uri).publication, publication.to_dict())
    if publication.published:
        print(f"published: {publication.url} (commit {publication.commit})", file=sys.stderr)
    else:
        print(f"not published ({publication.reason}): {publication.error}", file=sys.stderr)
    return publication
