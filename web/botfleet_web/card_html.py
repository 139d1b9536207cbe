"""A model card (README.md) as HTML for the page: markdown-it-py with raw HTML off, the
front matter cut, and relative links and images pointed at the page's own file route.

Raw HTML is never passed through: everything in a card that is not Markdown (the Hub's
avatar header; anything a display name or post smuggled in) renders as text. The card's
leading avatar block is dropped instead, since the page draws its own header.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from markdown_it import MarkdownIt

_FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.S)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def card_body(markdown: str) -> str:
    """The card without its front matter and its leading avatar block (the card's first
    paragraph when it is a ``<div ...>``: huggingtweets' header)."""
    body = _FRONT_MATTER.sub("", markdown.replace("\r\n", "\n"), count=1).lstrip("\n")
    if body.startswith("<div"):
        body = body.partition("\n\n")[2]
    return body


def relative(target: str) -> bool:
    """Whether a link names a file next to the card (no scheme, no host, no absolute path)."""
    return bool(target) and not _SCHEME.match(target) and not target.startswith(("/", "#", "\\"))


def card_to_html(markdown: str, file_url: Callable[[str], str | None]) -> str:
    """The card as HTML; a relative link or image ``x`` becomes ``file_url("model/x")``
    (None: the link is dropped, its text kept)."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(card_body(markdown))
    for token in tokens:
        for child in token.children or ():
            attribute = {"image": "src", "link_open": "href"}.get(child.type)
            target = child.attrGet(attribute) if attribute else None
            if isinstance(target, str) and relative(target):
                url = file_url("model/" + target.split("#", 1)[0].split("?", 1)[0])
                if url is None:
                    child.attrs.pop(attribute, None)
                else:
                    child.attrSet(attribute, url)
    return md.renderer.render(tokens, md.options, {})
