"""The fleet page in a real browser (headless Chromium, Selenium), over folders real botfleet
runs wrote to the real S3 server: one bot trained end to end (``botfleet run``, a tiny
GPT-2) whose display name is HTML with script, one whose data stage alone ran
(``botfleet prepare``). The page alone (``python -m botfleet_web``), and mounted in
``botfleet serve`` on the completions API's port, where its "try it" box generates.
Screenshots: out/test-artifacts/page/.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
import requests
import yaml
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from bench.synthetic import write_archive
from botfleet import api
from botfleet.storage import Storage
from tests.fixtures.browser import PageServer, console_errors, screenshot
from tests.fixtures.cluster import free_port, wait_for

pytestmark = pytest.mark.slow

# The display name tries every way in: markup, an inline script, an event handler.
HOSTILE_NAME = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


def request_file(tmp_path, name: str, handle: dict, output: str, **training) -> str:
    request = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name},
        "spec": {"handles": [handle], "training": training, "output": {"uri": output}},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(request))
    return str(path)


def cli(embedded_s3, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "botfleet.cli", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **embedded_s3.config.to_env()},
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def fleet_output(embedded_s3, tmp_path_factory):
    """s3://<bucket>: ``alice`` (trained, hostile display name) and ``bob`` (data only)."""
    from botfleet_jobs.job import publish_random_base_model

    tmp = tmp_path_factory.mktemp("page")
    storage = Storage(embedded_s3.config)
    bucket = f"page-{secrets.token_hex(3)}"
    storage.ensure_bucket(bucket)
    storage.ensure_bucket("models")
    base = publish_random_base_model(storage, "tiny", "s3://models/tiny-gpt2")
    output = f"s3://{bucket}"
    alice = write_archive(tmp / "alice.zip", 300, seed=3)
    source = {"archive": {"uri": f"file://{alice}"}}
    trained = request_file(
        tmp,
        "alice",
        {"handle": "alice", "displayName": HOSTILE_NAME, "source": source},
        output,
        baseModel=base,
        epochs=1,
        blockSize=64,
        batchSizePerWorker=4,
        precision="fp32",
        learningRate=0.002,
    )
    cli(embedded_s3, "run", trained)
    bob = write_archive(tmp / "bob.zip", 200, seed=4)
    cli(
        embedded_s3,
        "prepare",
        request_file(tmp, "bob", {"handle": "bob", "source": {"archive": {"uri": f"file://{bob}"}}}, output),
    )
    return output


@pytest.fixture(scope="module")
def page(embedded_s3, fleet_output, tmp_path_factory):
    log = tmp_path_factory.mktemp("page-server") / "page.log"
    server = PageServer(["--output", fleet_output], embedded_s3.config.to_env(), log).wait_ready()
    yield server
    server.stop()


def test_gallery_lists_the_bots(browser, page):
    browser.get(page.url + "/")
    entries = {e.get_attribute("data-model-id"): e for e in browser.find_elements(By.CSS_SELECTOR, "li.bot")}
    assert set(entries) == {"alice", "bob"}
    assert "succeeded" in entries["alice"].text and "preparing" in entries["bob"].text
    thumbnail = entries["alice"].find_element(By.CSS_SELECTOR, "img.thumbnail")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", thumbnail) > 0
    assert "kept" in entries["bob"].find_element(By.CSS_SELECTOR, "table.counts").text
    screenshot(browser, "gallery")
    assert not console_errors(browser)
    browser.get(page.url + "/?phase=preparing")
    assert [e.get_attribute("data-model-id") for e in browser.find_elements(By.CSS_SELECTOR, "li.bot")] == ["bob"]


def test_bot_page_shows_the_card_and_its_pictures(browser, page):
    browser.get(page.url + "/bots/alice")
    card = browser.find_element(By.CSS_SELECTOR, "article.card")
    headings = [h.text for h in card.find_elements(By.TAG_NAME, "h2")]
    assert "Training procedure" in headings and "How to use" in headings
    sources = [img.get_attribute("src") for img in card.find_elements(By.TAG_NAME, "img")]
    assert {s.rsplit("/", 1)[-1] for s in sources} == {"loss.png", "predictions.png"}
    for img in card.find_elements(By.TAG_NAME, "img"):
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0
    for url in sources:
        answer = requests.get(url, timeout=30)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("image/"), url
    files = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "ul.files a")]
    assert {"README.md", "config.json", "loss_history.json", "loss.png"} <= set(files)
    screenshot(browser, "bot-alice")
    assert not console_errors(browser)


def test_a_hostile_display_name_is_text_and_runs_nothing(browser, page):
    for path in ("/", "/bots/alice"):
        browser.get(page.url + path)
        shown = browser.find_element(By.CSS_SELECTOR, "p.names").text
        assert HOSTILE_NAME in shown  # the markup is shown as the text it is
        assert browser.execute_script("return window.pwned === undefined")
        scripts = [s.get_attribute("src") for s in browser.find_elements(By.TAG_NAME, "script")]
        assert scripts == [page.url + "/assets/page.js"]
        assert not browser.find_elements(By.CSS_SELECTOR, 'img[src="x"], img[onerror]')
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018 - asking is the check
    screenshot(browser, "hostile-name")


@pytest.fixture(scope="module")
def served(embedded_s3, fleet_output, tmp_path_factory):
    """``botfleet serve`` over the same folders: the API and the page on one port."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [sys.executable, "-m", "botfleet.cli", "serve", "--output", fleet_output, "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **embedded_s3.config.to_env()}
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready():
            assert proc.poll() is None, log_path.read_text()[-3000:]
            models = requests.get(url + "/v1/models", timeout=5).json()["data"]
            return any(m["id"] == "alice" for m in models) and requests.get(url + "/", timeout=30).ok

        wait_for(ready, timeout=600, interval=2, what=f"botfleet serve at {url}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_try_it_on_botfleet_serve_returns_text(browser, served):
    browser.get(served + "/")
    assert {e.get_attribute("data-model-id") for e in browser.find_elements(By.CSS_SELECTOR, "li.bot")} == {
        "alice",
        "bob",
    }
    browser.get(served + "/bots/alice")
    prompt = browser.find_element(By.ID, "try-it-prompt")
    prompt.clear()
    prompt.send_keys("My dream is")
    browser.find_element(By.CSS_SELECTOR, "form.try-it button").click()
    output = browser.find_element(By.ID, "try-it-output")
    WebDriverWait(browser, 300).until(lambda _: output.get_attribute("data-state"))
    assert output.get_attribute("data-state") == "done", output.text
    assert output.text.startswith("My dream is") and len(output.text) > len("My dream is")
    assert not browser.find_elements(By.CSS_SELECTOR, "#try-it-output *")  # text, never markup
    screenshot(browser, "try-it")
    assert not console_errors(browser)
