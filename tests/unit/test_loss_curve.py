"""The training history (model/loss_history.json), the loss curve drawn from it (model/loss.png)
and the card's body showing both pictures by relative links. The job writing them for
real: tests/integration/test_page_browser.py (a real run's folder, shown on the page)."""

from __future__ import annotations

import dataclasses
import math

from PIL import Image

from botfleet.artifacts import HistoryPoint, TrainingHistory
from botfleet.card import render_card
from botfleet.layout import Layout
from botfleet_jobs.loss_curve import HEIGHT, TRAIN_COLOR, VALID_COLOR, WIDTH, render_loss_curve_png
from tests.fixtures.cards import TRAINING, links_for, spec_of, stats_of

TRAIN = [[s, 4 * math.exp(-s / 20) + 1] for s in range(1, 61)]


def test_history_merges_steps_and_reads_back():
    history = TrainingHistory.of("dril", TRAIN, {0: 5.5, 60: 1.3})
    assert history.points[0] == HistoryPoint(0, None, 5.5)
    assert history.points[-1] == HistoryPoint(60, TRAIN[-1][1], 1.3)
    assert len(history.train_losses()) == 60 and history.valid_losses() == [(0, 5.5), (60, 1.3)]
    assert TrainingHistory.from_dict(history.to_dict()) == history
    # what another version wrote, or a torn file, still reads
    odd = {"points": [{"step": "3", "train_loss": "2.5", "extra": 1}, {"train_loss": 1.0}, "x"], "new": 1}
    assert TrainingHistory.from_dict(odd).points == (HistoryPoint(3, 2.5, None),)
    assert TrainingHistory.from_dict(None) == TrainingHistory()
    assert TrainingHistory.of("x", [], {0: None}).points == ()  # not measured: no point
    assert Layout("s3://b/x").loss_history == "s3://b/x/model/loss_history.json"
    assert Layout("s3://b/x").loss_curve == "s3://b/x/model/loss.png"


def colors(path) -> set:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
        return {color for _, color in image.convert("RGB").getcolors(WIDTH * HEIGHT)}


def test_loss_curve_draws_both_losses_deterministically(tmp_path):
    history = TrainingHistory.of("dril", TRAIN, {0: 5.5, 60: 1.3})
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    assert render_loss_curve_png(history, "@dril bot: loss by step", first) == (WIDTH, HEIGHT)
    render_loss_curve_png(history, "@dril bot: loss by step", second)
    assert first.read_bytes() == second.read_bytes()
    assert {TRAIN_COLOR, VALID_COLOR} <= colors(first)
    # no validation measured: the training line alone; one step, or nothing, still draws
    render_loss_curve_png(TrainingHistory.of("dril", TRAIN, {}), "t", tmp_path / "c.png")
    assert TRAIN_COLOR in colors(tmp_path / "c.png") and VALID_COLOR not in colors(tmp_path / "c.png")
    render_loss_curve_png(TrainingHistory.of("dril", TRAIN[:1], {}), "t", tmp_path / "d.png")
    assert TRAIN_COLOR in colors(tmp_path / "d.png")
    render_loss_curve_png(TrainingHistory(), "t", tmp_path / "e.png")
    assert not {TRAIN_COLOR, VALID_COLOR} & colors(tmp_path / "e.png")


def test_card_body_shows_both_pictures_by_relative_links():
    spec = spec_of(("@DomAndCats", "Dom and Cats"))
    stats = stats_of(spec, [(3249, 69, 452, 2728)])
    links = dataclasses.replace(links_for(spec, False), thumbnail_url="predictions.png", loss_curve_url="loss.png")
    card = render_card(spec, stats, TRAINING, links)
    front, body = card.split("\n---\n", 1)
    assert "thumbnail: predictions.png" in front  # the Hub's thumbnail stays in the front matter
    procedure = body.split("## Training procedure", 1)[1].split("\n## ", 1)[0]
    assert "![Training and validation loss by step](loss.png)" in procedure
    assert "![Sample predictions](predictions.png)" in procedure
    # a card without pictures (the operator's) shows none
    bare = render_card(spec, stats, TRAINING, dataclasses.replace(links, thumbnail_url=None, loss_curve_url=None))
    assert "![" not in bare
