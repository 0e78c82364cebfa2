"""The gateway's HTTP errors: OpenAI-shaped bodies, and the status of every outcome.

Internal to :mod:`swapcore.adapters.asgi`; the table lives in docs/gateway.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from swapcore.errors import (
    ConcurrencyLimitExceeded,
    LeaseExpired,
    ModelNotFound,
    ModelUnloaded,
    PolicyError,
    RouterNotRunning,
    RouterShutdown,
    SwapFailed,
)

__all__ = [
    "GatewayHTTPError",
    "bad_request",
    "check_method",
    "describe",
    "error_json",
    "first_line",
    "model_not_found",
    "routing_error",
    "shutting_down",
    "upstream_status_error",
]


class GatewayHTTPError(Exception):
    """A request the gateway answers with an OpenAI-style JSON error.

    ``status`` is the HTTP status, ``kind`` the error ``type`` and ``code``
    a stable machine-readable string; ``headers`` are extra response headers.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str,
        code: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code
        self.headers = list(headers)

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return error_json(self.message, self.kind, self.code)


def error_json(message: str, kind: str, code: str) -> dict[str, Any]:
    """An OpenAI-style error object."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def routing_error(exc: BaseException) -> GatewayHTTPError:
    """The HTTP answer to a router outcome (a ``RoutingError`` or ``RouterNotRunning``)."""
    message = first_line(str(exc)) or type(exc).__name__
    if isinstance(exc, ModelNotFound):
        return GatewayHTTPError(404, message, kind="invalid_request_error", code="model_not_found")
    if isinstance(exc, ConcurrencyLimitExceeded):
        return GatewayHTTPError(
            429, message, kind="rate_limit_error", code="concurrency_limit_exceeded"
        )
    if isinstance(exc, SwapFailed):
        # The first line only: the process' output, in the log, is not for clients.
        return GatewayHTTPError(502, message, kind="upstream_error", code="swap_failed")
    if isinstance(exc, ModelUnloaded):
        return GatewayHTTPError(503, message, kind="unavailable_error", code="model_unloaded")
    if isinstance(exc, RouterShutdown):
        return GatewayHTTPError(503, message, kind="unavailable_error", code="shutting_down")
    if isinstance(exc, PolicyError):
        # The planner's or scheduler's own bug: logged in full by the router.
        return GatewayHTTPError(500, message, kind="server_error", code="policy_error")
    if isinstance(exc, LeaseExpired):
        return GatewayHTTPError(504, message, kind="timeout_error", code="lease_expired")
    if isinstance(exc, RouterNotRunning):
        return GatewayHTTPError(
            503,
            "the gateway is not started (run its lifespan, or call startup())",
            kind="unavailable_error",
            code="not_started",
        )
    return GatewayHTTPError(503, message, kind="unavailable_error", code="routing_error")


def shutting_down() -> GatewayHTTPError:
    """503 ``shutting_down``: the gateway is going down and serves no more requests."""
    return GatewayHTTPError(
        503,
        "the gateway is shutting down",
        kind="unavailable_error",
        code="shutting_down",
    )


def upstream_status_error(status: int, detail: bytes) -> GatewayHTTPError:
    """An upstream's non-200 answer, for a stream that had already begun (its message quoted)."""
    message = f"upstream answered HTTP {status}"
    try:
        payload = json.loads(detail)
    except ValueError:
        text = detail.decode("utf-8", "replace").strip()
        if text:
            message += f": {first_line(text)[:500]}"
    else:
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message += f": {error['message']}"
        elif isinstance(error, str):
            message += f": {error}"
    return GatewayHTTPError(status, message, kind="upstream_error", code="upstream_status")


def model_not_found(name: str) -> GatewayHTTPError:
    """404 for a name that is no local model, alias or peer model."""
    return GatewayHTTPError(
        404, f"model {name!r} not found", kind="invalid_request_error", code="model_not_found"
    )


def bad_request(message: str, code: str) -> GatewayHTTPError:
    """400 ``invalid_request_error``."""
    return GatewayHTTPError(400, message, kind="invalid_request_error", code=code)


def check_method(method: str, *allowed: str) -> None:
    """Raise 405 (with ``Allow``) unless ``method`` is one of ``allowed``."""
    if method not in allowed:
        raise GatewayHTTPError(
            405,
            f"method {method} not allowed (allowed: {', '.join(allowed)})",
            kind="invalid_request_error",
            code="method_not_allowed",
            headers=[(b"allow", ", ".join(allowed).encode())],
        )


def first_line(text: str) -> str:
    """The first line of ``text``, stripped."""
    return text.strip().split("\n", 1)[0]


def describe(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (or just the type name)."""
    text = first_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
