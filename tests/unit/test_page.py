"""The fleet page offline: the pure rendering (escaping, the card's Markdown, the key rule)
and the HTTP edge in process (FastAPI's TestClient) over bot folders on the local disk.
In a real browser, over a real run's folders: tests/integration/test_page_browser.py.
"""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from botfleet.artifacts import HandleStats, Progress, Result, Stats
from botfleet.fleet import BotFolder
from botfleet.layout import Layout
from botfleet.storage import Storage, file_uri
from botfleet_web import render
from botfleet_web.app import PAGE_CSP, file_type, fleet_app
from botfleet_web.card_html import card_body, card_to_html
from botfleet_web.source import Bot, Request, StoreSource, served_key

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


def hostile_bot(state: str = "succeeded", **files) -> Bot:
    stats = Stats(model_id="evil", handles={"evil": HandleStats(downloaded=9, kept=5, display_name=HOSTILE)})
    folder = BotFolder("evil", "file:///bots/evil", state, stats=stats, **files)
    return Bot(folder, samples=({"prompt": "My dream is", "prediction": HOSTILE},))


def no_raw_markup(page: str) -> None:
    """Nothing hostile became markup: no <script> but the page's own, no handler attribute."""
    assert re.findall(r"<script[^>]*>", page) == [f'<script src="{render.ASSETS}/page.js" defer>']
    assert "onerror=" not in page.replace("onerror=&quot;", "")
    assert "<img src=x" not in page


# --------------------------------------------------------------------------- pure rendering


