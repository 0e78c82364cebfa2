"""The fake OpenAI-compatible model: in-process over ASGI, and served by real uvicorn."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import signal
import socket
import struct
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("httpx")

import httpx

from swapcore import ConfigError
from swapcore.fakemodel import CRASH_EXIT_CODE, FakeModel, main
from system_helpers import free_port

BASE = "http://fake"


class Crashed(Exception):
    """Raised by the injected crash function instead of ending the test process."""


def crash() -> None:
    raise Crashed


def client_for(app: FakeModel) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


def sse_events(text: str) -> list[Any]:
    """The ``data:`` payloads of an SSE body, JSON-decoded; ``[DONE]`` stays a string."""
    events: list[Any] = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            payload = block.removeprefix("data: ")
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


async def call_asgi(
    app: FakeModel, method: str, path: str, body: bytes = b""
) -> tuple[list[dict[str, Any]], BaseException | None]:
    """Drive the app directly; returns what it sent and what it raised."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    inbox = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    try:
        await app(scope, receive, send)
    except Crashed as exc:
        return sent, exc
    return sent, None


CHAT = {
    "model": "my-model",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "what is up"},
    ],
}


# --------------------------------------------------------------- in-process


async def test_health_turns_ok_after_the_load_delay() -> None:
    now = [100.0]
    app = FakeModel(load=5, clock=lambda: now[0])
    async with client_for(app) as client:
        loading = await client.get("/health")
        assert loading.status_code == 503
        assert loading.json()["error"]["type"] == "unavailable_error"
        assert (await client.get("/v1/models")).status_code == 503
        now[0] += 4.9
        assert (await client.get("/health")).status_code == 503
        now[0] += 0.1
        ready = await client.get("/health")
        assert ready.status_code == 200 and ready.json() == {"status": "ok"}
        models = await client.get("/v1/models")
    assert models.status_code == 200
    assert [m["id"] for m in models.json()["data"]] == ["fake-model"]


async def test_chat_completion() -> None:
    app = FakeModel(tokens=12)
    async with client_for(app) as client:
        first = (await client.post("/v1/chat/completions", json=CHAT)).json()
        second = (await client.post("/v1/chat/completions", json=CHAT)).json()
    assert first["object"] == "chat.completion" and first["model"] == "my-model"
    choice = first["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert choice["message"]["content"].startswith("You said: what is up You said:")
    assert first["usage"]["completion_tokens"] == 12
    assert first["usage"]["total_tokens"] == first["usage"]["prompt_tokens"] + 12
    assert second["choices"] == first["choices"]  # deterministic
    assert second["id"] != first["id"]


async def test_chat_stream_carries_the_same_text() -> None:
    app = FakeModel(tokens=7)
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    async with client_for(app) as client:
        plain = (await client.post("/v1/chat/completions", json=CHAT)).json()
        response = await client.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"] == "text/event-stream"
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 7


async def test_max_tokens_caps_the_reply() -> None:
    app = FakeModel(tokens=10)
    async with client_for(app) as client:
        reply = (await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 3})).json()
    assert reply["choices"][0]["message"]["content"] == "You said: what"
    assert reply["choices"][0]["finish_reason"] == "length"


async def test_completions_plain_and_streamed() -> None:
    app = FakeModel(tokens=4, model_name="base")
    async with client_for(app) as client:
        plain = (await client.post("/v1/completions", json={"prompt": ["a b", "c"]})).json()
        streamed = await client.post("/v1/completions", json={"prompt": "a b", "stream": True})
    assert plain["object"] == "text_completion" and plain["model"] == "base"
    assert [c["text"] for c in plain["choices"]] == ["You said: a b", "You said: c You"]
    events = sse_events(streamed.text)
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["text"] for e in events[:-1])
    assert text == "You said: a b"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_embeddings_are_deterministic_unit_vectors() -> None:
    app = FakeModel(embedding_dim=6)
    async with client_for(app) as client:
        first = (await client.post("/v1/embeddings", json={"input": ["x", "y"]})).json()
        again = (await client.post("/v1/embeddings", json={"input": "x"})).json()
        encoded = await client.post(
            "/v1/embeddings", json={"input": "x", "encoding_format": "base64"}
        )
        sized = (await client.post("/v1/embeddings", json={"input": "x", "dimensions": 3})).json()
        tokens = await client.post("/v1/embeddings", json={"input": [[1, 2], [3]]})
    x, y = (item["embedding"] for item in first["data"])
    assert len(x) == 6 and x != y
    assert math.isclose(math.fsum(v * v for v in x), 1.0, rel_tol=1e-5)
    assert again["data"][0]["embedding"] == x
    packed = base64.b64decode(encoded.json()["data"][0]["embedding"])
    assert list(struct.unpack("<6f", packed)) == x
    assert len(sized["data"][0]["embedding"]) == 3
    assert [item["index"] for item in tokens.json()["data"]] == [0, 1]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "param"),
    [
        ("POST", "/v1/chat/completions", b"{not json", 400, None),
        ("POST", "/v1/chat/completions", b"[1, 2]", 400, None),
        ("POST", "/v1/chat/completions", b"{}", 400, "messages"),
        ("POST", "/v1/chat/completions", b'{"messages": ["hi"]}', 400, "messages"),
        ("POST", "/v1/chat/completions", b'{"messages": [{}], "max_tokens": 0}', 400, "max_tokens"),
        ("POST", "/v1/completions", b'{"prompt": 3}', 400, "prompt"),
        ("POST", "/v1/embeddings", b"{}", 400, "input"),
        ("POST", "/v1/embeddings", b'{"input": "x", "encoding_format": "hex"}', 400, None),
        ("GET", "/v1/chat/completions", b"", 405, None),
        ("GET", "/nowhere", b"", 404, None),
    ],
)
async def test_bad_requests_get_openai_style_errors(
    method: str, path: str, body: bytes, status: int, param: str | None
) -> None:
    async with client_for(FakeModel()) as client:
        response = await client.request(method, path, content=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["code"] == status
    if param is not None:
        assert error["param"] == param


async def test_fake_crash_endpoint() -> None:
    sent, raised = await call_asgi(FakeModel(crash=crash), "POST", "/fake/crash")
    assert isinstance(raised, Crashed) and sent == []


async def test_crash_after_tokens_mid_stream() -> None:
    app = FakeModel(tokens=10, crash_after_tokens=3, crash=crash)
    body = json.dumps({**CHAT, "stream": True}).encode()
    sent, raised = await call_asgi(app, "POST", "/v1/chat/completions", body)
    assert isinstance(raised, Crashed)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    chunks = [json.loads(m["body"].decode().removeprefix("data: ")) for m in sent[1:]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"content": "You"},
        {"content": " said:"},
        {"content": " what"},
    ]


