"""Training text from filtered posts, as the reference built it.

Posts are framed with ``<|endoftext|>`` before, between and after; the training text
holds ``epochs`` reshuffled copies (the trainer makes one pass); each handle's posts are
split 90/10 into train and validation; with several handles, each epoch repeats every
handle's shuffled posts until its characters match the largest handle's. One seeded
random generator drives every shuffle, so the same request gives the same dataset.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from botfleet.errors import UserError

END_OF_TEXT = "<|endoftext|>"
TRAIN_FRACTION = 0.9
MIN_CHARACTERS = 6_000  # below this per handle the reference refused to train
WARN_CHARACTERS = 40_000  # below this it warned that the bot would be weak


class NotEnoughText(UserError, ValueError):
    """A handle kept too little text to train on."""


@dataclass(frozen=True)
class Dataset:
    train: str
    valid: str
    warnings: tuple[str, ...]


def gate_length(texts: list[str]) -> int:
    """How the reference measured a handle's text for its gates: the posts joined by the separator."""
    return len(END_OF_TEXT.join(texts))


def check_amount(characters_by_handle: dict[str, int]) -> list[str]:
    """Raise for handles under the error gate; return warnings for those under the warning gate.

    ``characters_by_handle`` holds each handle's :func:`gate_length`.
    """
    too_little = [f"@{h} has {n:,} characters" for h, n in characters_by_handle.items() if n < MIN_CHARACTERS]
    if too_little:
        raise NotEnoughText(
            f"not enough posts to train on: {'; '.join(too_little)} of kept text (at least {MIN_CHARACTERS:,} needed)"
        )
    return [
        f"@{h}: only {n:,} characters of kept text (under {WARN_CHARACTERS:,}); the bot may be weak"
        for h, n in characters_by_handle.items()
        if n < WARN_CHARACTERS
    ]


def split(texts: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
    shuffled = list(texts)
    rng.shuffle(shuffled)
    cut = int(TRAIN_FRACTION * len(shuffled))
    return shuffled[:cut], shuffled[cut:]


def balanced_epoch(texts_by_handle: list[list[str]], rng: random.Random) -> list[str]:
    """One epoch: each handle's posts shuffled and repeated up to the largest handle's characters."""
    target = max(sum(map(len, texts)) for texts in texts_by_handle)
    epoch: list[str] = []
    for texts in texts_by_handle:
        shuffled = list(texts)
        rng.shuffle(shuffled)
        characters = 0
        for text in itertools.cycle(shuffled):  # an empty list ends the cycle at once
            if characters >= target:
                break
            epoch.append(text)
            characters += len(text)
    rng.shuffle(epoch)
    return epoch


def frame(texts: list[str]) -> str:
    """<|endoftext|> before, between and after."""
    return END_OF_TEXT + END_OF_TEXT.join(texts) + END_OF_TEXT


def build_dataset(kept_by_handle: dict[str, list[str]], epochs: int, seed: int) -> Dataset:
    warnings = check_amount({h: gate_length(texts) for h, texts in kept_by_handle.items()})
    rng = random.Random(seed)
    splits = [split(texts, rng) for texts in kept_by_handle.values()]
    train_parts = [balanced_epoch([train for train, _ in splits], rng) for _ in range(epochs)]
    # Consecutive epochs share one separator, as the reference's concatenation did.
    train = END_OF_TEXT + "".join(END_OF_TEXT.join(part) + END_OF_TEXT for part in train_parts)
    valid = frame([text for _, valid in splits for text in valid])
    return Dataset(train=train, valid=valid, warnings=tuple(warnings))
