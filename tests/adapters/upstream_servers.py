"""Real upstream servers on 127.0.0.1 for gateway tests, in the test's own event loop.

:class:`LiveUpstreams` serves ASGI apps with uvicorn, or raw HTTP/1.1
handlers with ``asyncio.start_server`` when a test needs what no well-behaved
server does (a connection reset mid-body, a server that never answers, one
that goes silent mid-stream). Every server listens on an ephemeral port and
is closed when the test ends.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

BOUND = 10.0  # seconds any single wait may take


class LiveUpstreams:
    """Upstream servers started on demand; ``await close()`` stops them all."""

    def __init__(self) -> None:
        self._servers: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._raw: list[asyncio.base_events.Server] = []
        self._connections: set[asyncio.StreamWriter] = set()

    async def asgi(self, app: ASGIApp) -> str:
        """Serve ``app`` with uvicorn; return its base URL."""
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        self._servers.append((server, sock))
        self._tasks.append(task)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BOUND
        while not server.started:
            if task.done() or loop.time() > deadline:
                raise AssertionError("an upstream server did not start")
            await asyncio.sleep(0.005)
        return f"http://127.0.0.1:{port}"

    async def raw(self, handler: RawHandler) -> str:
        """Serve each connection with ``handler(reader, writer)``; return the base URL."""

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._connections.add(writer)
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                self._connections.discard(writer)
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self._raw.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        for server, _ in self._servers:
            server.should_exit = True
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=BOUND)
        for _, sock in self._servers:
            sock.close()
        for writer in list(self._connections):
            writer.transport.abort()
        for raw in self._raw:
            raw.close()
        self._servers.clear()
        self._tasks.clear()
        self._raw.clear()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """One HTTP/1.1 request: its request line, headers (lower-case names) and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    body = await reader.readexactly(length) if length else b""
    return lines[0], headers, body


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


SSE_EVENT = b'data: {"choices": [{"index": 0, "delta": {"content": "t"}}]}\n\n'


async def read_request_body(receive: Any) -> bytes:
    """The whole body of an ASGI request, however many messages it came in."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


class Echo:
    """An upstream that answers every request with what it received (as JSON)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_request_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        try:
            model = json.loads(body).get("model")
        except (ValueError, AttributeError):
            model = None
        record = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "headers": headers,
            "model": model,
            "body": body,
        }
        self.seen.append(record)
        data = json.dumps({**record, "body": body.decode("latin-1")}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [(b"content-type", b"application/json"), (b"x-upstream", b"echo")],
            }
        )
        await send({"type": "http.response.body", "body": data})


class Streaming:
    """A raw upstream that streams chunks: endless, ``chunks`` of them, or a reset.

    ``fail_after``: abort the connection (a reset) after that many chunks;
    ``stall_after``: send nothing more after that many chunks, keeping the
    connection open; ``silent``: read the request and never answer.
    ``closed`` counts connections the client (the gateway) closed.
    """

    def __init__(
        self,
        *,
        chunks: int | None = None,
        fail_after: int | None = None,
        stall_after: int | None = None,
        silent: bool = False,
        content_type: bytes = b"text/event-stream",
        interval: float = 0.001,
    ) -> None:
        self.chunks = chunks
        self.fail_after = fail_after
        self.stall_after = stall_after
        self.silent = silent
        self.content_type = content_type
        self.interval = interval
        self.requests = 0
        self.closed = 0
        self.gone = asyncio.Event()  # set each time the client closes a connection

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        self.requests += 1
        watcher = asyncio.ensure_future(reader.read())  # b"" once the client closes
        try:
            if self.silent:
                await watcher
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: "
                + self.content_type
                + b"\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            sent = 0
            while not watcher.done():
                if self.fail_after is not None and sent == self.fail_after:
                    writer.transport.abort()
                    return
                if self.chunks is not None and sent == self.chunks:
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    await watcher
                    return
                if self.stall_after is not None and sent == self.stall_after:
                    await watcher
                    return
                writer.write(chunk(SSE_EVENT))
                await writer.drain()
                sent += 1
                await asyncio.wait({watcher}, timeout=self.interval)
        except ConnectionError:
            pass  # the client reset the connection while we wrote
        finally:
            if not watcher.done():
                await asyncio.wait({watcher}, timeout=BOUND)
            if watcher.done() and not watcher.cancelled():
                self.closed += 1  # read() ended: b"" (closed) or an error (reset)
                self.gone.set()
            watcher.cancel()
