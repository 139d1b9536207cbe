"""Publish one bot from the object store to the Hub: the parrot check's verdict, the card
that points at the Hub, one commit, and ``publish.json`` saying what happened.

The job calls :func:`publish_bot` after training; the operator calls it again when that
failed (a bad token, no rights, the Hub away), without training again; `botfleet publish`
calls it for a request or a model folder. Torch-free, like the rest of the core.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from botfleet import api
from botfleet.artifacts import FAILED, PUBLISHED, REFUSED, Publication, Stats, TrainingRecord
from botfleet.card import CardLinks, hub_card_links, render_card
from botfleet.errors import one_line
from botfleet.hub import HF_TOKEN_ENV, HubRepo, PublishError, publish_folder, redact
from botfleet.layout import Layout, folder
from botfleet.parrot import ParrotReport, publish_refusal
from botfleet.reasons import Reason
from botfleet.secrets import secret_env_name
from botfleet.storage import NotFound, Storage, StorageError
from botfleet.timestamps import now_iso

ALLOW_IN_SPEC = "set spec.publish.allowParrot: true"


def hub_repo(spec: api.BotSpec) -> HubRepo | None:
    """Where the request publishes, None when it does not."""
    hf = spec.publish.hugging_face if spec.publish else None
    return HubRepo(hf.repo, hf.endpoint, hf.private) if hf else None


def job_token(spec: api.BotSpec) -> str | None:
    """The token in the job: its Secret key as the operator injects it, else ``$HF_TOKEN``
    (a request run with `botfleet run`)."""
    ref = spec.publish.hugging_face.token_secret_ref
    return os.environ.get(secret_env_name(ref)) or os.environ.get(HF_TOKEN_ENV) or None


def hub_card(spec: api.BotSpec, storage: Storage, model_folder: Path, hub: HubRepo, tracking_run_url: str | None):
    """The card for the Hub: the one renderer, this bot's facts, the Hub's links."""
    layout = Layout(spec.model_uri)
    stats = _read_optional(storage, layout.stats)
    training = _read_local_json(model_folder / "training.json")
    links = CardLinks(
        dataset_uri=folder(layout.data),
        checkpoints_uri=folder(layout.checkpoints),
        model_uri=folder(layout.model),
        thumbnail_url="predictions.png" if (model_folder / "predictions.png").exists() else None,
        model_for_pipeline=spec.model_id,
        tracking_run_url=tracking_run_url,
    )
    return render_card(
        spec, Stats.from_dict(stats).to_dict() if stats else {}, training, hub_card_links(links, hub.repo, hub.endpoint)
    )


def publish_bot(
    spec: api.BotSpec,
    storage: Storage,
    hub: HubRepo,
    token: str | None,
    *,
    allow_parrot: bool,
    how_to_allow: str = ALLOW_IN_SPEC,
    model_uri: str | None = None,
    tracking_run_url: str | None = None,
) -> Publication:
    """Publish the model folder (default: the request's ``model/``) as one commit of
    ``hub.repo``, unless the parrot check forbids it. Never raises for a failed publish:
    the Publication says what happened, without the token."""
    model_uri = model_uri or Layout(spec.model_uri).model
    attempt = {"repo": hub.repo, "url": hub.url, "attempted_at": now_iso()}
    try:
        with tempfile.TemporaryDirectory(prefix="botfleet-publish-") as tmp:
            local = Path(tmp) / "model"
            storage.download_dir(model_uri, local)
            training = TrainingRecord.from_dict(_read_local_json(local / "training.json"))
            refusal = publish_refusal(ParrotReport.from_dict(training.parrot), allow_parrot, how_to_allow)
            if refusal:
                return Publication(REFUSED, reason=Reason.PARROT_CHECK_FAILED, error=refusal, **attempt)
            card = hub_card(spec, storage, local, hub, tracking_run_url)
            message = f"botfleet: the @{spec.model_id} bot" + (
                f" (run {training.run_name})" if training.run_name else ""
            )
            commit = publish_folder(local, card, hub, token or "", message)
    except PublishError as error:
        return Publication(FAILED, reason=error.reason, error=redact(str(error), token), **attempt)
    except (StorageError, OSError, ValueError) as error:
        message = f"cannot read the model at {folder(model_uri)}: {one_line(error)}"
        return Publication(FAILED, reason=Reason.PUBLISH_FAILED, error=redact(message, token), **attempt)
    return Publication(PUBLISHED, commit=commit.commit, **attempt)


def _read_local_json(path: Path) -> dict:
    import json

    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return value if isinstance(value, dict) else {}


def _read_optional(storage: Storage, uri: str) -> dict:
    try:
        value = storage.read_json(uri)
    except NotFound:
        return {}
    return value if isinstance(value, dict) else {}
