"""Where posts come from: one module per ``spec.handles[].source`` kind.

:func:`fetch_posts` is the only entry point the data stage needs. Each module's
``fetch(...)`` raises :class:`SourceError` with just the cause; ``fetch_posts`` puts the
handle and the source in front, so every failure reads like
``@dril (mastodon https://mastodon.social): account not found (HTTP 404)``.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

from botfleet import api
from botfleet.errors import one_line
from botfleet_jobs.posts import Post, SourceError
from botfleet_jobs.sources.http import HttpError

Progress = Callable[[int], Any]


def describe(handle: api.Handle) -> str:
    """``@name (kind where)``: how errors and logs name a handle and its source."""
    source = handle.source
    config = source.config
    where = {
        "archive": lambda: config.uri,
        "dataset": lambda: config.uri,
        "mastodon": lambda: config.instance,
        "bluesky": lambda: config.service,
        "twitter": lambda: config.api_base,
    }.get(source.kind, lambda: "")()
    return f"@{handle.handle.strip().lstrip('@')} ({source.kind} {where})".replace(" )", ")")


def fetch_posts(
    handle: api.Handle, max_posts: int, storage: Any, progress: Progress | None = None, known: Container[str] = ()
) -> list[Post]:
    """The newest ``max_posts`` posts of ``handle`` from its source, newest first; from a
    social API only those newer than the first post whose id is in ``known`` (a refresh).

    ``storage`` is a :class:`botfleet.storage.Storage` (the sources use ``download_file``);
    only the archive and dataset sources use it. ``progress(n)`` is called with the number
    of posts each step just fetched. Every failure is a one-line :class:`SourceError`.
    """
    from botfleet_jobs.sources import archive, bluesky, dataset, mastodon, twitter

    fetchers = {
        "archive": lambda: archive.fetch(handle.source.archive, max_posts, storage, progress),
        "dataset": lambda: dataset.fetch(handle.source.dataset, max_posts, storage, progress),
        "mastodon": lambda: mastodon.fetch(handle.source.mastodon, _account(handle), max_posts, progress, known),
        "bluesky": lambda: bluesky.fetch(handle.source.bluesky, _account(handle), max_posts, progress, known),
        "twitter": lambda: twitter.fetch(handle.source.twitter, _account(handle), max_posts, progress, known),
    }
    kind = handle.source.kind
    if not kind:
        raise SourceError(f"@{handle.handle.lstrip('@')}: no source given")
    if kind not in fetchers:
        raise SourceError(f"{describe(handle)}: unknown source kind {kind!r}")
    if max_posts < 1:
        return []
    try:
        posts = fetchers[kind]()
    except SourceError as exc:
        raise SourceError(f"{describe(handle)}: {_cause(exc)}") from exc
    except HttpError as exc:
        raise SourceError(f"{describe(handle)}: {_cause(exc)}") from exc
    except KeyError as exc:  # resolve_secret: "secret x/y is not available: set ..."
        raise SourceError(f"{describe(handle)}: {_cause(exc.args[0] if exc.args else exc)}") from exc
    except Exception as exc:
        from botfleet.storage import StorageError

        if isinstance(exc, StorageError):
            uri = getattr(handle.source.config, "uri", "")
            text = str(exc)
            if uri and text.startswith(uri + ": "):
                text = text[len(uri) + 2 :]  # the URI is already in the prefix
            raise SourceError(f"{describe(handle)}: {_cause(text)}") from exc
        raise
    return posts[:max_posts]


def _account(handle: api.Handle) -> str:
    return handle.handle.strip().lstrip("@")


def _cause(exc: Any) -> str:
    return one_line(str(exc), 400)


__all__ = ["fetch_posts", "describe", "Post", "SourceError"]
