"""No client input makes the gateway answer 500: bodies, forms, types and encodings fuzzed.

Hypothesis builds requests (JSON objects with odd ``model`` values, JSON
that is not an object or not JSON at all, nested and duplicated keys,
multipart forms with good and broken boundaries, random bytes, content
types and encodings) and sends them to one GatewayApp over FakeProcess
models with a real FakeModel upstream on 127.0.0.1. Every answer must be a
success or a 4xx with an OpenAI-shaped JSON error; never a 5xx and never an
exception out of the app.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("aiohttp")
pytest.importorskip("uvicorn")

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from upstream_servers import LiveUpstreams

from swapcore import BaseRouter, Group, GroupPlanner
from swapcore.adapters.asgi import GatewayApp
from swapcore.fakemodel import FakeModel
from swapcore.testing.fakes import FakeProcess

MODELS = ("a", "b")

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
model_values = st.one_of(st.sampled_from(MODELS), st.text(max_size=30), json_values)


@st.composite
def json_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    payload: dict[str, Any] = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4))
    if draw(st.booleans()):
        payload["model"] = draw(model_values)
    if draw(st.booleans()):
        payload["stream"] = draw(st.one_of(st.booleans(), json_scalars))
    payload.setdefault("messages", [{"role": "user", "content": "hi"}])
    text = json.dumps(payload, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):  # a second top-level model key, spliced in by hand
        text = text[:-1] + (', "model": "b"}' if len(text) > 2 else '"model": "b"}')
    depth = draw(st.integers(0, 3)) * 100
    if depth:
        text = text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    content_type = draw(
        st.sampled_from(
            ["application/json", "application/json; charset=utf-8", "text/plain", "", "x/y;;="]
        )
    )
    return content_type, text.encode()


@st.composite
def form_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    boundary = draw(
        st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=70)
    )
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["model", "file", "language", ""]))
        disposition = f'form-data; name="{name}"'
        if draw(st.booleans()):
            disposition += '; filename="a.wav"'
        value = draw(st.one_of(st.sampled_from(MODELS).map(str.encode), st.binary(max_size=40)))
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value)
    body = b"\r\n".join(parts) + (
        f"\r\n--{boundary}--\r\n".encode() if draw(st.booleans()) else b""
    )
    if draw(st.booleans()):
        body = draw(st.binary(max_size=60)) + body
    quoted = draw(st.booleans())
    header = (
        f'multipart/form-data; boundary="{boundary}"'
        if quoted
        else f"multipart/form-data; boundary={boundary}"
    )
    if draw(st.booleans()):
        header = draw(
            st.sampled_from(
                ["multipart/form-data", "multipart/form-data; boundary=", header + ";x"]
            )
        )
    return header, body


@st.composite
def raw_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    content_type = draw(st.text(max_size=40).filter(lambda t: "\n" not in t and "\r" not in t))
    return content_type, draw(st.binary(max_size=200))


requests = st.tuples(
    st.one_of(json_bodies(), form_bodies(), raw_bodies()),
    st.sampled_from(["/v1/chat/completions", "/v1/embeddings", "/completion", "/upstream/a/x"]),
    st.sampled_from([None, None, "identity", "gzip", "br", "x" * 60]),
)


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[asyncio.AbstractEventLoop, httpx.AsyncClient, GatewayApp]]:
    loop = asyncio.new_event_loop()
    live = LiveUpstreams()

    async def start() -> tuple[httpx.AsyncClient, GatewayApp]:
        url = await live.asgi(FakeModel(tokens=2))
        processes = {m: FakeProcess(m) for m in MODELS}
        router = BaseRouter(processes, GroupPlanner({"all": Group(list(MODELS), swap=False)}))
        app = GatewayApp(router, upstreams={m: url for m in MODELS}, max_body_size=4096)
        await app.startup()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        return client, app

    client, app = loop.run_until_complete(start())
    yield loop, client, app

    async def stop() -> None:
        await client.aclose()
        await app.shutdown()
        await live.close()

    loop.run_until_complete(stop())
    loop.close()


@settings(max_examples=300)
@given(requests)
def test_no_input_gets_a_5xx(
    gateway: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient, GatewayApp],
    drawn: tuple[tuple[str, bytes], str, str | None],
) -> None:
    loop, client, app = gateway
    (content_type, body), path, encoding = drawn
    headers = {"content-type": content_type.encode("utf-8")}  # any bytes a client may send
    if encoding is not None:
        headers["content-encoding"] = encoding.encode()
    response = loop.run_until_complete(
        asyncio.wait_for(client.post(path, content=body, headers=headers), 10)
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400 and path != "/upstream/a/x":
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"]
    assert app.buffered_bytes == 0
