"""Reading the top-level ``model`` and ``stream`` of a JSON body without parsing all of it.

Internal to :mod:`swapcore.adapters.asgi`. The gateway needs two fields of
the request body and forwards the rest byte for byte, so it never builds
Python objects for the body: ``json.loads`` of a hostile body multiplies its
size in memory (``[{},{},...]`` takes some 20 times its bytes) and recurses
once per nesting level. :func:`scan_object` walks only the strings and
brackets, with the regular-expression engine skipping each string's content
in one step, and decodes just the values it needs.

What it checks: the body is one JSON object (after optional whitespace and a
UTF-8 byte-order mark), its strings are terminated, its brackets balance and
nest at most ``max_depth`` deep, at most ``max_tokens`` strings and brackets
appear, and at most one top-level ``model`` key exists. What it does not
check (numbers, commas, literals between the tokens) is left to the upstream,
which answers a malformed body with its own error, as it would without a
gateway.
"""

from __future__ import annotations

import json
import re

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_TOKENS",
    "JSONScanError",
    "TopLevel",
    "scan_object",
]

DEFAULT_MAX_DEPTH = 128
"""Deepest nesting of objects and arrays accepted in a request body."""
DEFAULT_MAX_TOKENS = 1_000_000
"""Most strings plus brackets accepted in one request body."""

# A whole string (its content skipped by the regex engine in one go), a lone
# quote (an unterminated string), or a bracket.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|"|[\[\]{}]', re.DOTALL)
_SPACE = re.compile(rb"[ \t\r\n]*")
_OPEN = {ord("{"): ord("}"), ord("["): ord("]")}
_QUOTE = ord('"')
_COLON = ord(":")
_BOM = b"\xef\xbb\xbf"


class JSONScanError(ValueError):
    """The body is not a JSON object the gateway can route.

    ``code`` names the problem for the HTTP error: ``invalid_json``,
    ``too_deep``, ``too_complex`` or ``missing_model``.
    """

    def __init__(self, message: str, code: str = "invalid_json") -> None:
        super().__init__(message)
        self.code = code


class TopLevel:
    """What the scan found.

    ``model``: the top-level ``model`` string, or None when it is absent or
    not a string; ``span``: where that JSON string (quotes included) sits in
    the body; ``stream``: True when the top level has ``"stream": true``.
    """

    __slots__ = ("model", "span", "stream")

    def __init__(self, model: str | None, span: tuple[int, int] | None, stream: bool) -> None:
        self.model = model
        self.span = span
        self.stream = stream


def scan_object(
    body: bytes | bytearray,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> TopLevel:
    """Scan a JSON object body for its top-level ``model`` and ``stream``.

    Raises :class:`JSONScanError` when the body is not one JSON object (as
    far as strings and brackets tell), nests deeper than ``max_depth``, has
    more than ``max_tokens`` strings and brackets, or names ``model`` twice
    at the top level. A missing ``model`` is not an error here: ``model`` is
    then None.
    """
    start = _SPACE.match(body, 3 if body.startswith(_BOM) else 0).end()  # type: ignore[union-attr]
    if start >= len(body) or body[start] != ord("{"):
        raise JSONScanError("request body must be a JSON object")
    closers = bytearray()  # the closing bracket expected for each open level
    model: object = None
    span: tuple[int, int] | None = None
    model_at = -1  # where the model's value starts, once its key was seen
    stream = False
    tokens = 0
    for match in _TOKEN.finditer(body, start):
        tokens += 1
        if tokens > max_tokens:
            raise JSONScanError(
                f"request body has more than {max_tokens} strings and brackets", "too_complex"
            )
        at = match.start()
        char = body[at]
        if char in _OPEN:
            if len(closers) >= max_depth:
                raise JSONScanError(
                    f"request body nests deeper than {max_depth} levels", "too_deep"
                )
            closers.append(_OPEN[char])
            continue
        if char != _QUOTE:
            if not closers or closers.pop() != char:
                raise JSONScanError(f"unbalanced bracket at byte {at}")
            if not closers:
                end = _SPACE.match(body, at + 1).end()  # type: ignore[union-attr]
                if end != len(body):
                    raise JSONScanError(f"unexpected data after the JSON object at byte {end}")
                break
            continue
        end = match.end()
        if end == at + 1:
            raise JSONScanError(f"unterminated string at byte {at}")
        if at == model_at:
            model, span = _decode(body, at, end), (at, end)
            model_at = -2
            continue
        if len(closers) != 1:
            continue
        after = _SPACE.match(body, end).end()  # type: ignore[union-attr]
        if after >= len(body) or body[after] != _COLON:
            continue  # a string value, not a key
        key = _key(body, at, end)
        if key == "model":
            if model_at != -1:
                raise JSONScanError("the 'model' field appears twice", "missing_model")
            model_at = _SPACE.match(body, after + 1).end()  # type: ignore[union-attr]
        elif key == "stream":
            value_at = _SPACE.match(body, after + 1).end()  # type: ignore[union-attr]
            stream = body.startswith(b"true", value_at) and _ends_literal(body, value_at + 4)
    else:
        raise JSONScanError("request body ends inside the JSON object")
    return TopLevel(model if isinstance(model, str) else None, span, stream)


def _key(body: bytes | bytearray, at: int, end: int) -> str | None:
    """A top-level key, decoded; None for keys longer than any the gateway reads."""
    if end - at > 40:
        return None
    raw = bytes(body[at:end])
    if b"\\" not in raw:
        return raw[1:-1].decode("utf-8", "replace")
    value = _decode(body, at, end)
    return value if isinstance(value, str) else None


def _decode(body: bytes | bytearray, at: int, end: int) -> object:
    try:
        return json.loads(bytes(body[at:end]))
    except ValueError as exc:
        raise JSONScanError(f"invalid string at byte {at}: {exc}") from None


def _ends_literal(body: bytes | bytearray, at: int) -> bool:
    return at >= len(body) or body[at] in b" \t\r\n,}"
