"""The operator API over real HTTP: /api/events, /logs, unload, /props, /models, CORS, keys.

Each test serves a GatewayApp with uvicorn on 127.0.0.1 over a router of
FakeProcesses whose upstreams are real servers (upstream_servers.py), and
talks to it with httpx (or a raw socket, for a client that never reads).
Waits are bounded; no test asserts a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("yaml")

import httpx
import uvicorn
from gateway_harness import CHAT, chat_config, eventually
from upstream_servers import Echo, LiveUpstreams

from swapcore.adapters._outputlog import OutputLog
from swapcore.adapters.asgi import GatewayApp
from swapcore.config import GatewayConfig, build_router
from swapcore.fakemodel import FakeModel
from swapcore.testing.fakes import FakeProcess
from system_helpers import free_port

BOUND = 20.0  # seconds any one wait may take
KEY = "sk-operator-test-key"


class Gateway:
    """A served GatewayApp: URL, app, processes and an httpx client."""

    def __init__(
        self, url: str, app: GatewayApp, processes: dict[str, FakeProcess], http: httpx.AsyncClient
    ) -> None:
        self.url = url
        self.app = app
        self.processes = processes
        self.http = http


@contextlib.asynccontextmanager
async def gateway(
    live: LiveUpstreams,
    config: GatewayConfig | None = None,
    *,
    upstream: Any = None,
    **options: Any,
) -> AsyncIterator[Gateway]:
    """chat_config's models (real/nick, plain, hidden) as FakeProcesses, served by uvicorn."""
    url = await live.asgi(upstream or FakeModel(model_name="up", tokens=3))
    config = config or chat_config({m: url for m in ("real", "plain", "hidden")})
    processes = {m: FakeProcess(m, start_delay=0.01) for m in config.models}
    router = build_router(config, processes=processes)
    app = GatewayApp(router, config=config, **options)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="on",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,  # a failed test may leave a request open
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.ensure_future(server.serve())
    await eventually(lambda: server.started or task.done(), "uvicorn to start", BOUND)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=BOUND) as http:
            yield Gateway(base, app, processes, http)
    finally:
        app.close_streams()
        server.should_exit = True
        await asyncio.wait_for(task, BOUND)