def test_gallery_escapes_names_and_samples():
    page = render.gallery_page([hostile_bot()])
    no_raw_markup(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'src="/bots/evil/files/model/predictions.png"' in page
    assert "http-equiv" not in page  # nothing trains: no reloading


def test_gallery_filters_by_phase_and_reloads_while_training():
    training = hostile_bot("training", progress=Progress(status="training", step=3, total_steps=12, eta_seconds=65))
    done = Bot(BotFolder("done", "file:///bots/done", "succeeded"))
    page = render.gallery_page([training, done], "training")
    assert 'data-model-id="evil"' in page and 'data-model-id="done"' not in page
    assert '<progress max="12" value="3">' in page and "ETA 1m 05s" in page
    assert f'<meta http-equiv="refresh" content="{render.REFRESH_SECONDS}">' in page
    # an unknown phase shows everything and is never echoed
    page = render.gallery_page([training, done], '"><script>x</script>')
    assert 'data-model-id="done"' in page and "<script>x" not in page


def test_bot_page_on_a_cluster_escapes_conditions_and_events():
    request = Request(
        "ns",
        "evil",
        phase="Failed",
        reason="TrainingFailed",
        message=HOSTILE,
        conditions=({"type": "Ready", "status": "False", "message": HOSTILE},),
        events=({"type": "Warning", "reason": "Failed", "message": HOSTILE, "time": "t"},),
        display_names=(HOSTILE,),
    )
    bot = hostile_bot("failed", result=Result.failed("training", HOSTILE, "TrainingFailed"))
    page = render.bot_page(Bot(bot.files, bot.samples, request), None, "/v1/completions")
    no_raw_markup(page)
    assert "phase-failed" in page and "Conditions" in page and "Events" in page
    assert 'id="try-it"' not in page  # nothing to try: the bot failed


def test_try_it_box_only_for_a_finished_bot_and_an_api():
    bot = hostile_bot()
    assert 'data-endpoint="/v1/completions" data-model="evil"' in render.bot_page(bot, None, "/v1/completions")
    assert 'id="try-it"' not in render.bot_page(bot, None, None)


@pytest.mark.parametrize(
    "seconds, text", [(None, ""), (-1, ""), (float("nan"), ""), (42, "42s"), (185, "3m 05s"), (3720, "1h 02m")]
)
def test_duration(seconds, text):
    assert render.duration(seconds) == text


def test_card_markdown_raw_html_off_links_rewritten():
    card = (
        "---\nlanguage: en\nthumbnail: predictions.png\n---\n\n"
        '<div class="inline-flex">\n    <div>avatar</div>\n</div>\n\n'
        f"I was made for {HOSTILE}\n\n"
        "![Sample predictions](predictions.png)\n\n![Loss](loss.png)\n\n"
        "[files](README.md) [evil](javascript:alert(1)) [away](../../other/x.png) [hub](https://huggingface.co/gpt2)\n\n"
        "| a | b |\n| --- | --- |\n| 1 | 2 |\n"
    )
    assert card_body(card).startswith("I was made for")
    page = card_to_html(card, lambda key: render.file_url("bot", key) if served_key(key) else None)
    assert "language: en" not in page and "avatar" not in page
    assert '<img src="/bots/bot/files/model/predictions.png" alt="Sample predictions" />' in page
    assert '<img src="/bots/bot/files/model/loss.png" alt="Loss" />' in page
    assert 'href="/bots/bot/files/model/README.md"' in page
    assert 'href="https://huggingface.co/gpt2"' in page
    assert "javascript:" not in page.replace("[evil](javascript:", "")
    assert "../" not in page.split("[away]")[0] and "<a>away</a>" in page  # a traversal is no link
    assert "<table>" in page and "<script>" not in page and "&lt;script&gt;" in page


@pytest.mark.parametrize(
    "key, ok",
    [
        ("model/predictions.png", True),
        ("model/sub/file.json", True),
        ("model/../result.json", False),
        ("model/./x", False),
        ("model/.hidden", False),
        ("model/", False),
        ("model", False),
        ("data/train.txt", False),
        ("owner.json", False),
        ("/model/x.png", False),
        ("model//x.png", False),
        ("model/a\\b.png", False),
        ("model/%2e%2e/x", False),
    ],
)
def test_served_key(key, ok):
    assert (served_key(key) == key) is ok


def test_file_types():
    assert file_type("model/predictions.png") == ("image/png", True)
    assert file_type("model/README.md") == ("text/plain; charset=utf-8", True)
    assert file_type("model/x.svg") == ("application/octet-stream", False)  # an SVG can hold script
    assert file_type("model/model.safetensors") == ("application/octet-stream", False)


# --------------------------------------------------------------------------- the HTTP edge


@pytest.fixture
def fleet(tmp_path):
    """A succeeded bot with a hostile display name and a card, next to another bucket's file."""
    storage = Storage()
    output = file_uri(tmp_path / "bots")
    layout = Layout(f"{output}/evil")
    storage.write_json(layout.stats, hostile_bot().files.stats.to_dict())
    storage.write_json(layout.samples, {"samples": [{"prompt": "My dream is", "prediction": HOSTILE}]})
    storage.write_bytes(layout.thumbnail, PNG)
    storage.write_text(layout.card, "---\nthumbnail: predictions.png\n---\n\n# Card\n\n![p](predictions.png)\n")
    storage.write_json(layout.result, Result("succeeded", model=layout.model).to_dict())
    storage.write_json(layout.owner, {"namespace": "ns", "name": "evil", "uid": "u"})
    (tmp_path / "secret.txt").write_text("not yours")
    return StoreSource(storage, output)


def test_pages_files_and_headers(fleet):
    client = TestClient(fleet_app(fleet, completions_url="/v1/completions"))
    gallery = client.get("/")
    assert gallery.status_code == 200 and gallery.headers["content-security-policy"] == PAGE_CSP
    assert "'unsafe-inline'" not in PAGE_CSP
    no_raw_markup(gallery.text)
    page = client.get("/bots/evil")
    assert page.status_code == 200 and "<h1>Card</h1>" in page.text and 'id="try-it"' in page.text
    assert 'href="/bots/evil/files/model/README.md"' in page.text  # the model's files are listed
    picture = client.get("/bots/evil/files/model/predictions.png")
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert picture.content == PNG and picture.headers["x-content-type-options"] == "nosniff"
    assert client.get("/assets/page.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/bots/nobody").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/bots/evil/files/result.json",
        "/bots/evil/files/owner.json",
        "/bots/evil/files/model/../result.json",
        "/bots/evil/files/model/%2e%2e/%2e%2e/secret.txt",
        "/bots/evil/files/model/..%2f..%2fsecret.txt",
        "/bots/..%2fsecret.txt/files/model/x.png",
        "/bots/evil/files/model/missing.png",
        "/assets/../app.py",
    ],
)
def test_nothing_outside_a_bots_model_folder(fleet, path):
    response = TestClient(fleet_app(fleet)).get(path)
    assert response.status_code == 404 and "not yours" not in response.text


