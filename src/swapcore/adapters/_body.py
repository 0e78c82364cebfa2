"""Reading request bodies within a per-request cap and a gateway-wide memory budget.

Internal to :mod:`swapcore.adapters.asgi`. The gateway must hold a body
whole before it can route it (the model is named inside), so bodies are what
its memory grows with. Every byte held is counted against a
:class:`BodyBudget` from the moment it arrives until the request ends; a
body that would take the total past the budget is refused with ``503`` and
``Retry-After`` instead of being buffered. A body is read into one
``bytearray`` sized from ``Content-Length`` when the client sends it, so it
is held once, never copied.
"""

from __future__ import annotations

from swapcore.adapters._errors import GatewayHTTPError
from swapcore.adapters._http import ClientDisconnected, Receive, Scope

__all__ = ["RETRY_AFTER", "BodyBudget", "ReadBody", "declared_length", "read_body", "too_large"]

RETRY_AFTER = 1
"""Seconds a client is told to wait (``Retry-After``) when the budget is full."""

_MiB = 1024 * 1024


class BodyBudget:
    """The bytes of request bodies the gateway may hold at once, and those it holds.

    ``limit`` None means no gateway-wide limit. :meth:`take` and
    :meth:`give` are called from the event loop only.
    """

    __slots__ = ("held", "limit", "peak")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes as held; False (nothing counted) if that passes the limit."""
        held = self.held + size
        if self.limit is not None and held > self.limit:
            return False
        self.held = held
        if held > self.peak:
            self.peak = held
        return True

    def give(self, size: int) -> None:
        """Stop counting ``size`` bytes."""
        self.held -= size

    def busy(self) -> GatewayHTTPError:
        """The ``503 gateway_busy`` answer for a body that does not fit."""
        limit = self.limit or 0
        return GatewayHTTPError(
            503,
            f"the gateway holds too many request bodies right now (limit {limit / _MiB:.0f} MiB);"
            f" retry in {RETRY_AFTER} s",
            kind="unavailable_error",
            code="gateway_busy",
            headers=[(b"retry-after", str(RETRY_AFTER).encode())],
        )


class ReadBody:
    """A request body read in full, and the bytes of the budget it holds."""

    __slots__ = ("data", "held")

    def __init__(self, data: bytearray, held: int) -> None:
        self.data = data
        self.held = held


def too_large(limit: int) -> GatewayHTTPError:
    """413: the body is larger than ``limit`` bytes."""
    return GatewayHTTPError(
        413,
        f"request body larger than {limit} bytes",
        kind="invalid_request_error",
        code="body_too_large",
    )


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length``, or None when absent or invalid."""
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
            return length if length >= 0 else None
    return None


async def read_body(receive: Receive, scope: Scope, limit: int, budget: BodyBudget) -> ReadBody:
    """Read the whole body, counting it against ``budget``.

    Raises 413 past ``limit`` bytes (at once when ``Content-Length`` says
    so), 503 ``gateway_busy`` when the budget cannot take the body (after
    reading and discarding the rest of it, so the client is not cut off
    mid-upload and sees the answer), and :class:`ClientDisconnected`. On
    success the caller owns ``held`` bytes of the budget and must
    :meth:`~BodyBudget.give` them back; on failure nothing stays counted.
    """
    declared = declared_length(scope)
    if declared is not None:
        if declared > limit:
            raise too_large(limit)
        if not budget.take(declared):
            await _discard(receive, limit)
            raise budget.busy()
        data = bytearray(declared)
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected
                chunk = message.get("body", b"")
                if chunk:
                    end = size + len(chunk)
                    if end > declared:  # the server should have stopped this
                        raise too_large(declared)
                    data[size:end] = chunk
                    size = end
                if not message.get("more_body", False):
                    break
        except BaseException:
            budget.give(declared)
            raise
        if size != declared:
            del data[size:]
        return ReadBody(data, declared)
    data = bytearray()
    held = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            if chunk:
                if held + len(chunk) > limit:
                    raise too_large(limit)
                if not budget.take(len(chunk)):
                    del data
                    await _discard(receive, limit - held - len(chunk))
                    raise budget.busy()
                held += len(chunk)
                data += chunk
            if not message.get("more_body", False):
                return ReadBody(data, held)
    except BaseException:
        budget.give(held)
        raise


async def _discard(receive: Receive, limit: int) -> None:
    """Read the rest of the body without keeping it; 413 past ``limit`` more bytes."""
    left = limit
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        left -= len(message.get("body", b""))
        if left < 0:
            raise too_large(limit)
        if not message.get("more_body", False):
            return