async def test_crash_after_tokens_before_a_plain_reply() -> None:
    app = FakeModel(tokens=10, crash_after_tokens=3, crash=crash)
    sent, raised = await call_asgi(app, "POST", "/v1/completions", b'{"prompt": "x"}')
    assert isinstance(raised, Crashed) and sent == []
    short = FakeModel(tokens=10, crash_after_tokens=3, crash=crash)
    body = b'{"prompt": "x", "max_tokens": 3}'
    sent, raised = await call_asgi(short, "POST", "/v1/completions", body)
    assert raised is None and sent[0]["status"] == 200  # only 3 tokens: no crash


async def test_lifespan_is_acknowledged() -> None:
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await FakeModel()({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"model_name": ""}, "model_name"),
        ({"load": -1}, "load"),
        ({"load": float("inf")}, "load"),
        ({"tokens": 0}, "tokens"),
        ({"token_delay": -0.1}, "token_delay"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"crash_after_tokens": -1}, "crash_after_tokens"),
    ],
)
def test_invalid_options_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        FakeModel(**kwargs)


@pytest.mark.parametrize("argv", [[], ["--port", "x"], ["--port", "1", "--tokens", "0"]])
def test_main_rejects_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


# ------------------------------------------------------------- real server


async def start_fake(port: int, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swapcore.fakemodel",
        "--port",
        str(port),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


@contextlib.asynccontextmanager
async def served(*args: str) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """``python -m swapcore.fakemodel`` on a free port, healthy; stopped afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = await start_fake(port, *args)
    try:
        async with httpx.AsyncClient(trust_env=False) as client:

            async def healthy() -> None:
                while proc.returncode is None:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(url + "/health")).status_code == 200:
                            return
                    await asyncio.sleep(0.05)
                raise AssertionError(f"the fake model exited with {proc.returncode}")

            await asyncio.wait_for(healthy(), 30)
        yield url, proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


async def test_openai_client_against_real_uvicorn() -> None:
    openai = pytest.importorskip("openai")
    async with (
        served("--model-name", "served", "--tokens", "6", "--embedding-dim", "4") as (
            url,
            _,
        ),
        httpx.AsyncClient(trust_env=False) as http,
    ):
        client = openai.AsyncOpenAI(
            base_url=url + "/v1", api_key="unused", http_client=http, max_retries=0
        )
        models = await client.models.list()
        assert [m.id for m in models.data] == ["served"]

        messages = [{"role": "user", "content": "hello there"}]
        reply = await client.chat.completions.create(model="served", messages=messages)
        assert reply.model == "served"
        assert reply.choices[0].message.content == "You said: hello there You said:"

        stream = await client.chat.completions.create(
            model="served", messages=messages, stream=True
        )
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
        assert "".join(pieces) == reply.choices[0].message.content
        assert len([p for p in pieces if p]) == 6

        embeddings = await client.embeddings.create(model="served", input=["a", "b"])
        assert [len(item.embedding) for item in embeddings.data] == [4, 4]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_makes_a_clean_exit(sig: signal.Signals) -> None:
    async with served() as (_, proc):
        proc.send_signal(sig)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_crash_after_tokens_on_a_real_server() -> None:
    body = {**CHAT, "stream": True}
    async with served("--tokens", "50", "--crash-after-tokens", "5") as (url, proc):
        async with httpx.AsyncClient(trust_env=False) as client:
            received = ""
            with pytest.raises(httpx.HTTPError):
                async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
                    async for text in r.aiter_text():
                        received += text
        assert await asyncio.wait_for(proc.wait(), 20) == CRASH_EXIT_CODE
    assert "[DONE]" not in received


async def test_busy_port_is_a_failed_exit() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = await start_fake(busy.getsockname()[1])
        assert await asyncio.wait_for(proc.wait(), 30) not in (0, None)
