"""Applying a model's or a peer's ``filters`` to the bytes of a JSON request body.

Internal to :mod:`swapcore.adapters.asgi`. The rule is
:func:`swapcore.config.apply_filters`; this module applies it to the body's
bytes without parsing it, as llama-swap edits the JSON text in place: the
members it does not touch are forwarded byte for byte, a replaced value
keeps its place, an added parameter goes at the end. It walks only the
top-level members (the regular-expression engine skips each string in one
step), so its cost and memory are linear in the body and it never recurses.

One hardening beyond llama-swap, whose edits touch only the first of
duplicate keys: every copy of a stripped or set key is removed (a set key
keeps its first place), so a client cannot slip a stripped parameter past
the filter by sending it twice.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from swapcore.adapters._errors import bad_request
from swapcore.adapters._requests import PARSE_LIMIT
from swapcore.config.filters import Filters

__all__ = ["BodyFilterError", "filter_json_body", "filter_request"]

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_SPACE = re.compile(rb"[ \t\r\n]*")
_LITERAL = re.compile(rb"[^,}\]\s]+")
_BOM = b"\xef\xbb\xbf"
_OPEN = frozenset(b"{[")
_CLOSE = frozenset(b"}]")


class BodyFilterError(ValueError):
    """The body is not a JSON object whose members can be told apart."""


def _space(body: bytes | bytearray, at: int) -> int:
    return _SPACE.match(body, at).end()  # type: ignore[union-attr]


def _value_end(body: bytes | bytearray, at: int) -> int:
    """Where the JSON value starting at ``at`` ends."""
    if at >= len(body):
        raise BodyFilterError("request body ends inside the JSON object")
    first = body[at]
    if first == ord('"'):
        match = _STRING.match(body, at)
        if match is None:
            raise BodyFilterError(f"unterminated string at byte {at}")
        return match.end()
    if first in _OPEN:
        depth = 0
        for match in _TOKEN.finditer(body, at):
            char = body[match.start()]
            if char in _OPEN:
                depth += 1
            elif char in _CLOSE:
                depth -= 1
                if depth == 0:
                    return match.end()
        raise BodyFilterError("request body ends inside the JSON object")
    match = _LITERAL.match(body, at)
    if match is None:
        raise BodyFilterError(f"missing value at byte {at}")
    return match.end()


def _members(body: bytes | bytearray) -> tuple[int, int, list[tuple[str, int, int, int]]]:
    """The object's ``{`` and ``}`` positions and its members ``(key, start, value_at, end)``."""
    open_at = _space(body, 3 if body.startswith(_BOM) else 0)
    if open_at >= len(body) or body[open_at] != ord("{"):
        raise BodyFilterError("request body must be a JSON object")
    members: list[tuple[str, int, int, int]] = []
    at = _space(body, open_at + 1)
    if at < len(body) and body[at] == ord("}"):
        return open_at, at, members
    while True:
        match = _STRING.match(body, at)
        if match is None:
            raise BodyFilterError(f"expected a key at byte {at}")
        try:
            key = json.loads(bytes(body[at : match.end()]))
        except ValueError as exc:
            raise BodyFilterError(f"invalid key at byte {at}: {exc}") from None
        colon = _space(body, match.end())
        if colon >= len(body) or body[colon] != ord(":"):
            raise BodyFilterError(f"expected ':' at byte {colon}")
        value_at = _space(body, colon + 1)
        end = _value_end(body, value_at)
        members.append((key, at, value_at, end))
        at = _space(body, end)
        if at < len(body) and body[at] == ord(","):
            at = _space(body, at + 1)
            continue
        if at < len(body) and body[at] == ord("}"):
            return open_at, at, members
        raise BodyFilterError(f"expected ',' or '}}' at byte {at}")


def _encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def filter_json_body(body: bytes | bytearray, filters: Filters, requested: str) -> bytearray:
    """``body`` with ``filters`` applied for a request that named ``requested``.

    ``body`` must be a JSON object (the gateway has checked it); it is not
    changed. Raises :class:`BodyFilterError` when its members cannot be
    told apart.
    """
    strip = filters.strip_params
    assigned = filters.assignments(requested)
    open_at, close_at, members = _members(body)
    out = bytearray(body[: open_at + 1])
    written = False
    placed: set[str] = set()
    for key, start, value_at, end in members:
        if key in assigned:
            if key in strip or key in placed:
                continue  # stripped (then set at the end), or a later copy
            placed.add(key)
            piece = body[start:value_at] + _encode(assigned[key])
        elif key in strip:
            continue
        else:
            piece = body[start:end]
        if written:
            out += b","
        out += piece
        written = True
    for key, value in assigned.items():
        if key in placed:
            continue
        if written:
            out += b","
        out += _encode(key) + b":" + _encode(value)
        written = True
    out += body[close_at:]
    return out


async def filter_request(
    content: bytearray, kind: str, filters: Filters | None, requested: str
) -> bytearray:
    """The body to forward: ``content`` with ``filters`` applied when they change it.

    ``kind`` is the parsed body's (``"json"`` or ``"form"``): as in
    llama-swap, filters apply to JSON bodies only. ``content`` comes back
    as it is (no copy, no re-encoding) when nothing applies; otherwise it
    is overwritten with the filtered body and returned. Bodies over
    :data:`~swapcore.adapters._requests.PARSE_LIMIT` bytes are filtered in a
    worker thread. A body whose members cannot be told apart is a 400.
    """
    if kind != "json" or filters is None or not filters.changes(requested):
        return content
    try:
        if len(content) > PARSE_LIMIT:
            filtered = await asyncio.to_thread(filter_json_body, content, filters, requested)
        else:
            filtered = filter_json_body(content, filters, requested)
    except BodyFilterError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}", "invalid_json") from None
    # The filtered body takes the client's buffer: the request holds one body
    # while it is forwarded, not two.
    content[:] = filtered
    return content
