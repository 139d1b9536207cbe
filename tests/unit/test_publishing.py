"""Publishing's pure parts: the schema, the parrot index and verdict, the Hub card's links,
TARGET resolution, and when the operator tries a failed publish again."""

from __future__ import annotations

import datetime as dt

import pytest

from botfleet import api
from botfleet.artifacts import FAILED, PUBLISHED, REFUSED, Publication
from botfleet.card import CardLinks, hub_card_links, render_card
from botfleet.errors import UserError
from botfleet.hub import redact
from botfleet.model_target import ModelTarget, target_place
from botfleet.parrot import ParrotReport, publish_refusal
from botfleet.reasons import Reason
from botfleet_jobs.parrot import NgramIndex, measure, posts
from botfleet_operator import publish_status
from botfleet_operator.status import is_terminal_for

HANDLES = [{"handle": "alice", "source": {"archive": {"uri": "s3://uploads/alice.zip"}}}]
HF = {"repo": "org/alice-bot", "tokenSecretRef": {"name": "hub", "key": "token"}}


def spec_with(publish: dict) -> api.BotSpec:
    return api.parse_spec({"handles": HANDLES, "output": {"uri": "s3://bots/"}, "publish": publish})


# --------------------------------------------------------------------------- schema


def test_publish_spec_defaults():
    publish = spec_with({"huggingFace": HF}).publish
    assert publish.hugging_face.repo == "org/alice-bot" and publish.hugging_face.private is False
    assert publish.hugging_face.endpoint == "https://huggingface.co"
    assert publish.allow_parrot is False
    assert api.parse_spec({"handles": HANDLES, "output": {"uri": "s3://bots/"}}).publish is None


@pytest.mark.parametrize(
    "publish, message",
    [
        ({"huggingFace": {**HF, "repo": "no-org"}}, "spec.publish.huggingFace.repo: 'no-org' does not match"),
        ({"huggingFace": {**HF, "private": "yes"}}, "spec.publish.huggingFace.private: must be a boolean, got str"),
        ({"allowParrot": 1}, "spec.publish.allowParrot: must be a boolean, got int"),
        ({"huggingFace": {"repo": "org/a"}}, "spec.publish.huggingFace.tokenSecretRef: required"),
        ({"huggingFace": {**HF, "token": "hf_x"}}, "spec.publish.huggingFace.token: unknown field"),
    ],
)
def test_publish_spec_errors_name_the_field(publish, message):
    with pytest.raises(api.ValidationError) as error:
        spec_with(publish)
    assert message in str(error.value)


def test_the_published_column_is_in_kubectl_get_wide():
    columns = api.crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    published = next(c for c in columns if c["name"] == "Published")
    assert published["jsonPath"] == ".status.publish.url" and published["priority"] == 1


def test_a_spec_goes_back_to_its_document():
    spec = spec_with({"huggingFace": HF, "allowParrot": True})
    assert api.parse_spec(api.spec_document(spec)) == spec


# --------------------------------------------------------------------------- the parrot check


def test_the_index_finds_the_longest_verbatim_run():
    index = NgramIndex(n=3)
    index.add([1, 2, 3, 4, 5, 6])
    assert index.longest_copied_run([9, 1, 2, 3, 4, 9]) == 4
    assert index.longest_copied_run([1, 2, 9, 3, 4, 5, 6]) == 4
    assert index.longest_copied_run([3, 2, 1, 6, 5, 4]) == 0
    assert index.longest_copied_run([1, 2]) == 0  # shorter than a run


def test_the_measure_counts_samples_with_a_run():
    index = NgramIndex(n=3)
    index.add([1, 2, 3, 4])
    report = measure([[1, 2, 3], [7, 8, 9], [0, 1, 2, 3, 4], [2, 3]], index)
    assert (report.samples, report.copying, report.longest_run, report.run_tokens) == (4, 2, 4, 3)
    assert report.share == 0.5 and report.too_high


def test_posts_of_a_train_text_are_distinct():
    text = "<|endoftext|>a b<|endoftext|>c d<|endoftext|>a b<|endoftext|>"
    assert posts(text) == ["a b", "c d"]


def test_publishing_refuses_a_parrot_and_says_what_it_found():
    parrot = ParrotReport(samples=32, copying=20, longest_run=31)
    refusal = publish_refusal(parrot, allowed=False, how_to_allow="pass --allow-parrot")
    assert refusal == (
        "parrot check: 20 of 32 samples (62%) repeat a run of 8 or more tokens of the training posts verbatim"
        " (longest 31 tokens), above the limit of 25%: pass --allow-parrot to publish it anyway"
    )
    assert publish_refusal(parrot, allowed=True, how_to_allow="x") is None
    assert publish_refusal(ParrotReport(samples=32, copying=8), allowed=False, how_to_allow="x") is None
    assert "no parrot check" in publish_refusal(None, allowed=False, how_to_allow="x")
    assert ParrotReport.from_dict(parrot.to_dict()) == parrot
    assert ParrotReport.from_dict({"samples": "many"}) is None


