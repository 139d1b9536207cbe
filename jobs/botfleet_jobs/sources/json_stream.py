"""The entries of one big JSON array, read from a byte stream one at a time.

An archive's ``tweets.js`` can hold hundreds of megabytes (a small zip can expand to
far more); reading it entry by entry keeps memory at one entry plus what the caller
keeps. Errors are one-line :class:`SourceError` messages that name the file and say
where (byte offset for bad UTF-8; line and column for bad JSON), as ``json.loads`` on
the whole text would have.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import BinaryIO

from botfleet_jobs.posts import SourceError

CHUNK = 1 << 16
MAX_ENTRY = 8 << 20  # no real post comes near this; past it an unfinished entry is malformed
_DECODER = json.JSONDecoder()
_WHITE_SPACE = re.compile(r"[ \t\r\n]*")
_COMMA = re.compile(r"[ \t\r\n]*,[ \t\r\n]*")
_TYPES = {"{": "dict", '"': "str", "t": "bool", "f": "bool", "n": "NoneType"}


class _Text:
    """UTF-8 text from a byte stream, chunk by chunk: ``buffer[pos:]`` is what is unread.

    Where the buffer starts in the file (its line, and its column on that line) is kept
    only when a chunk is dropped, so reading an entry costs no line counting: positions
    are worked out when an error needs one."""

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self.stream, self.name = stream, name
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buffer, self.pos = "", 0
        self.fed = 0  # bytes given to the decoder so far
        self.lines_before = 0  # new lines in the text dropped from the buffer's front
        self.columns_before = 0  # characters of the buffer's first line that were dropped
        self.eof = False

    def more(self) -> bool:
        """Append the next chunk to the buffer; False at the end of the stream."""
        if self.eof:
            return False
        data = self.stream.read(CHUNK)
        self.eof = not data
        pending = len(self.decoder.getstate()[0])
        try:
            decoded = self.decoder.decode(data, final=self.eof)
        except UnicodeDecodeError as exc:
            offset = self.fed - pending + exc.start
            raise SourceError(
                f"{self.name}: not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {offset})"
            ) from None
        self.fed += len(data)
        self._drop_read()
        self.buffer += decoded
        return not self.eof

    def _drop_read(self) -> None:
        lines = self.buffer.count("\n", 0, self.pos)
        if lines:
            self.lines_before += lines
            self.columns_before = self.pos - self.buffer.rfind("\n", 0, self.pos) - 1
        else:
            self.columns_before += self.pos
        self.buffer = self.buffer[self.pos :]  # the one copy: once a chunk, not once an entry
        self.pos = 0

    def where(self, index: int) -> str:
        """``line L column C`` of ``buffer[index]``."""
        lines = self.buffer.count("\n", 0, index)
        column = index - self.buffer.rfind("\n", 0, index) if lines else self.columns_before + index + 1
        return f"line {self.lines_before + lines + 1} column {column}"

    def peek(self) -> str:
        """The next character that is not white space (reading on as needed); "" at the end."""
        while True:
            self.pos = _WHITE_SPACE.match(self.buffer, self.pos).end()
            if self.pos < len(self.buffer) or not self.more():
                return self.buffer[self.pos : self.pos + 1]


def iter_array(stream: BinaryIO, name: str, prefix_length: int = 0) -> Iterator[object]:
    """Each value of the JSON array that starts after ``prefix_length`` characters (a
    ``window.YTD...=`` assignment the caller has recognised; a byte order mark is skipped)."""
    text = _Text(stream, name)
    while len(text.buffer) < prefix_length + 1 and text.more():
        pass
    text.pos = prefix_length + (1 if text.buffer.startswith("\ufeff") else 0)
    first = text.peek()
    if first != "[":
        raise SourceError(f"{name}: expected a JSON array, got {_kind(first)}")
    text.pos += 1
    char = text.peek()
    while char != "]":
        yield _value(text)
        comma = _COMMA.match(text.buffer, text.pos)
        if comma and comma.end() < len(text.buffer):  # the usual case: the next value starts in this chunk
            text.pos = comma.end()
            continue
        char = text.peek()
        if char == ",":
            text.pos += 1
            text.peek()  # a value starts where the white space ends
        elif char != "]":
            raise SourceError(f"{name}: malformed JSON at {text.where(text.pos)} (Expecting ',' delimiter)")
    text.pos += 1
    if text.peek():
        raise SourceError(f"{name}: malformed JSON at {text.where(text.pos)} (Extra data)")


def _kind(first: str) -> str:
    """What a JSON value starting with ``first`` is, for an error message."""
    if first in _TYPES:
        return _TYPES[first]
    if first and first in "-0123456789":
        return "a number"
    return repr(first) if first else "nothing"


def _cut_short(exc: json.JSONDecodeError, text: _Text) -> bool:
    """Whether the error can mean that the entry goes on past the buffer: it is at the end
    (a cut literal, number or escape), or a string that has not ended yet. Any other is
    malformed JSON already, and reading on would only parse it again and again."""
    return exc.pos >= len(text.buffer) - 6 or exc.msg.startswith("Unterminated string")


def _value(text: _Text) -> object:
    while True:
        try:
            value, end = _DECODER.raw_decode(text.buffer, text.pos)
        except json.JSONDecodeError as exc:
            where = text.where(exc.pos)  # before more() moves the buffer
            if _cut_short(exc, text) and len(text.buffer) - text.pos <= MAX_ENTRY and text.more():
                continue  # the entry goes on in the next chunk
            raise SourceError(f"{text.name}: malformed JSON at {where} ({exc.msg})") from None
        except RecursionError:
            raise SourceError(f"{text.name}: JSON nested too deeply at {text.where(text.pos)}") from None
        if end == len(text.buffer) and isinstance(value, (int, float)) and text.more():
            continue  # a number may go on in the next chunk
        text.pos = end
        return value
