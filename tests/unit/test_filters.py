"""The reference pipeline's filters and dataset rules, case by case."""

import random

import pytest

from botfleet_jobs.dataset import END_OF_TEXT, NotEnoughText, balanced_epoch, build_dataset, check_amount
from botfleet_jobs.filters import clean_text, filter_posts, fix_text, is_boring
from botfleet_jobs.posts import Post


def test_fix_text_replaces_exactly_three_entities():
    assert fix_text("a &amp; b &lt;3 &gt; c &quot;x&quot; &#39;") == "a & b <3 > c &quot;x&quot; &#39;"


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("look https://t.co/abc at this", "look at this"),
        ("https://t.co/abc starts it off", "starts it off"),
        ("line one\nhttps://t.co/x\nline two", "line one line two"),
        ("ends with a link http://x.y/z", "ends with a link"),
        ("glued:https://t.co/x next", "glued:next"),
        ("  many    spaces\tand\n\nnew lines  ", "many spaces and new lines"),
        ("@mention #tag stay", "@mention #tag stay"),
    ],
)
def test_clean_text(raw, cleaned):
    assert clean_text(raw) == cleaned


@pytest.mark.parametrize(
    "text, boring",
    [
        ("@a @b hi there", True),  # the reference's own example: two plain words
        ("one two three", False),
        ("#one #two three four", True),
        ("HTTPish words ok", True),  # 'http' matches case-insensitively
        ("email@x.com is not plain but these are", False),
    ],
)
def test_is_boring(text, boring):
    assert is_boring(text) is boring


def test_filter_counts_follow_the_card_definitions():
    posts = [
        Post("1", "RT @someone: a retweet with many words"),
        Post("2", "a boost flagged by its source", is_retweet=True),
        Post("3", "this one is kept &amp; fixed https://t.co/x"),
        Post("4", "@a @b hi there"),
        Post("5", "https://t.co/only two words"),
        Post("6", "another perfectly normal post"),
    ]
    result = filter_posts(posts)
    assert result.kept == ("this one is kept & fixed", "another perfectly normal post")
    assert result.counts() == {"downloaded": 6, "retweets": 2, "short": 2, "kept": 2}


def test_short_rule_applies_to_the_cleaned_text():
    # Three words before cleaning, two after the URL goes: short.
    assert filter_posts([Post("1", "hello http://a.b/c world")]).counts()["short"] == 1


def _texts(prefix, n, size=100):
    return [f"{prefix} {i} " + "x" * size for i in range(n)]


def test_gates_error_and_warning():
    with pytest.raises(NotEnoughText, match=r"@small has 5,999 characters"):
        check_amount({"big": 50_000, "small": 5_999})
    assert check_amount({"big": 50_000}) == []
    (warning,) = check_amount({"mid": 6_000})
    assert "@mid" in warning and "40,000" in warning


def test_dataset_framing_split_and_epochs():
    texts = _texts("a", 100)
    dataset = build_dataset({"a": texts}, epochs=4, seed=7)
    assert dataset.train.startswith(END_OF_TEXT) and dataset.train.endswith(END_OF_TEXT)
    train_posts = [t for t in dataset.train.split(END_OF_TEXT) if t]
    valid_posts = [t for t in dataset.valid.split(END_OF_TEXT) if t]
    assert len(valid_posts) == 10 and len(train_posts) == 4 * 90
    assert set(valid_posts).isdisjoint(train_posts)
    assert set(valid_posts) | set(train_posts) == set(texts)
    assert END_OF_TEXT * 2 not in dataset.train  # one separator between posts and epochs


def test_dataset_is_reproducible_from_its_seed():
    kept = {"a": _texts("a", 80), "b": _texts("b", 70)}
    assert build_dataset(kept, 4, seed=1) == build_dataset(kept, 4, seed=1)
    assert build_dataset(kept, 4, seed=1).train != build_dataset(kept, 4, seed=2).train


def test_balancing_repeats_smaller_handles_up_to_the_largest():
    big, small = _texts("big", 90), _texts("small", 30)
    epoch = balanced_epoch([big, small], random.Random(0))
    big_chars = sum(len(t) for t in epoch if t.startswith("big"))
    small_chars = sum(len(t) for t in epoch if t.startswith("small"))
    assert big_chars == sum(map(len, big))
    assert big_chars <= small_chars < big_chars + max(map(len, small))