# --------------------------------------------------------------------------- the card on the Hub


def test_the_hub_card_points_at_the_hub():
    spec = api.parse_spec(
        {
            "handles": [{"handle": "alice", "source": {"dataset": {"uri": "s3://uploads/alice.jsonl"}}}],
            "output": {"uri": "s3://bots/"},
            "training": {"baseModel": "s3://models/tiny"},
        }
    )
    store = CardLinks(
        dataset_uri="s3://bots/alice/data/",
        checkpoints_uri="s3://bots/alice/checkpoints/",
        model_uri="s3://bots/alice/model/",
        thumbnail_url="predictions.png",
        model_for_pipeline="alice",
    )
    training = {"parrot": {"samples": 32, "copying": 0}}
    card = render_card(spec, {}, training, hub_card_links(store, "org/alice", "https://hub.example/"))
    assert "thumbnail: https://hub.example/org/alice/resolve/main/predictions.png" in card
    assert "model='org/alice'" in card
    assert "](s3://" not in card and "`s3://" not in card and "copy that folder" not in card
    assert "- Parrot check: 0 of 32 samples (0%) repeat a run of 8 or more tokens" in card
    # The store's card keeps its links.
    assert "](s3://bots/alice/checkpoints/)" in render_card(spec, {}, training, store)


def test_the_token_is_redacted():
    assert redact("Bearer hf_abc failed", "hf_abc") == "Bearer <token> failed"
    assert redact("nothing", None) == "nothing"


# --------------------------------------------------------------------------- TARGET


def test_model_targets(tmp_path):
    assert target_place("s3://bots/alice/model/").uri == "s3://bots/alice/model"
    assert ModelTarget("alice", "s3://bots/alice/model").bot_uri == "s3://bots/alice"
    local = target_place(str(tmp_path))
    assert local.uri == f"file://{tmp_path}" and local.request is None
    request = tmp_path / "alice.yaml"
    request.write_text(
        "apiVersion: botfleet.dev/v1alpha1\nkind: BotRequest\nmetadata: {name: alice}\n"
        "spec: {handles: [{handle: alice, source: {bluesky: {}}}], output: {uri: 's3://bots/'}}\n"
    )
    place = target_place(str(request))
    assert place.uri == "s3://bots/alice" and place.request.name == "alice"
    with pytest.raises(UserError, match="not a BotRequest file"):
        target_place(str(tmp_path / "missing.yaml"))


# --------------------------------------------------------------------------- the operator's retry

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def failed(reason: Reason, at: str, repo: str = "org/a") -> Publication:
    return Publication(FAILED, repo=repo, reason=reason, error="x", attempted_at=at)


def test_when_the_operator_publishes_again():
    assert publish_status.wants_publish_retry(None, "org/a", NOW)  # the job did not get to it
    assert publish_status.wants_publish_retry(Publication(PUBLISHED, repo="org/old"), "org/a", NOW)
    assert not publish_status.wants_publish_retry(Publication(PUBLISHED, repo="org/a"), "org/a", NOW)
    assert not publish_status.wants_publish_retry(
        Publication(REFUSED, repo="org/a", reason=Reason.PARROT_CHECK_FAILED), "org/a", NOW
    )
    assert publish_status.wants_publish_retry(failed(Reason.HUB_UNAUTHORIZED, "2026-01-01T11:58:00Z"), "org/a", NOW)
    assert not publish_status.wants_publish_retry(failed(Reason.HUB_FORBIDDEN, "2026-01-01T11:59:30Z"), "org/a", NOW)


def test_a_failed_publish_keeps_the_request_unfinished():
    def body(reason):
        status = {"phase": "Failed", "reason": reason, "observedGeneration": 1}
        return {"metadata": {"generation": 1}, "status": status}

    assert not is_terminal_for(body(Reason.HUB_UNREACHABLE))
    assert is_terminal_for(body(Reason.PARROT_CHECK_FAILED))
    assert is_terminal_for(body(Reason.TRAINING_FAILED))


def test_the_job_gets_the_hub_token_from_its_secret():
    from botfleet_operator.rayjob import referenced_secrets

    assert api.SecretRef("hub", "token") in referenced_secrets(spec_with({"huggingFace": HF}))
