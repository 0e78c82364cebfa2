"""The least an ASGI proxy can do, over a chosen upstream client (for bench_dataplane.py).

Run by an ASGI server with ``UPSTREAMS`` (JSON: each model's base URL) and
``CLIENT`` (``aiohttp``, ``httpx`` or ``httpcore``) in the environment. It
reads the body, looks up its model's upstream, forwards the request and
streams the answer back: no queue, no bounds, no logging. Its CPU per
request is the floor a gateway built on these libraries cannot go under.
"""

from __future__ import annotations

import json
import os
from typing import Any

UPSTREAMS: dict[str, str] = json.loads(os.environ.get("UPSTREAMS", "{}"))
CLIENT = os.environ.get("CLIENT", "aiohttp")
_HOP = {b"host", b"content-length", b"connection", b"transfer-encoding", b"date", b"server"}

Send = Any
Receive = Any


async def _body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def _forward(headers: Any) -> list[tuple[bytes, bytes]]:
    return [(k.lower(), v) for k, v in headers if k.lower() not in _HOP]


class Proxy:
    """An ASGI app forwarding each request to its model's upstream with ``CLIENT``."""

    def __init__(self) -> None:
        self.client: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = await _body(receive)
        url = UPSTREAMS[json.loads(body)["model"]] + scope["path"]
        headers = _forward(scope["headers"])
        await getattr(self, "_" + CLIENT)(url, headers, body, send)

    async def _aiohttp(self, url: str, headers: Any, body: bytes, send: Send) -> None:
        import aiohttp

        if self.client is None:
            self.client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
            )
        text = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
        async with self.client.post(url, data=body, headers=text) as response:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": _forward(response.raw_headers),
                }
            )
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    async def _httpx(self, url: str, headers: Any, body: bytes, send: Send) -> None:
        import httpx

        if self.client is None:
            self.client = httpx.AsyncClient(
                timeout=None, trust_env=False, limits=httpx.Limits(max_connections=None)
            )
        request = self.client.build_request("POST", url, headers=headers, content=body)
        response = await self.client.send(request, stream=True)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": _forward(response.headers.raw),
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    async def _httpcore(self, url: str, headers: Any, body: bytes, send: Send) -> None:
        import httpcore

        if self.client is None:
            self.client = httpcore.AsyncConnectionPool(max_keepalive_connections=64)
        async with self.client.stream(
            "POST", url, headers=[*headers, (b"host", b"127.0.0.1")], content=body
        ) as response:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": _forward(response.headers),
                }
            )
            async for chunk in response.aiter_stream():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


app = Proxy()
