"""Reading a ``POST /_apply`` body one document at a time, and writing its answer so.

A batch's body is megabytes of JSON (about 1.3 MiB per 5,000 policies, up to
``--api-max-body``), and ``json.loads`` of all of it is one step of the event loop:
15-35 ms at 1.3 MiB on a quiet 2-core machine, well over 100 ms at 8 MiB, while every
other request (``/healthz`` included) waits. A thread would not help, since the decoder
holds the GIL. ``BatchReader`` parses the top-level object itself and decodes each
element of ``documents`` with the C decoder's ``raw_decode``, so the caller can give the
loop a turn between documents; the result is what ``json.loads`` would give (a repeated
member keeps its last value, ``NaN`` is accepted as ``json`` does).

``BatchReader`` is pure: ``members()`` yields after each document, and the caller
decides when to yield to the loop. Errors are ``InvalidResource`` naming where the body
stops being JSON, answered as 400.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from gossamer.errors import FieldError, InvalidResource

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def _bad(message: str) -> InvalidResource:
    return InvalidResource("invalid batch", [FieldError("body", message)])


class BatchReader:
    """``BatchReader(body)``: iterate ``steps()`` (one step per document of
    ``documents``, one per other member), then read ``value``: the body's top-level
    object, as ``json.loads`` would have decoded it."""

    def __init__(self, body: bytes) -> None:
        try:
            self._text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad(f"not UTF-8 at byte {exc.start}") from None
        self._pos = 0
        self.value: dict[str, Any] = {}

    def steps(self) -> Iterator[None]:
        self._expect("{", "expected a JSON object with a documents list")
        if self._peek() == "}":
            self._pos += 1
        else:
            while True:
                key = self._decode()
                if not isinstance(key, str):
                    raise self._error("expected a member name")
                self._expect(":", "expected ':' after a member name")
                if key == "documents" and self._peek() == "[":
                    documents: list[Any] = []
                    self.value[key] = documents
                    yield from self._list(documents)
                else:
                    self.value[key] = self._decode()
                    yield
                if self._next_of(",}") == "}":
                    break
        if _SPACE.match(self._text, self._pos).end() != len(self._text):  # type: ignore[union-attr]
            raise self._error("extra data after the object")

    def _list(self, into: list[Any]) -> Iterator[None]:
        self._pos += 1  # the '['
        if self._peek() == "]":
            self._pos += 1
            return
        while True:
            into.append(self._decode())
            yield
            if self._next_of(",]") == "]":
                return

    def _decode(self) -> Any:
        self._skip()
        try:
            value, self._pos = _DECODER.raw_decode(self._text, self._pos)
        except json.JSONDecodeError as exc:
            raise _bad(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        return value

    def _skip(self) -> None:
        self._pos = _SPACE.match(self._text, self._pos).end()  # type: ignore[union-attr]

    def _peek(self) -> str:
        self._skip()
        return self._text[self._pos:self._pos + 1]

    def _expect(self, char: str, message: str) -> None:
        if self._peek() != char:
            raise self._error(message)
        self._pos += 1

    def _next_of(self, chars: str) -> str:
        found = self._peek()
        if not found or found not in chars:
            raise self._error(f"expected one of {' '.join(repr(c) for c in chars)}")
        self._pos += 1
        return found

    def _error(self, message: str) -> InvalidResource:
        line = self._text.count("\n", 0, self._pos) + 1
        column = self._pos - self._text.rfind("\n", 0, self._pos)
        return _bad(f"not JSON: {message} at line {line} column {column}")