class Events:
    """Reads /api/events: each message's ``(type, document)`` in arrival order."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()
        self.seen: list[tuple[str, Any]] = []

    async def next(self) -> tuple[str, Any]:
        while True:
            line = await asyncio.wait_for(self.lines.__anext__(), BOUND)
            if line.startswith("data: "):
                envelope = json.loads(line[len("data: ") :])
                item = (envelope["type"], json.loads(envelope["data"]))
                self.seen.append(item)
                return item

    async def until(self, kind: str, **match: Any) -> Any:
        """The next message of ``kind`` whose document has the ``match`` fields."""
        for _ in range(1000):
            got, data = await self.next()
            if got == kind and all(data.get(k) == v for k, v in match.items()):
                return data
        raise AssertionError(f"no {kind} {match} in {self.seen}")


@contextlib.asynccontextmanager
async def stream(http: httpx.AsyncClient, path: str, **kwargs: Any) -> AsyncIterator[Any]:
    async with http.stream("GET", path, **kwargs) as response:
        yield response


async def read_until(lines: AsyncIterator[str], text: str) -> list[str]:
    got: list[str] = []
    for _ in range(10000):
        line = await asyncio.wait_for(lines.__anext__(), BOUND)
        got.append(line)
        if text in line:
            return got
    raise AssertionError(f"{text!r} never came: {got[-20:]}")


async def test_events_snapshot_then_a_swap_in_order(live: LiveUpstreams) -> None:
    async with gateway(live) as gw, stream(gw.http, "/api/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        events = Events(response)
        kind, status = await events.next()
        assert kind == "modelStatus"
        assert [m["id"] for m in status] == ["real", "plain", "hidden"]
        assert status[0] == {
            "id": "real",
            "name": "Real",
            "description": "The real one",
            "state": "stopped",
            "unlisted": False,
            "peerID": "",
            "aliases": ["nick"],
        }
        kind, snapshot = await events.next()
        assert kind == "snapshot"
        assert snapshot["queue"] == []
        assert snapshot["models"]["real"] == {
            "state": "stopped",
            "queued": 0,
            "waiting": 0,
            "in_flight": 0,
            "swapping": False,
        }

        reply = await gw.http.post("/v1/chat/completions", json={"model": "nick", **CHAT})
        assert reply.status_code == 200
        started = await events.until("swapStarted", model="real")
        assert started["evict"] == [] and started["wake"] is False
        finished = await events.until("swapFinished", model="real")
        assert finished["error"] is None and finished["duration"] >= 0
        granted = await events.until("request", event="granted", model="real")
        released = await events.until("request", event="released", model="real")
        assert released["request_id"] == granted["request_id"]

        # plain is in the same (default, exclusive) group: its swap evicts real.
        reply = await gw.http.post("/v1/chat/completions", json={"model": "plain", **CHAT})
        assert reply.status_code == 200
        started = await events.until("swapStarted", model="plain")
        assert started["evict"] == ["real"]
        assert isinstance(started["reason"], str)
        await events.until("swapFinished", model="plain", evict=["real"], error=None)
        for _ in range(100):
            kind, data = await events.next()
            if kind == "modelStatus" and {m["id"]: m["state"] for m in data}["plain"] == "ready":
                assert {m["id"]: m["state"] for m in data}["real"] == "stopped"
                break
        else:
            raise AssertionError(f"no modelStatus with plain ready: {events.seen}")

        kinds = [k for k, _ in events.seen]
        order = [
            (k, d.get("model"), d.get("event"))
            for k, d in events.seen
            if k in ("swapStarted", "swapFinished", "request")
        ]
        assert order.index(("swapStarted", "real", None)) < order.index(
            ("swapFinished", "real", None)
        )
        assert order.index(("swapFinished", "real", None)) < order.index(
            ("request", "real", "granted")
        )
        assert order.index(("request", "real", "released")) < order.index(
            ("swapStarted", "plain", None)
        )
        assert "queue" in kinds


async def test_events_report_queue_depth_while_a_model_loads(live: LiveUpstreams) -> None:
    async with gateway(live) as gw:
        gw.processes["real"].auto_ready = False
        async with stream(gw.http, "/api/events") as response:
            events = Events(response)
            await events.until("snapshot")
            request = asyncio.ensure_future(
                gw.http.post("/v1/chat/completions", json={"model": "real", **CHAT})
            )
            try:
                waiting = await events.until("queue", depth=1)
            finally:
                await eventually(lambda: gw.processes["real"].state.value == "starting", "start")
                gw.processes["real"].mark_ready()
            assert waiting["models"]["real"]["waiting"] == 1
            statuses = [data for kind, data in events.seen if kind == "modelStatus"]
            states = [{m["id"]: m["state"] for m in status} for status in statuses]
            assert states[0]["real"] == "stopped" and states[-1]["real"] == "starting"
            assert (await asyncio.wait_for(request, BOUND)).status_code == 200
            done = await events.until("queue", depth=0)
            assert done["models"]["real"]["waiting"] == 0


async def test_log_streams_deliver_new_lines(live: LiveUpstreams) -> None:
    log = logging.getLogger("swapcore.test_ops")
    async with gateway(live) as gw:
        log.warning("before-any-client")
        history = await gw.http.get("/logs")
        assert history.status_code == 200
        assert history.headers["content-type"].startswith("text/plain")
        assert "WARNING swapcore.test_ops: before-any-client" in history.text
        browser = await gw.http.get("/logs", headers={"accept": "text/html,*/*"})
        assert (browser.status_code, browser.headers["location"]) == (302, "/ui")

        # The proxy stream: history first, then new records.
        async with stream(gw.http, "/logs/stream/proxy") as proxy:
            assert proxy.headers["x-content-type-options"] == "nosniff"
            lines = proxy.aiter_lines()
            await read_until(lines, "before-any-client")
            log.warning("live-record")
            await read_until(lines, "live-record")

        # A model's own output, by an alias; upstream and the default stream tag it.
        output = OutputLog(10, name="real", logger=log, model="real")
        async with (
            stream(gw.http, "/logs/stream/nick", params={"no-history": ""}) as model,
            stream(gw.http, "/logs/stream/upstream", params={"no-history": ""}) as upstream,
            stream(gw.http, "/logs/stream", params={"no-history": ""}) as both,
        ):
            await eventually(
                lambda: len(gw.app._ops.logs.ring("real").fanout) == 1, "the model subscriber"
            )
            await eventually(
                lambda: len(gw.app._ops.logs.ring("").fanout) == 1, "the combined subscriber"
            )
            output.feed(b"server says hello\nand more")
            output.close()
            got = await read_until(model.aiter_lines(), "and more")
            assert got == ["server says hello", "and more"]
            got = await read_until(upstream.aiter_lines(), "and more")
            assert got == ["[real] server says hello", "[real] and more"]
            got = await read_until(both.aiter_lines(), "[real] and more")
            assert "[real] server says hello" in got
            assert "before-any-client" not in "".join(got)  # no-history

        unknown = await gw.http.get("/logs/stream/nope")
        assert unknown.status_code == 400
        assert unknown.json()["error"]["code"] == "unknown_log"


async def test_log_lines_are_redacted(live: LiveUpstreams) -> None:
    config = chat_config(apiKeys=[KEY])
    async with gateway(live, config) as gw:
        logging.getLogger("swapcore.test_ops").warning("the key is %s", KEY)
        OutputLog(10, name="real", logger=logging.getLogger("x"), model="real").feed(
            f"argv --api-key {KEY}\n".encode()
        )
        text = (await gw.http.get("/logs", headers={"authorization": f"Bearer {KEY}"})).text
        assert "the key is" in text and "argv --api-key" in text
        assert KEY not in text


async def test_a_slow_subscriber_is_dropped_without_blocking(live: LiveUpstreams) -> None:
    async with gateway(live, stream_backlog=64 * 1024) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(slow, (host, int(port)))
        await loop.sock_sendall(
            slow, b"GET /logs/stream/real?no-history HTTP/1.1\r\nHost: gw\r\n\r\n"
        )
        ring = gw.app._ops.logs.ring("real")
        await eventually(lambda: len(ring.fanout) == 1, "the slow subscriber")
        async with stream(gw.http, "/logs/stream/real", params={"no-history": ""}) as fast:
            await eventually(lambda: len(ring.fanout) == 2, "the fast subscriber")
            fast_lines = fast.aiter_lines()
            output = OutputLog(10, name="real", logger=logging.getLogger("x"), model="real")
            line = b"y" * 4000 + b"\n"
            for _ in range(5000):  # at most 20 MB, far beyond any socket buffer
                output.feed(line)
                # The fast client reads each line as it comes; the slow one never reads.
                assert await asyncio.wait_for(fast_lines.__anext__(), BOUND) == line[:-1].decode()
                if gw.app.dropped_streams:
                    break
            assert gw.app.dropped_streams == 1
            # The gateway still serves, and the fast client still gets new lines.
            assert (await gw.http.get("/health")).status_code == 200
            output.feed(b"after the drop\n")
            await read_until(fast_lines, "after the drop")
        # The slow client's connection was closed: it reads to the end of what was sent.
        received = 0
        while received < 100 * 1024 * 1024:
            data = await asyncio.wait_for(loop.sock_recv(slow, 1 << 20), BOUND)
            if not data:
                break
            received += len(data)
        else:
            raise AssertionError("the slow client's connection stayed open")
        slow.close()


async def test_shutdown_ends_open_streams(live: LiveUpstreams) -> None:
    async with (
        gateway(live) as gw,
        stream(gw.http, "/logs/stream/proxy", params={"no-history": ""}) as logs,
        stream(gw.http, "/api/events") as events,
    ):
        reader = Events(events)
        await reader.until("snapshot")
        await eventually(lambda: gw.app.open_requests == 2, "both streams open")
        await gw.app.shutdown()
        rest = [line async for line in reader.lines]
        assert any('"shutting_down"' in line for line in rest)
        assert [line async for line in logs.aiter_lines()] == []  # ended, not cut


async def test_unload_endpoints(live: LiveUpstreams) -> None:
    async with gateway(live) as gw:
        for model in ("real", "plain"):
            reply = await gw.http.post("/v1/chat/completions", json={"model": model, **CHAT})
            assert reply.status_code == 200
        one = await gw.http.post("/api/models/unload/nick")  # an alias
        assert one.status_code == 200
        assert one.json() == {"msg": "ok", "unloaded": ["real"]}
        missing = await gw.http.post("/api/models/unload/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"
        assert (await gw.http.get("/api/models/unload")).status_code == 405
        await gw.http.post("/v1/chat/completions", json={"model": "hidden", **CHAT})
        every = await gw.http.post("/api/models/unload")
        assert every.status_code == 200
        assert every.json()["msg"] == "ok"
        assert gw.app.router.running_models() == {}


async def test_props_and_voices_are_proxied_by_query_model(live: LiveUpstreams) -> None:
    echo = Echo()
    async with gateway(live, upstream=echo) as gw:
        props = await gw.http.get("/props", params={"model": "nick"})
        assert props.status_code == 200
        seen = props.json()
        assert seen["method"] == "GET" and seen["path"] == "/props"
        assert seen["query"] == "model=upstream-name"  # the config's useModelName
        assert gw.app.router.model_state("real").value == "ready"  # started for it
        voices = await gw.http.get("/v1/audio/voices", params={"model": "plain"})
        assert voices.status_code == 200
        assert voices.json()["path"] == "/v1/audio/voices"
        assert voices.json()["query"] == "model=plain"
        missing = await gw.http.get("/props")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"
        unknown = await gw.http.get("/props", params={"model": "nope"})
        assert unknown.status_code == 404
        assert len(echo.seen) == 2


async def test_cors_preflight_and_model_listing_origin(live: LiveUpstreams) -> None:
    async with gateway(live, chat_config(apiKeys=[KEY])) as gw:
        asked = await gw.http.options(
            "/v1/chat/completions",
            headers={
                "origin": "http://ui.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type, authorization, bad header",
            },
        )
        assert asked.status_code == 204  # no key needed
        assert asked.headers["access-control-allow-origin"] == "*"
        assert asked.headers["access-control-allow-methods"] == (
            "GET, POST, PUT, PATCH, DELETE, OPTIONS"
        )
        assert asked.headers["access-control-allow-headers"] == "content-type, authorization"
        assert asked.headers["access-control-max-age"] == "86400"
        plain = await gw.http.options("/api/events")
        assert plain.status_code == 204
        assert plain.headers["access-control-allow-headers"] == (
            "Content-Type, Authorization, Accept, X-Requested-With"
        )

        auth = {"authorization": f"Bearer {KEY}", "origin": "http://ui.example"}
        for path in ("/v1/models", "/models"):
            listing = await gw.http.get(path, headers=auth)
            assert listing.status_code == 200
            assert listing.headers["access-control-allow-origin"] == "http://ui.example"
            assert [m["id"] for m in listing.json()["data"]] == ["plain", "real"]
        running = await gw.http.get("/running", headers=auth)
        assert "access-control-allow-origin" not in running.headers


async def test_operator_endpoints_need_the_api_key(live: LiveUpstreams) -> None:
    async with gateway(live, chat_config(apiKeys=[KEY])) as gw:
        requests = [
            ("GET", "/logs"),
            ("GET", "/logs/stream"),
            ("GET", "/logs/stream/proxy"),
            ("GET", "/api/events"),
            ("POST", "/api/models/unload"),
            ("POST", "/api/models/unload/real"),
            ("GET", "/models"),
            ("GET", "/props?model=real"),
            ("GET", "/running"),
        ]
        for method, path in requests:
            denied = await gw.http.request(method, path)
            assert denied.status_code == 401, path
            assert denied.json()["error"]["code"] == "invalid_api_key"
        assert gw.app.router.running_models() == {}  # /props did not start real
        key = {"x-api-key": KEY}
        assert (await gw.http.get("/logs", headers=key)).status_code == 200
        assert (await gw.http.post("/api/models/unload", headers=key)).status_code == 200
        async with stream(gw.http, "/api/events", headers=key) as events:
            assert events.status_code == 200
            assert (await Events(events).next())[0] == "modelStatus"


async def test_events_keep_alive(live: LiveUpstreams) -> None:
    async with gateway(live, keepalive=0.05) as gw, stream(gw.http, "/api/events") as events:
        lines = events.aiter_lines()
        await read_until(lines, ": keep-alive")


async def test_close_streams_ends_them_for_a_graceful_shutdown(live: LiveUpstreams) -> None:
    async with gateway(live) as gw:
        async with (
            stream(gw.http, "/logs/stream", params={"no-history": ""}) as logs,
            stream(gw.http, "/api/events") as events,
        ):
            reader = Events(events)
            await reader.until("snapshot")
            await eventually(lambda: gw.app.open_requests == 2, "both streams open")
            gw.app.close_streams()
            assert [line async for line in logs.aiter_lines()] == []
            assert [line async for line in reader.lines if line.startswith("data:")] == []
        refused = await gw.http.get("/api/events")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "shutting_down"
        assert (await gw.http.get("/health")).status_code == 200
