"""The parrot check's verdict: does a bot repeat its person's posts word for word?

A bot trained on one person's posts can learn some of them by heart: a privacy problem
(the posts may be deleted, or were never meant to travel with a model) and a bad bot. The
job generates a fixed set of samples and counts those that contain a run of
:data:`RUN_TOKENS` or more tokens found verbatim in the training text
(:mod:`botfleet_jobs.parrot` measures it). This module holds the report, as training.json
and the card carry it, and the rule publishing applies: torch-free, so the operator and
the CLI apply the same rule to a recorded report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

RUN_TOKENS = 8  # GPT-2 tokens: longer than common phrases, shorter than a post
MAX_COPYING_SHARE = 0.25  # of the samples; above it publishing is refused unless allowed


@dataclass(frozen=True)
class ParrotReport:
    samples: int
    copying: int  # samples holding a run of run_tokens or more from the training text
    run_tokens: int = RUN_TOKENS
    longest_run: int = 0  # tokens, the longest verbatim run found in any sample
    threshold: float = MAX_COPYING_SHARE

    @property
    def share(self) -> float:
        return self.copying / self.samples if self.samples else 0.0

    @property
    def too_high(self) -> bool:
        return self.share > self.threshold

    def summary(self) -> str:
        """One line for people: what was found (counts only: never a post's text)."""
        found = (
            f"{self.copying} of {self.samples} samples ({self.share:.0%}) repeat a run of {self.run_tokens}"
            " or more tokens of the training posts verbatim"
        )
        if self.copying:
            found += f" (longest {self.longest_run} tokens)"
        return found

    def to_dict(self) -> dict:
        return {**asdict(self), "share": self.share}

    @classmethod
    def from_dict(cls, data: Any) -> ParrotReport | None:
        """The report training.json holds; None when it holds none (or no usable one)."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                samples=int(data["samples"]),
                copying=int(data["copying"]),
                run_tokens=int(data.get("run_tokens", RUN_TOKENS)),
                longest_run=int(data.get("longest_run", 0)),
                threshold=float(data.get("threshold", MAX_COPYING_SHARE)),
            )
        except (KeyError, TypeError, ValueError):
            return None


def publish_refusal(report: ParrotReport | None, allowed: bool, how_to_allow: str) -> str | None:
    """Why publishing must not happen, or None. ``how_to_allow`` names the switch
    (``spec.publish.allowParrot: true``, ``--allow-parrot``)."""
    if allowed:
        return None
    anyway = f"{how_to_allow} to publish it anyway"
    if report is None:
        return f"the model's training.json has no parrot check, so nothing says it does not repeat its posts: {anyway}"
    if report.too_high:
        return f"parrot check: {report.summary()}, above the limit of {report.threshold:.0%}: {anyway}"
    return None
