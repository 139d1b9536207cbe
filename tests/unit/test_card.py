"""The model card: the seeds' structure, this bot's facts, links to what really exists."""

import re

import pytest
from huggingface_hub import ModelCard

from botfleet.card import CardLinks, render_card
from tests.cluster.controlplane import shared_dir
from tests.fixtures.cards import DATA_URL, RUN_URL, TRAINING, links_for, spec_of, stats_of

SEEDS = shared_dir() / "seeds"
# 003 is an older layout ("Intended uses & limitations" with ### subsections); the other
# four are the format huggingtweets settled on.
CURRENT_SEEDS = [
    "000_b779967f76b8dc63.txt",
    "001_74056c450d9f07ad.txt",
    "002_f35ec7b5191e9cdb.txt",
    "004_7e5f139cd06b3261.txt",
]
SEED_SECTIONS = [
    "How does it work?",
    "Training data",
    "Training procedure",
    "How to use",
    "Limitations and bias",
    "About",
]
DATA_ROWS = ["Tweets downloaded", "Retweets", "Short tweets", "Tweets kept"]


@pytest.fixture
def single():
    spec = spec_of(("@DomAndCats", "Dom and Cats"))
    return spec, stats_of(spec, [(3249, 69, 452, 2728)])


@pytest.fixture
def cyborg():
    spec = spec_of(("dril", "wint"), ("gnomeszs", "gnome | 👼🏻"), ("s4m31p4n", None))
    return spec, stats_of(spec, [(3192, 456, 307, 2429), (3220, 1075, 438, 1707), (3156, 992, 907, 1257)])


def headings(text: str) -> list[str]:
    return [line[3:].strip() for line in text.splitlines() if line.startswith("## ")]


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    """The rows of the Markdown table whose header starts with `first_cell`, as cells
    (escaped pipes kept inside their cell)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_cell} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_seeds_share_one_section_order():
    for name in CURRENT_SEEDS:
        assert headings((SEEDS / name).read_text(encoding="utf-8")) == SEED_SECTIONS, name


@pytest.mark.parametrize("tracked", [True, False])
def test_sections_follow_the_seeds(single, cyborg, tracked):
    for spec, stats in (single, cyborg):
        card = render_card(spec, stats, TRAINING, links_for(spec, tracked))
        assert headings(card) == headings((SEEDS / CURRENT_SEEDS[0]).read_text(encoding="utf-8"))


def test_front_matter_reads_as_a_model_card(single):
    spec, stats = single
    card = render_card(spec, stats, TRAINING, links_for(spec, True))
    data = ModelCard(card).data
    assert data.language == "en"
    assert "huggingtweets" in data.tags
    assert data.widget == [{"text": "My dream is"}]
    assert data.thumbnail == "s3://bots/out/domandcats/predictions.png"


def test_one_handle_is_an_ai_bot(single):
    spec, stats = single
    card = render_card(spec, stats, TRAINING, links_for(spec, True))
    assert "🤖 AI BOT 🤖" in card and "CYBORG" not in card
    assert ">Dom and Cats</div>" in card  # the request's displayName wins
    assert "@domandcats bot" in card
    assert card.count("border-radius: 50%") == 1
    assert "The model was trained on [@DomAndCats's tweets](https://twitter.com/DomAndCats)." in card
    assert table_rows(card, "Data") == [
        ["Data", "Quantity"],
        ["---", "---"],
        ["Tweets downloaded", "3249"],
        ["Retweets", "69"],
        ["Short tweets", "452"],
        ["Tweets kept", "2728"],
    ]


def test_three_handles_are_an_ai_cyborg(cyborg):
    spec, stats = cyborg
    card = render_card(spec, stats, TRAINING, links_for(spec, True))
    assert "🤖 AI CYBORG 🤖" in card and "AI BOT" not in card
    assert "@dril-gnomeszs-s4m31p4n bot" in card
    assert card.count("border-radius: 50%") == 3
    # No displayName: the name the data stage found for the account.
    assert "The model was trained on tweets from wint & gnome | 👼🏻 & s4m31p4n (from source)." in card
    rows = table_rows(card, "Data")
    assert rows[0] == ["Data", "wint", "gnome \\| 👼🏻", "s4m31p4n (from source)"]
    assert [row[0] for row in rows[2:]] == DATA_ROWS
    assert rows[2:] == [
        ["Tweets downloaded", "3192", "3220", "3156"],
        ["Retweets", "456", "1075", "992"],
        ["Short tweets", "307", "438", "907"],
        ["Tweets kept", "2429", "1707", "1257"],
    ]
    assert "users' tweets further affects" in card


def test_pipe_in_a_display_name_is_escaped_in_tables(cyborg):
    spec, stats = cyborg
    card = render_card(spec, stats, TRAINING, links_for(spec, True))
    header = next(line for line in card.splitlines() if line.startswith("| Data |"))
    assert header == "| Data | wint | gnome \\| 👼🏻 | s4m31p4n (from source) |"
    assert len(table_rows(card, "Data")[0]) == 4


def test_training_procedure_reports_settings_and_metrics(single):
    spec, stats = single
    card = render_card(spec, stats, TRAINING, links_for(spec, True))
    hyper = dict(row for row in table_rows(card, "Hyperparameter")[2:])
    assert hyper["Learning rate"] == "0.0001372"
    assert hyper["Epochs"] == "4"
    assert hyper["Block size"] == "1024"
    assert hyper["Batch size per worker"] == "1"
    assert hyper["Workers"] == "2"
    assert hyper["ZeRO stage"] == "2"
    assert hyper["Precision"] == "bf16"
    assert "- Final training loss: 3.011 (after 321 steps)" in card
    assert "- Validation loss: 4.812 -> 3.207" in card
    assert "- Validation perplexity: 123 -> 24.71" in card
    assert "pre-trained [GPT-2](https://huggingface.co/gpt2)" in card


def test_how_to_use_loads_this_bots_model(single):
    spec, stats = single
    links = links_for(spec, False)
    card = render_card(spec, stats, TRAINING, links)
    assert (
        "generator = pipeline('text-generation',\n                     model='s3://bots/out/domandcats/model')" in card
    )
    assert 'generator("My dream is", num_return_sequences=5)' in card
    local = CardLinks(**{**links.__dict__, "model_for_pipeline": "/data/bots/domandcats/model"})
    assert "model='/data/bots/domandcats/model')" in render_card(spec, stats, TRAINING, local)


def test_tracked_card_links_the_wandb_run(single):
    spec, stats = single
    card = render_card(spec, stats, TRAINING, links_for(spec, True))
    assert f"[Explore the data]({DATA_URL})" in card
    assert f"[W&B training run]({RUN_URL})" in card
    assert f"[the final model]({RUN_URL}/artifacts)" in card


def test_untracked_card_links_the_object_store(single, cyborg):
    for spec, stats in (single, cyborg):
        card = render_card(spec, stats, TRAINING, links_for(spec, False))
        assert "wandb.ai" not in card
        assert f"[Explore the data]({spec.model_uri}/dataset)" in card
        assert f"({spec.model_uri}/checkpoints)" in card
        assert f"[the final model]({spec.model_uri}/model)" in card


def test_about_credits_huggingtweets(single):
    spec, stats = single
    card = render_card(spec, stats, TRAINING, links_for(spec, False))
    about = card.split("## About", 1)[1]
    assert "*Built by botfleet*" in about
    assert "huggingtweets" in about and "Boris Dayma" in about
