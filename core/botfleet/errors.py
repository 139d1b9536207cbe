"""Errors as people read them: one line, bounded, whatever raised it."""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix (bad input, a missing object, an unreachable service).

    Its message is one line that says what and where; the CLI prints it without a traceback.
    """


class MissingExtra(UserError):
    """A command needs an optional part of botfleet that is not installed."""


def one_line(error: BaseException | str, limit: int = 600) -> str:
    """``error`` as one line of at most ``limit`` characters (whitespace collapsed).

    For messages that reach a status, an event, a result file or a terminal, where a
    multi-line traceback or a server's whole answer would be unreadable.
    """
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def with_notes(error: BaseException) -> str:
    """:func:`one_line` of ``error``, then its notes (``add_note``: e.g. where a job's full log is)."""
    notes = "; ".join(" ".join(str(note).split()) for note in getattr(error, "__notes__", ()))
    return f"{one_line(error)} ({notes})" if notes else one_line(error)
