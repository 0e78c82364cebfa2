"""The gateway for real: uvicorn on 127.0.0.1, fake-model subprocesses, httpx and openai.

Each test loads a YAML configuration whose models run ``python -m
swapcore.fakemodel`` on free ports, serves ``GatewayApp.from_config`` with
uvicorn (lifespan on), and checks after shutdown that no fake model it
started is still running. Waits are bounded; no test asserts a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("yaml")

import httpx
import uvicorn

from swapcore import ProcessState
from swapcore.adapters.asgi import GatewayApp
from swapcore.adapters.subprocess import SubprocessProcess
from swapcore.config import build_processes, build_router, load_config
from swapcore.router import BaseRouter
from system_helpers import free_port

BOUND = 60.0  # seconds any one wait may take on a busy shared machine
CHAT = [{"role": "user", "content": "hello there"}]


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def model(name: str, *args: str, **keys: Any) -> str:
    """One ``models:`` entry running the fake model on a free port, as YAML."""
    port = free_port()
    fake = [sys.executable, "-m", "swapcore.fakemodel", "--port", str(port)]
    cmd = shlex.join([*fake, "--model-name", name, *args])
    lines = [f"  {name}:", f"    cmd: {json.dumps(cmd)}", f'    proxy: "http://127.0.0.1:{port}"']
    lines += [f"    {key}: {json.dumps(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def fake_model_pids(ports: set[int]) -> set[int]:
    """Live (non-zombie) ``swapcore.fakemodel`` processes listening on one of ``ports``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"swapcore.fakemodel" not in argv or state in ("Z", "X"):
            continue
        if b"--port" in argv:
            index = argv.index(b"--port")
            if index + 1 < len(argv) and int(argv[index + 1] or 0) in ports:
                found.add(int(entry))
    return found


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """``app`` under uvicorn on a free port (lifespan on) until the block ends."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    await eventually(lambda: server.started or task.done(), "uvicorn to start")
    if task.done():
        task.result()
        raise AssertionError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, BOUND)


class Live:
    """A served gateway: its URL, app, router, processes and an httpx client."""

    def __init__(
        self,
        url: str,
        app: GatewayApp,
        processes: dict[str, SubprocessProcess],
        http: httpx.AsyncClient,
    ) -> None:
        self.url = url
        self.app = app
        self.router: BaseRouter = app.router
        self.processes = processes
        self.http = http

    def openai(self, api_key: str = "unused") -> Any:
        openai = pytest.importorskip("openai")
        return openai.AsyncOpenAI(
            base_url=self.url + "/v1",
            api_key=api_key,
            http_client=self.http,
            max_retries=0,
            timeout=BOUND,
        )

    async def running(self) -> dict[str, str]:
        reply = await self.http.get("/running")
        assert reply.status_code == 200, reply.text
        return {entry["model"]: entry["state"] for entry in reply.json()["running"]}

    async def chat(self, model: str, **body: Any) -> httpx.Response:
        return await self.http.post(
            "/v1/chat/completions", json={"model": model, "messages": CHAT, **body}
        )


@contextlib.asynccontextmanager
async def gateway(
    text: str,
    *,
    router_options: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    **options: Any,
) -> AsyncIterator[Live]:
    """Serve the gateway for ``text`` (YAML); afterwards, no fake model may be left."""
    config = load_config(text)
    processes = build_processes(config, health_interval=0.05)
    router = build_router(config, processes=processes, **(router_options or {}))
    app = GatewayApp.from_config(config, router, **options)
    ports = {int(m.proxy.rsplit(":", 1)[1]) for m in config.models.values()}
    try:
        async with (
            served(app) as url,
            httpx.AsyncClient(
                base_url=url, trust_env=False, timeout=BOUND, headers=headers
            ) as http,
        ):
            yield Live(url, app, processes, http)
    finally:
        await asyncio.wait_for(app.shutdown(), BOUND)  # done by the lifespan; idempotent
        for process in processes.values():
            assert process.state in (ProcessState.STOPPED, ProcessState.SHUTDOWN)
        await eventually(lambda: not fake_model_pids(ports), "every fake model to exit", 20)


def sse(text: str) -> list[Any]:
    return [
        line[6:] if line[6:] == "[DONE]" else json.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ")
    ]


# ------------------------------------------------------------------ streaming


async def test_streaming_chat_with_openai_and_httpx() -> None:
    text = "healthCheckTimeout: 60\nmodels:\n" + model("a", "--tokens", "8", "--load", "0.2")
    async with gateway(text) as live:
        client = live.openai()
        listing = await client.models.list()
        assert [m.id for m in listing.data] == ["a"]

        reply = await client.chat.completions.create(model="a", messages=CHAT)
        expected = "You said: hello there You said: hello there"
        assert reply.choices[0].message.content == expected
        pid = live.processes["a"].pid
        assert pid is not None

        stream = await client.chat.completions.create(model="a", messages=CHAT, stream=True)
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(pieces) == expected

        # httpx, reading raw chunks: each token arrives as it is produced.
        body = {"model": "a", "messages": CHAT, "stream": True, "max_tokens": 8}
        chunks = []
        async with live.http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
        events = sse(b"".join(chunks).decode())
        assert events[-1] == "[DONE]"
        assert live.processes["a"].pid == pid  # one start served everything
        assert live.router.snapshot().models["a"].in_flight == 0


async def test_tokens_are_forwarded_as_they_come() -> None:
    text = "models:\n" + model("a", "--tokens", "6", "--token-delay", "0.15")
    async with gateway(text) as live:
        body = {"model": "a", "messages": CHAT, "stream": True}
        chunks = 0
        async with live.http.stream("POST", "/v1/chat/completions", json=body) as response:
            async for chunk in response.aiter_raw():
                chunks += bool(chunk)
        # Unbuffered: the tokens, produced 0.15 s apart, arrive as separate chunks.
        assert chunks >= 4


# ---------------------------------------------------------------- swapping


async def test_swaps_by_group() -> None:
    text = (
        "models:\n"
        + model("a")
        + model("b")
        + model("e")
        + """
