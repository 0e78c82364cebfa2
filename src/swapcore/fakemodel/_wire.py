"""The fake model server's HTTP plumbing: ASGI types, JSON bodies, OpenAI-style errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]

_MAX_BODY = 128 * 1024 * 1024
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class _BadRequest(Exception):
    def __init__(self, message: str, *, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


async def _read_json(receive: _Receive) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _BadRequest("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            raise _BadRequest("request body too large", status=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        body = json.loads(b"".join(chunks) or b"{}")  # no body: no fields
    except ValueError as exc:
        raise _BadRequest(f"invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise _BadRequest("the request body must be a JSON object")
    return body


async def _send_json(send: _Send, status: int, body: object) -> None:
    data = json.dumps(body).encode()
    headers = [*_JSON, (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _send_error(
    send: _Send, status: int, message: str, kind: str, param: str | None = None
) -> None:
    error = {"message": message, "type": kind, "param": param, "code": status}
    await _send_json(send, status, {"error": error})


async def _lifespan(receive: _Receive, send: _Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