def test_get_only(fleet):
    client = TestClient(fleet_app(fleet))
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/").status_code == 405
        assert getattr(client, method)("/bots/evil").status_code == 405


def test_bearer_token(fleet):
    client = TestClient(fleet_app(fleet, token="s3cret"))
    assert client.get("/").status_code == 401
    assert client.get("/bots/evil/files/model/predictions.png").status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.get("/", headers={"Authorization": "Bearer s3cret"})
    assert answer.status_code == 200 and "s3cret" not in answer.text
    assert client.get("/healthz").status_code == 200  # the probes carry no token


def test_an_unreachable_store_is_a_503_without_details(tmp_path):
    from botfleet.storage import S3Config

    storage = Storage(S3Config("http://127.0.0.1:9", "key", "very-secret"))
    response = TestClient(fleet_app(StoreSource(storage, "s3://bots"))).get("/")
    assert response.status_code == 503 and "very-secret" not in response.text and "127.0.0.1" not in response.text
    assert json.dumps(dict(response.headers)).count("very-secret") == 0


def test_several_outputs_first_one_wins(tmp_path):
    storage = Storage()
    first, second = file_uri(tmp_path / "a"), file_uri(tmp_path / "b")
    storage.write_json(Layout(f"{first}/same").progress, Progress(status="training", step=1, total_steps=2).to_dict())
    storage.write_json(Layout(f"{second}/same").result, Result("succeeded").to_dict())
    storage.write_json(Layout(f"{second}/other").result, Result("succeeded").to_dict())
    source = StoreSource(storage, [first, second])
    assert [(b.model_id, b.phase) for b in source.bots()] == [("other", "succeeded"), ("same", "training")]
    assert source.bot("same").files.model_uri == f"{first}/same" and source.bot("other").phase == "succeeded"
    assert source.bot("missing") is None and source.bot("../a") is None


def test_mounted_on_another_app_copied_as_ray_serve_copies_it(fleet):
    """Ray Serve pickles the ingress app by value into each replica; the gateway provides
    the source there once started, and the copied routes find it."""
    from fastapi import FastAPI
    from ray import cloudpickle
    from ray._common.serialization import pickle_dumps
    from ray.serve._private.utils import ensure_serialization_context

    from botfleet_web.app import mount_fleet_page
    from botfleet_web.source import ProvidedSource, provide_source

    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict:
        return {"data": []}

    mount_fleet_page(app, ProvidedSource("test-copy"))
    ensure_serialization_context()  # then the copy serve.ingress makes (ray/serve/api.py)
    copy = TestClient(cloudpickle.loads(pickle_dumps(app, error_msg="the page does not pickle")))
    assert copy.get("/").status_code == 503  # before the gateway started: the store's error page
    provide_source("test-copy", fleet)
    assert copy.get("/v1/models").json() == {"data": []}
    page = copy.get("/bots/evil")
    assert page.status_code == 200 and 'data-endpoint="/v1/completions"' in page.text
    assert copy.get("/bots/evil/files/model/predictions.png").content == PNG


def test_as_a_router(fleet):
    from fastapi import FastAPI

    from botfleet_web.app import fleet_router

    app = FastAPI()
    app.include_router(fleet_router(fleet, token="t"), prefix="/fleet")
    client = TestClient(app)
    assert client.get("/fleet/").status_code == 401
    assert client.get("/fleet/bots/evil", headers={"Authorization": "Bearer t"}).status_code == 200
