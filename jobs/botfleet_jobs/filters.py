"""The reference pipeline's filters, reproduced exactly (see docs/reference.md).

Order per handle: retweets are set aside first, then each remaining post is fixed
(three HTML entities), cleaned (URLs out, whitespace flattened), and dropped when the
CLEANED text has fewer than three plain words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from botfleet_jobs.posts import Post

# huggingtweets' clean_tweet removed URLs with these substitutions, in this order (for
# http: then https:); they are ported literally, not merged into one regex, because the
# order decides the text where removing one URL makes another ("a\nhtthttp://x p://y b").
_URL_SUBSTITUTIONS = [
    re.compile(pattern.format(scheme=scheme))
    for scheme in ("http:", "https:")
    for pattern in (r" {scheme}\S+", r"{scheme}\S+ ", r"\n{scheme}\S+ ", r"\n{scheme}\S+", r"{scheme}\S+")
]


def fix_text(text: str) -> str:
    """Undo exactly the three entities Twitter escaped (and nothing else)."""
    return text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")


def clean_text(text: str) -> str:
    """Remove URL tokens and flatten all whitespace (new lines included) to single spaces."""
    for substitution in _URL_SUBSTITUTIONS:
        text = substitution.sub("", text)
    return " ".join(text.split())


def is_boring(cleaned: str) -> bool:
    """Fewer than 3 words that contain none of http, @, # (case-insensitive)."""
    plain = 0
    for word in cleaned.split():
        if "@" not in word and "#" not in word and "http" not in word.lower():
            plain += 1
            if plain == 3:
                return False
    return True


@dataclass(frozen=True)
class FilterResult:
    """One handle's posts after filtering, with the model card's counts."""

    kept: tuple[str, ...]
    downloaded: int
    retweets: int

    @property
    def short(self) -> int:
        return self.downloaded - self.retweets - len(self.kept)

    @property
    def characters(self) -> int:
        return sum(len(text) for text in self.kept)

    def counts(self) -> dict:
        return {"downloaded": self.downloaded, "retweets": self.retweets, "short": self.short, "kept": len(self.kept)}


def filter_posts(posts: list[Post]) -> FilterResult:
    originals = [p for p in posts if not (p.is_retweet or p.text.startswith("RT @"))]
    cleaned = (clean_text(fix_text(p.text)) for p in originals)
    kept = tuple(text for text in cleaned if not is_boring(text))
    return FilterResult(kept=kept, downloaded=len(posts), retweets=len(posts) - len(originals))
