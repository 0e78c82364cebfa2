"""Reading the model a request names: JSON ``model``, or the multipart form field.

Internal to :mod:`swapcore.adapters.asgi`. Small JSON bodies are parsed with
:func:`json.loads`; larger ones are scanned without being parsed
(:mod:`~swapcore.adapters._jsonscan`), so a hostile body can neither
multiply in memory nor recurse without bound. Either way a body nested
deeper than the limit is refused, and the body forwarded upstream is the
client's own bytes (only the model's name is replaced, in place, when the
configuration renames it).
"""

from __future__ import annotations

import json
from typing import Any

from swapcore.adapters._errors import GatewayHTTPError, bad_request
from swapcore.adapters._jsonscan import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_TOKENS,
    JSONScanError,
    scan_object,
)
from swapcore.adapters._multipart import MultipartError, boundary_of, find_field

__all__ = ["PARSE_LIMIT", "RequestBody", "needs_scan", "parse_body", "reject_encoding"]

PARSE_LIMIT = 1024 * 1024
"""Bodies up to this many bytes are parsed with ``json.loads``; larger ones are scanned."""

_MAX_MODEL_NAME = 512  # longer names are no model's: refused before any lookup


class RequestBody:
    """A parsed request body: the ``model`` it names, whether it streams, how to rename it."""

    __slots__ = ("_span", "kind", "model", "raw", "stream")

    def __init__(
        self,
        model: str,
        stream: bool,
        raw: bytearray,
        span: tuple[int, int] | None,
        kind: str,
    ) -> None:
        self.model = model
        self.stream = stream
        self.raw = raw
        self._span = span  # where the model's value sits in raw (None: find it when needed)
        self.kind = kind  # "json" or "form"

    def renamed(self, model: str) -> bytearray:
        """The body to forward with ``model`` in place of the requested name.

        The client's bytes, with only the model's value replaced (in place:
        the body is not copied). JSON values are written as JSON strings; a
        form field's value as its UTF-8 bytes.
        """
        if model == self.model:
            return self.raw
        span = self._span
        if span is None:
            span = scan_object(self.raw).span
            assert span is not None, "a parsed body without its model's span"
        value = json.dumps(model).encode() if self.kind == "json" else model.encode()
        self.raw[span[0] : span[1]] = value
        self._span = (span[0], span[0] + len(value))
        self.model = model
        return self.raw


def needs_scan(content_type: str, raw: bytearray) -> bool:
    """True when :func:`parse_body` will scan rather than parse (worth a worker thread)."""
    return len(raw) > PARSE_LIMIT and boundary_of_safe(content_type) is None


def boundary_of_safe(content_type: str) -> bytes | None:
    """:func:`boundary_of`, with a malformed multipart type treated as multipart (b"")."""
    try:
        return boundary_of(content_type)
    except MultipartError:
        return b""


def reject_encoding(content_encoding: str | None) -> None:
    """Raise 415 for a compressed request body: the model's name would be unreadable."""
    if content_encoding is None:
        return
    coding = content_encoding.strip().lower()
    if coding in ("", "identity"):
        return
    raise GatewayHTTPError(
        415,
        f"request bodies with Content-Encoding {coding[:40]!r} are not supported;"
        " send the body uncompressed",
        kind="invalid_request_error",
        code="unsupported_encoding",
    )


def parse_body(content_type: str, raw: bytearray) -> RequestBody:
    """The model a body names, or a 400/413 ``GatewayHTTPError``.

    ``multipart/form-data`` bodies are searched for the ``model`` form field;
    anything else must be a JSON object with a non-empty string ``model``
    (llama-swap reads the body as JSON whatever its content type says).
    ``stream`` is True only for a JSON body with ``"stream": true``.
    """
    try:
        boundary = boundary_of(content_type)
        if boundary is not None:
            return _parse_form(raw, boundary)
    except MultipartError as exc:
        raise bad_request(f"invalid multipart/form-data body: {exc}", "invalid_form") from None
    if len(raw) > PARSE_LIMIT:
        return _scan(raw)
    try:
        payload = json.loads(raw)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(payload, dict):
        raise bad_request("request body must be a JSON object", "invalid_json")
    if raw.count(b"[") + raw.count(b"{") > DEFAULT_MAX_DEPTH and _depth(payload) > (
        DEFAULT_MAX_DEPTH
    ):
        raise _too_deep()
    if raw.count(b'"model"') > 1:
        _scan(raw)  # a second top-level "model" is an error; nested ones are not
    model = payload.get("model")
    return RequestBody(_checked_model(model), payload.get("stream") is True, raw, None, "json")


def _scan(raw: bytearray) -> RequestBody:
    try:
        found = scan_object(raw, max_depth=DEFAULT_MAX_DEPTH, max_tokens=DEFAULT_MAX_TOKENS)
    except JSONScanError as exc:
        if exc.code == "too_deep":
            raise _too_deep() from None
        if exc.code == "too_complex":
            raise GatewayHTTPError(
                413, str(exc), kind="invalid_request_error", code="body_too_complex"
            ) from None
        raise bad_request(str(exc), exc.code) from None
    return RequestBody(_checked_model(found.model), found.stream, raw, found.span, "json")


def _checked_model(model: object) -> str:
    if not isinstance(model, str) or not model:
        raise bad_request("missing or invalid 'model' field", "missing_model")
    if len(model) > _MAX_MODEL_NAME:
        raise bad_request(
            f"the 'model' field is longer than {_MAX_MODEL_NAME} characters", "invalid_model"
        )
    return model


def _too_deep() -> GatewayHTTPError:
    return bad_request(
        f"request body nests deeper than {DEFAULT_MAX_DEPTH} levels", "json_too_deep"
    )


def _depth(payload: Any) -> int:
    """The nesting depth of parsed JSON (objects and arrays), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > DEFAULT_MAX_DEPTH:
                return deepest
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _parse_form(raw: bytearray, boundary: bytes) -> RequestBody:
    span = find_field(raw, boundary, "model")
    if span is None:
        raise bad_request("missing 'model' form field", "missing_model")
    start, end = span
    try:
        model = bytes(raw[start:end]).decode()
    except UnicodeDecodeError:
        raise bad_request("the 'model' form field is not UTF-8", "missing_model") from None
    return RequestBody(_checked_model(model), False, raw, span, "form")
