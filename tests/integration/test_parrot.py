"""The parrot check both ways, on real tiny trainings (Ray Train + DeepSpeed on CPU) against
the embedded S3 server: a bot trained many epochs on a few posts repeats them and is not
published; one trained once over many varied posts does not, and is (to the Hub's
stand-in)."""

from __future__ import annotations

import random

import pytest

from botfleet.api import parse_spec
from botfleet.artifacts import PUBLISHED, REFUSED
from botfleet.hub import HubRepo
from botfleet.layout import Layout
from botfleet.parrot import ParrotReport
from botfleet.publishing import publish_bot
from botfleet.reasons import Reason
from botfleet.storage import join
from botfleet_jobs.publish import record_parrot_check
from botfleet_jobs.train_driver import TrainOptions, train
from tests.fakes.hub_stand_in import HubStandIn
from tests.fixtures.training import EOT, spec_dict, upload_tiny_model

pytestmark = pytest.mark.slow

FEW_POSTS = [
    "the lighthouse keeper painted seven green boats before the storm reached the harbour at dawn",
    "nobody expected the purple giraffe to win the chess tournament in the village library last winter",
    "my grandmother grows enormous pumpkins and sells them to confused tourists every october",
]
WORDS = (
    "apple river cloud stone music quiet window garden yellow bridge paper winter candle forest "
    "silver ocean market letter dream mountain coffee little morning evening street yesterday"
).split()


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # tests run offline otherwise
    with HubStandIn({"hf-test-token": {"org"}}) as stand_in:
        yield stand_in


def trained_bot(storage, tiny_model_dir, name: str, posts: list[str], copies: int, tmp_path, **training):
    """Train the tiny GPT-2 on ``copies`` shuffled copies of ``posts`` (one pass over them,
    so one checkpoint); then the job's parrot check."""
    base = upload_tiny_model(storage, tiny_model_dir)
    spec = parse_spec(spec_dict(storage.uri("bots", name), base, epochs=1, **training))
    rng = random.Random(0)
    text = [post for _ in range(copies) for post in rng.sample(posts, len(posts))]
    data = join(spec.model_uri, "data")
    storage.write_text(join(data, "train.txt"), EOT + EOT.join(text) + EOT)
    storage.write_text(join(data, "valid.txt"), EOT + EOT.join(posts[:3]) + EOT)
    storage.write_json(join(data, "stats.json"), {"model_id": spec.model_id, "epochs": 1, "handles": {}})
    train(spec, storage.config, TrainOptions(checkpoint_every_steps=0, progress_every_seconds=5))
    model_dir = tmp_path / name
    storage.download_dir(Layout(spec.model_uri).model, model_dir)
    record = record_parrot_check(spec, storage, model_dir)
    return spec, ParrotReport.from_dict(record["parrot"])


def test_a_bot_trained_many_epochs_on_few_posts_parrots_and_is_not_published(
    storage, tiny_model_dir, ray_cluster, hub, tmp_path
):
    spec, report = trained_bot(
        storage, tiny_model_dir, "parrot", FEW_POSTS, copies=100, tmp_path=tmp_path, blockSize=32, batchSizePerWorker=1
    )
    assert report.samples == 32 and report.too_high, report
    assert report.longest_run >= 12, report
    # Recorded in the store's training.json, which is what publishing reads.
    assert storage.read_json(Layout(spec.model_uri).training)["parrot"]["copying"] == report.copying

    publication = publish_bot(spec, storage, HubRepo("org/parrot", hub.url), "hf-test-token", allow_parrot=False)
    assert publication.status == REFUSED and publication.reason == Reason.PARROT_CHECK_FAILED
    assert f"{report.copying} of 32 samples" in publication.error and "allowParrot" in publication.error
    assert not any(post[:30] in publication.error for post in FEW_POSTS)  # counts, never the posts
    assert hub.log == []  # refused before any call to the Hub

    allowed = publish_bot(spec, storage, HubRepo("org/parrot", hub.url), "hf-test-token", allow_parrot=True)
    assert allowed.status == PUBLISHED, allowed


def test_an_ordinary_bot_does_not_parrot_and_is_published(storage, tiny_model_dir, ray_cluster, hub, tmp_path):
    rng = random.Random(7)
    posts = [" ".join(rng.choice(WORDS) for _ in range(14)) for _ in range(400)]
    spec, report = trained_bot(
        storage, tiny_model_dir, "ordinary", posts, copies=1, tmp_path=tmp_path, learningRate=1e-3
    )
    assert report.samples == 32 and not report.too_high, report

    publication = publish_bot(spec, storage, HubRepo("org/ordinary", hub.url), "hf-test-token", allow_parrot=False)
    assert publication.status == PUBLISHED, publication
    card = hub.repos["org/ordinary"].files()["README.md"].decode()
    assert f"- Parrot check: {report.summary()}" in card
