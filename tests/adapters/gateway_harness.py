"""The harness of the in-process gateway tests: a bench, an ASGI caller, configs, SSE helpers.

A :class:`Bench` is a router over FakeProcesses, real upstreams on 127.0.0.1
(see upstream_servers.py), a GatewayApp and an in-memory httpx client for it
(``bench`` and ``live`` fixtures in conftest.py). httpx.ASGITransport
collects whole responses, so tests that watch a stream as it happens
(loading progress, disconnects, failures mid-stream) drive the app through
:class:`Call`, which plays the ASGI server.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
from upstream_servers import ASGIApp

from swapcore import BaseRouter, GroupPlanner, ProcessState
from swapcore.adapters.asgi import GatewayApp
from swapcore.config import GatewayConfig, build_router, parse_config
from swapcore.scheduling.fifo import FIFOScheduler
from swapcore.testing.fakes import FakeProcess

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
CHAT = {"messages": [{"role": "user", "content": "hello there"}]}
BOUND = 10.0  # seconds any single wait may take; no test asserts a duration


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def sse_data(text: str) -> list[Any]:
    """The ``data:`` payloads of an event stream, JSON-decoded except ``[DONE]``."""
    events = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def reasoning(events: list[Any]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("reasoning_content", "")
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


def content(events: list[Any]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


# -------------------------------------------------------------- the harness


class Call:
    """Plays the ASGI server for one request: the body, then a disconnect when told."""

    def __init__(
        self,
        app: ASGIApp,
        method: str,
        path: str,
        body: object = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.app = app
        data = b"" if body is None else json.dumps(body).encode()
        self.scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
            "server": ("gw", 80),
            "client": ("127.0.0.1", 1234),
        }
        self.body = data
        self.messages: list[Message] = []
        self._body_sent = False
        self._gone = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> Call:
        self.task = asyncio.ensure_future(self.app(self.scope, self.receive, self.send))
        return self

    async def receive(self) -> Message:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self._gone.set()  # like uvicorn: a complete response reads as a disconnect

    def disconnect(self) -> None:
        self._gone.set()

    async def done(self) -> None:
        assert self.task is not None
        await asyncio.wait_for(self.task, BOUND)

    @property
    def status(self) -> int | None:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    @property
    def text(self) -> str:
        return b"".join(m.get("body", b"") for m in self.messages[1:]).decode()

    @property
    def complete(self) -> bool:
        return any(
            m["type"] == "http.response.body" and not m.get("more_body") for m in self.messages
        )


# ------------------------------------------------------------------ fixtures


class Bench:
    """A router over FakeProcesses, real upstreams, a gateway and an in-memory client for it."""

    def __init__(
        self,
        processes: dict[str, FakeProcess],
        urls: dict[str, str],
        *,
        router: BaseRouter | None = None,
        limits: dict[str, int] | None = None,
        **options: Any,
    ) -> None:
        self.processes = processes
        self.urls = urls
        self.router = router or BaseRouter(
            self.processes,
            GroupPlanner({}, models=self.processes),
            scheduler=functools.partial(FIFOScheduler, concurrency_limits=limits or {}),
        )
        self.app = GatewayApp(self.router, **options)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://gw"
        )

    async def close(self) -> None:
        await self.client.aclose()
        await self.app.shutdown()


Make = Callable[..., Awaitable[Bench]]


def state_of(process: FakeProcess) -> ProcessState:
    """The state, read afresh (keeps mypy from narrowing it across awaits)."""
    return process.state


def chat_config(urls: dict[str, str] | None = None, **extra: Any) -> GatewayConfig:
    """A parsed config with models real (alias nick, useModelName), plain and hidden.

    ``urls`` gives the models' proxies (default: unreachable placeholders).
    """
    urls = urls or {}
    models = {
        "real": {
            "cmd": "unused",
            "proxy": urls.get("real", "http://real"),
            "aliases": ["nick"],
            "useModelName": "upstream-name",
            "name": "Real",
            "description": "The real one",
            "metadata": {"size": 7},
        },
        "plain": {
            "cmd": "unused",
            "proxy": urls.get("plain", "http://plain"),
            "aliases": ["plain-alias"],
        },
        "hidden": {"cmd": "unused", "proxy": urls.get("hidden", "http://hidden"), "unlisted": True},
    }
    return parse_config({"models": models, **extra})


def fake_router(config: GatewayConfig, **kwargs: Any) -> tuple[BaseRouter, dict[str, FakeProcess]]:
    processes = {m: FakeProcess(m, **kwargs) for m in config.models}
    return build_router(config, processes=processes), processes