groups:
  chat:
    swap: true
    exclusive: false
    members: [a, b]
  embed:
    swap: false
    exclusive: false
    persistent: true
    members: [e]
"""
    )
    async with gateway(text) as live:
        assert (await live.chat("a")).status_code == 200
        assert await live.running() == {"a": "ready"}
        embedded = await live.http.post("/v1/embeddings", json={"model": "e", "input": "x"})
        assert embedded.status_code == 200
        assert await live.running() == {"a": "ready", "e": "ready"}
        assert (await live.chat("b")).status_code == 200  # a swaps out, e stays
        assert await live.running() == {"b": "ready", "e": "ready"}


async def test_swaps_by_matrix() -> None:
    text = (
        "models:\n"
        + model("a")
        + model("b")
        + model("c")
        + """
routing:
  router:
    use: matrix
    settings:
      matrix:
        sets:
          pair: "a & b"
          solo: "c"
"""
    )
    async with gateway(text) as live:
        openai = live.openai()
        for name, running in [
            ("a", {"a"}),
            ("b", {"a", "b"}),  # the pair fits together
            ("c", {"c"}),  # c runs alone
            ("a", {"a"}),
        ]:
            reply = await openai.chat.completions.create(model=name, messages=CHAT)
            assert reply.model == name
            assert set(await live.running()) == running


# ---------------------------------------------------- queueing and limits


async def test_queue_position_via_loading_state() -> None:
    text = (
        "sendLoadingState: true\nmodels:\n"
        + model("a", "--tokens", "400", "--token-delay", "0.02")
        + model("b", "--tokens", "4")
    )
    async with gateway(text, loading_tick=0.2) as live:
        body = {"model": "a", "messages": CHAT, "stream": True}
        async with live.http.stream("POST", "/v1/chat/completions", json=body) as busy:
            first = await busy.aiter_raw().__anext__()
            assert b"chat.completion.chunk" in first  # a is serving: its lease is held

            async def ask_b() -> tuple[str, str]:
                stream = await live.openai().chat.completions.create(
                    model="b", messages=CHAT, stream=True
                )
                thinking, said = "", ""
                async for chunk in stream:
                    delta = chunk.choices[0].delta
                    thinking += getattr(delta, "reasoning_content", None) or ""
                    said += delta.content or ""
                return thinking, said

            waiter = asyncio.ensure_future(ask_b())
            await eventually(lambda: live.router.snapshot().queue != (), "b queued behind a")
            # Leaving the block closes a's stream: its lease ends and b's swap can start.
        thinking, said = await asyncio.wait_for(waiter, BOUND)
    assert "swapcore: loading model b" in thinking
    assert "waiting in queue, position 1" in thinking
    assert said == "You said: hello there"


async def test_concurrency_limit_is_429() -> None:
    text = "models:\n" + model("a", "--tokens", "400", "--token-delay", "0.02", concurrencyLimit=1)
    async with gateway(text) as live:
        openai_module = pytest.importorskip("openai")
        body = {"model": "a", "messages": CHAT, "stream": True}
        async with live.http.stream("POST", "/v1/chat/completions", json=body) as busy:
            await busy.aiter_raw().__anext__()
            with pytest.raises(openai_module.RateLimitError) as info:
                await live.openai().chat.completions.create(model="a", messages=CHAT)
            assert info.value.status_code == 429
            assert info.value.code == "concurrency_limit_exceeded"
        await eventually(
            lambda: live.router.snapshot().models["a"].in_flight == 0, "the busy stream's release"
        )
        assert (await live.chat("a")).status_code == 200


async def test_unload_endpoints() -> None:
    text = "models:\n" + model("a") + model("b") + "groups:\n  all:\n    swap: false\n"
    text += "    members: [a, b]\n"
    async with gateway(text) as live:
        await live.chat("a")
        await live.chat("b")
        assert await live.running() == {"a": "ready", "b": "ready"}
        pid_a = live.processes["a"].pid
        reply = await live.http.post("/unload/a")
        assert reply.json() == {"unloaded": ["a"]}
        assert await live.running() == {"b": "ready"}
        port_a = int(live.processes["a"].url.rsplit(":", 1)[1])
        assert pid_a is not None and not fake_model_pids({port_a})
        reply = await live.http.post("/unload")
        assert reply.json() == {"unloaded": ["b"]}
        assert await live.running() == {}
        missing = await live.http.post("/unload/zz")
        assert missing.status_code == 404
        assert (await live.chat("a")).status_code == 200  # loads again on demand


# ----------------------------------------------------------- names, auth


async def test_aliases_and_use_model_name() -> None:
    text = (
        "models:\n"
        + model("real", aliases=["nick"], useModelName="served-as")
        + model("plain", aliases=["other"])
    )
    async with gateway(text) as live:
        reply = await live.chat("nick")
        assert reply.status_code == 200
        assert reply.json()["model"] == "served-as"  # the upstream saw the rewritten name
        assert await live.running() == {"real": "ready"}
        assert (await live.chat("other")).json()["model"] == "other"
        assert set(await live.running()) == {"plain"}


async def test_api_keys() -> None:
    text = 'apiKeys: ["sk-one", "sk-two"]\nmodels:\n' + model("a")
    async with gateway(text) as live:
        openai_module = pytest.importorskip("openai")
        assert (await live.http.get("/health")).text == "OK"
        refused = await live.chat("a")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
        assert live.processes["a"].pid is None  # nothing loaded for a refused request
        with pytest.raises(openai_module.AuthenticationError):
            await live.openai("sk-wrong").models.list()
        reply = await live.openai("sk-two").chat.completions.create(model="a", messages=CHAT)
        assert reply.model == "a"
        by_header = await live.http.get("/running", headers={"x-api-key": "sk-one"})
        assert by_header.status_code == 200


async def test_peers() -> None:
    peer_text = 'apiKeys: ["peer-key"]\nmodels:\n' + model("m", "--tokens", "4")
    async with gateway(peer_text) as peer:
        text = (
            'apiKeys: ["front-key"]\nmodels:\n'
            + model("local")
            + f"peers:\n  far:\n    proxy: {peer.url}\n    apiKey: peer-key\n    models: [m]\n"
        )
        async with gateway(text, headers={"authorization": "Bearer front-key"}) as front:
            listing = await front.http.get("/v1/models")
            assert [m["id"] for m in listing.json()["data"]] == ["far/m", "local"]
            openai = front.openai("front-key")
            reply = await openai.chat.completions.create(model="far/m", messages=CHAT)
            assert reply.model == "m"  # the peer prefix is stripped
            assert reply.choices[0].message.content == "You said: hello there"
            stream = await openai.chat.completions.create(model="m", messages=CHAT, stream=True)
            assert "".join([c.choices[0].delta.content or "" async for c in stream]) == (
                "You said: hello there"
            )
            assert await front.running() == {}  # nothing swapped locally
        running = await peer.http.get("/running", headers={"x-api-key": "peer-key"})
        assert [entry["model"] for entry in running.json()["running"]] == ["m"]


# ---------------------------------------------------------------- failures


async def test_client_disconnect_mid_stream_releases_the_lease() -> None:
    text = "models:\n" + model("a", "--tokens", "2000", "--token-delay", "0.01")
    async with gateway(text) as live:
        body = {"model": "a", "messages": CHAT, "stream": True}
        async with live.http.stream("POST", "/v1/chat/completions", json=body) as response:
            iterator = response.aiter_raw()
            await iterator.__anext__()
            await iterator.__anext__()
            assert live.router.snapshot().models["a"].in_flight == 1
        # Closing the response mid-stream disconnects; the gateway drops the upstream.
        await eventually(
            lambda: live.router.snapshot().models["a"].in_flight == 0, "the lease's release"
        )
        assert live.processes["a"].state is ProcessState.READY
        assert (await live.chat("a", max_tokens=3)).status_code == 200


async def test_upstream_crash_mid_stream_then_restart() -> None:
    text = "models:\n" + model("a", "--tokens", "20", "--crash-after-tokens", "3")
    async with gateway(text) as live:
        openai_module = pytest.importorskip("openai")
        body = {"model": "a", "messages": CHAT, "stream": True}
        response = await live.http.post("/v1/chat/completions", json=body)
        assert response.status_code == 200
        events = sse(response.text)
        assert "[DONE]" not in events
        assert events[-1]["error"]["code"] == "upstream_failed"
        assert sum(1 for e in events[:-1] if e["choices"][0]["delta"].get("content")) == 3

        with pytest.raises(openai_module.APIError, match="failed mid-response"):
            stream = await live.openai().chat.completions.create(
                model="a", messages=CHAT, stream=True
            )
            async for _ in stream:
                pass

        # Crashed: the next request starts the model again (short enough not to crash).
        await eventually(lambda: live.processes["a"].state is not ProcessState.READY, "the crash")
        reply = await live.chat("a", max_tokens=2)
        assert reply.status_code == 200
        assert reply.json()["choices"][0]["message"]["content"] == "You said:"
        assert live.router.snapshot().models["a"].in_flight == 0


async def test_upstream_never_healthy_is_502() -> None:
    text = "models:\n" + model("a", "--load", "600")
    # The loader raises healthCheckTimeout below 15 s to 15 s; the router takes 1 s here.
    async with gateway(text, router_options={"swap_timeout": 1.0}) as live:
        reply = await live.chat("a")
        assert reply.status_code == 502
        error = reply.json()["error"]
        assert error["code"] == "swap_failed"
        assert "not healthy within" in error["message"]
        assert live.processes["a"].pid is None  # killed and reaped at the deadline


async def test_error_bodies() -> None:
    async with gateway("models:\n" + model("a")) as live:
        missing = await live.chat("nope")
        assert missing.status_code == 404
        assert missing.json() == {
            "error": {
                "message": "model 'nope' not found",
                "type": "invalid_request_error",
                "param": None,
                "code": "model_not_found",
            }
        }
        bad = await live.http.post("/v1/chat/completions", content=b"{oops")
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid_json"
        assert live.processes["a"].pid is None
