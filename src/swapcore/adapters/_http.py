"""Plain-ASGI plumbing for the gateway: responses, errors, bodies, headers, paths.

Internal to :mod:`swapcore.adapters.asgi`. No framework: just the ASGI
message dicts, so the gateway mounts anywhere and adds no dependency.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, TypeAlias

from swapcore.adapters._errors import GatewayHTTPError

__all__ = [
    "ClientDisconnected",
    "Exchange",
    "Headers",
    "JSON_HEADERS",
    "Message",
    "NO_BUFFERING",
    "Receive",
    "SSE_HEADERS",
    "Scope",
    "Send",
    "forwardable_request_headers",
    "forwardable_response_headers",
    "header",
    "route_path",
]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
Headers: TypeAlias = list[tuple[bytes, bytes]]

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
NO_BUFFERING = (b"x-accel-buffering", b"no")  # asks nginx-like proxies not to buffer a stream
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    NO_BUFFERING,
]

# RFC 9110 §7.6.1 hop-by-hop headers, plus those the gateway always recomputes:
# host and content-length (the body may be rewritten) on requests.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
_REQUEST_RECOMPUTED = frozenset({b"host", b"content-length", b"accept-encoding"})
_AUTH_HEADERS = frozenset({b"authorization", b"x-api-key"})
# The ASGI server adds its own; forwarding the upstream's would duplicate them.
_RESPONSE_SERVER_OWNED = frozenset({b"server", b"date"})


class ClientDisconnected(Exception):
    """The client went away before the request body was fully received."""


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header ``name`` (lower case), decoded as latin-1."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def route_path(scope: Scope) -> str:
    """The request path relative to where the app is mounted.

    Servers and frameworks disagree on whether ``path`` includes
    ``root_path`` (uvicorn's ``--root-path`` and Starlette's ``Mount`` keep
    the full path; older ones strip it), so the prefix is removed only when
    ``path`` actually starts with it, as Starlette does.
    """
    path: str = scope.get("path", "") or "/"
    root: str = scope.get("root_path", "") or ""
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :] or "/"
    return path


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Header names listed in ``Connection``: hop-by-hop for this message only."""
    names: set[bytes] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            names.update(t.strip().lower() for t in bytes(value).split(b",") if t.strip())
    return names


def forwardable_request_headers(
    headers: Iterable[tuple[bytes, bytes]], *, strip_auth: bool
) -> Headers:
    """Client request headers to send upstream.

    Drops hop-by-hop headers (and any named in ``Connection``), ``host``,
    ``content-length`` (the body may be rewritten; the client recomputes it)
    and ``accept-encoding`` (replaced by the caller, see
    :class:`~swapcore.adapters.asgi.GatewayApp`); with ``strip_auth`` also
    ``authorization`` and ``x-api-key``, so the gateway's own keys never
    reach an upstream.
    """
    headers = list(headers)
    dropped = _HOP_BY_HOP | _REQUEST_RECOMPUTED | _connection_tokens(headers)
    if strip_auth:
        dropped = dropped | _AUTH_HEADERS
    return [(k, v) for k, v in headers if k.lower() not in dropped]


def forwardable_response_headers(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Upstream response headers to send to the client.

    Drops hop-by-hop headers (and any named in ``Connection``) and ``server``
    and ``date``, which the ASGI server sets itself.
    """
    headers = list(headers)
    dropped = _HOP_BY_HOP | _RESPONSE_SERVER_OWNED | _connection_tokens(headers)
    return [(k.lower(), v) for k, v in headers if k.lower() not in dropped]


class Exchange:
    """The response to one request, tracking what has been sent.

    ``started``: the status line and headers went out; ``finished``: the
    last body message went out; ``sse``: the body is an event stream (so a
    failure can still be reported in-band, as an ``error`` event);
    ``sending``: a body chunk is on its way (it stays True when that send
    never returned: the client stopped reading).
    """

    __slots__ = ("_send", "finished", "sending", "sse", "started", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.finished = False
        self.sse = False
        self.sending = False
        self.status = 0

    async def start(self, status: int, headers: Headers) -> None:
        """Send the status and headers (once)."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        self.status = status
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def body(self, data: bytes) -> None:
        """Send one chunk of the body; more follows."""
        self.sending = True
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
        self.sending = False

    async def finish(self, data: bytes = b"") -> None:
        """Send the last chunk of the body; the response is complete."""
        self.finished = True
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def json(self, status: int, payload: object, headers: Headers | None = None) -> None:
        """Send a whole JSON response."""
        data = json.dumps(payload).encode()
        extra = headers or []
        await self.start(
            status, [*JSON_HEADERS, (b"content-length", str(len(data)).encode()), *extra]
        )
        await self.finish(data)

    async def text(self, status: int, text: str) -> None:
        """Send a whole ``text/plain`` response."""
        data = text.encode()
        await self.start(
            status,
            [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(data)).encode()),
            ],
        )
        await self.finish(data)

    async def error(self, error: GatewayHTTPError) -> bool:
        """Report ``error`` the best way still open; True if the client got it.

        Before the headers: a JSON error response with ``error.status``.
        Inside an event stream: one ``data: {"error": ...}`` event (OpenAI
        clients raise it as an API error), then the stream ends. Inside any
        other body: nothing can be said any more; returns False and the caller
        abandons the response, so the server closes the connection and the
        client sees a truncated body rather than a silently complete one.
        """
        if self.finished:
            return False
        if not self.started:
            await self.json(error.status, error.body(), error.headers)
            return True
        if self.sse:
            payload = error.body()
            payload["error"]["status"] = error.status
            await self.finish(b"data: " + json.dumps(payload).encode() + b"\n\n")
            return True
        return False
