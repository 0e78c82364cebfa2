"""Reading the model a request names: JSON ``model``, or the multipart form field.

Internal to :mod:`swapcore.adapters.asgi`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from swapcore.adapters._errors import bad_request
from swapcore.adapters._multipart import MultipartError, boundary_of, find_field

__all__ = ["RequestBody", "parse_body"]


class RequestBody:
    """A parsed request body: the ``model`` it names, whether it streams, how to rename it."""

    __slots__ = ("_rewrite", "model", "raw", "stream")

    def __init__(
        self, model: str, stream: bool, raw: bytes, rewrite: Callable[[str], bytes]
    ) -> None:
        self.model = model
        self.stream = stream
        self.raw = raw
        self._rewrite = rewrite

    def renamed(self, model: str) -> bytes:
        """The body to forward with ``model`` in place of the requested name.

        The original bytes when the name is unchanged; otherwise a JSON body
        is re-serialised, and a multipart body has that one field replaced.
        """
        return self.raw if model == self.model else self._rewrite(model)


def parse_body(content_type: str, raw: bytes) -> RequestBody:
    """The model a body names, or a 400 ``GatewayHTTPError``.

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
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(payload, dict):
        raise bad_request("request body must be a JSON object", "invalid_json")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("missing or invalid 'model' field", "missing_model")

    def rewrite(name: str) -> bytes:
        return json.dumps({**payload, "model": name}, ensure_ascii=False).encode()

    return RequestBody(model, payload.get("stream") is True, raw, rewrite)


def _parse_form(raw: bytes, boundary: bytes) -> RequestBody:
    span = find_field(raw, boundary, "model")
    if span is None:
        raise bad_request("missing 'model' form field", "missing_model")
    start, end = span
    try:
        model = raw[start:end].decode()
    except UnicodeDecodeError:
        raise bad_request("the 'model' form field is not UTF-8", "missing_model") from None
    if not model:
        raise bad_request("missing or invalid 'model' form field", "missing_model")

    def rewrite(name: str) -> bytes:
        return raw[:start] + name.encode() + raw[end:]

    return RequestBody(model, False, raw, rewrite)
