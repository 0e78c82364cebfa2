"""Filters through the real gateway: uvicorn on 127.0.0.1 in front of a recording upstream.

The gateway and the upstream are real HTTP servers on 127.0.0.1 (the models'
processes are fakes: what is tested is the body the upstream receives). The
configuration is llama-swap's documented example of ``filters`` on a model
and on a peer; requests go plain and streamed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

import httpx
from upstream_servers import BOUND, LiveUpstreams, read_request_body

from swapcore.adapters._requests import PARSE_LIMIT
from swapcore.adapters.asgi import GatewayApp
from swapcore.config import GatewayConfig, build_router, parse_config
from swapcore.testing.fakes import FakeProcess


class Recorder:
    """An upstream that keeps every body it receives; streams SSE when asked to."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_request_body(receive)
        self.bodies.append(body)
        try:
            stream = json.loads(body).get("stream") is True
        except ValueError:
            stream = False
        kind = b"text/event-stream" if stream else b"application/json"
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind)]}
        )
        if stream:
            for text in ("a", "b"):
                event = {"choices": [{"index": 0, "delta": {"content": text}}]}
                data = b"data: " + json.dumps(event).encode() + b"\n\n"
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        else:
            await send({"type": "http.response.body", "body": b'{"ok": true}'})

    def last(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.bodies[-1])
        return parsed


def config(model_url: str, peer_url: str) -> GatewayConfig:
    """llama-swap's documented filters on a model and on a peer (config.example.yaml)."""
    return parse_config(
        {
            "models": {
                "gpt-oss": {
                    "cmd": "unused",
                    "proxy": model_url,
                    "aliases": ["gpt-4o-mini"],
                    "filters": {
                        "stripParams": "temperature, top_p, top_k",
                        "setParams": {"temperature": 0.7, "top_p": 0.9},
                        "setParamsByID": {
                            "${MODEL_ID}": {"chat_template_kwargs": {"reasoning_effort": "medium"}},
                            "${MODEL_ID}:high": {
                                "chat_template_kwargs": {"reasoning_effort": "high"}
                            },
                        },
                    },
                },
                "renamed": {
                    "cmd": "unused",
                    "proxy": model_url,
                    "useModelName": "openai/gpt-oss-120B",
                    "filters": {"setParamsByID": {"renamed": {"seed": 7}}},
                },
                "plain": {"cmd": "unused", "proxy": model_url},
            },
            "peers": {
                "openrouter": {
                    "proxy": peer_url,
                    "models": ["meta-llama/llama-3.1-8b-instruct"],
                    "filters": {
                        "stripParams": "temperature, top_p",
                        "setParams": {"provider": {"data_collection": "deny", "zdr": True}},
                    },
                }
            },
        },
        env={},
    )


class Served:
    def __init__(self, http: httpx.AsyncClient, model: Recorder, peer: Recorder) -> None:
        self.http = http
        self.model = model
        self.peer = peer

    async def chat(self, body: dict[str, Any]) -> httpx.Response:
        reply = await self.http.post("/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
        return reply


@pytest.fixture
async def served(live: LiveUpstreams) -> AsyncIterator[Served]:
    model, peer = Recorder(), Recorder()
    cfg = config(await live.asgi(model), await live.asgi(peer))
    processes = {m: FakeProcess(m) for m in cfg.models}
    app = GatewayApp.from_config(cfg, build_router(cfg, processes=processes))
    url = await live.asgi(app)  # the gateway on uvicorn too
    await app.startup()
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=BOUND) as http:
        yield Served(http, model, peer)
    await app.shutdown()


CHAT = [{"role": "user", "content": "hi"}]


async def test_model_filters_reach_the_upstream(served: Served) -> None:
    await served.chat({"model": "gpt-oss", "messages": CHAT, "temperature": 0.1, "top_k": 9})
    assert served.model.last() == {
        "model": "gpt-oss",
        "messages": CHAT,
        "temperature": 0.7,
        "top_p": 0.9,
        "chat_template_kwargs": {"reasoning_effort": "medium"},
    }
    # The alias listed under setParamsByID: its own parameters, after setParams.
    await served.chat({"model": "gpt-oss:high", "messages": CHAT, "top_p": 0.1})
    assert served.model.last()["chat_template_kwargs"] == {"reasoning_effort": "high"}
    assert served.model.last()["top_p"] == 0.9
    assert served.model.last()["model"] == "gpt-oss:high"  # forwarded as requested
    # Another alias: setParams only.
    await served.chat({"model": "gpt-4o-mini", "messages": CHAT})
    assert served.model.last() == {
        "model": "gpt-4o-mini",
        "messages": CHAT,
        "temperature": 0.7,
        "top_p": 0.9,
    }


async def test_streaming_requests_are_filtered(served: Served) -> None:
    body = {"model": "gpt-oss:high", "messages": CHAT, "stream": True, "top_k": 1}
    async with served.http.stream("POST", "/v1/chat/completions", json=body) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        text = "".join([chunk async for chunk in reply.aiter_text()])
    assert text.endswith("data: [DONE]\n\n")
    seen = served.model.last()
    assert seen["stream"] is True and "top_k" not in seen
    assert seen["chat_template_kwargs"] == {"reasoning_effort": "high"}


async def test_use_model_name_then_set_params_by_id_on_the_requested_name(served: Served) -> None:
    await served.chat({"model": "renamed", "messages": CHAT})
    assert served.model.last() == {"model": "openai/gpt-oss-120B", "messages": CHAT, "seed": 7}


async def test_a_model_without_filters_gets_the_clients_bytes(served: Served) -> None:
    raw = b'{"model":"plain",  "temperature": 0.1 , "keep":"spacing"}'
    reply = await served.http.post("/v1/chat/completions", content=raw)
    assert reply.status_code == 200
    assert served.model.bodies[-1] == raw


async def test_a_large_body_is_filtered(served: Served) -> None:
    pad = "x" * (PARSE_LIMIT + 10)
    await served.chat({"model": "gpt-oss", "messages": CHAT, "top_k": 3, "pad": pad})
    seen = served.model.last()
    assert "top_k" not in seen and seen["pad"] == pad and seen["temperature"] == 0.7


async def test_multipart_bodies_are_not_filtered(served: Served) -> None:
    files = {"file": ("a.wav", b"RIFF....", "audio/wav")}
    data = {"model": "gpt-oss", "temperature": "0.1"}
    reply = await served.http.post("/v1/audio/transcriptions", data=data, files=files)
    assert reply.status_code == 200
    sent = served.model.bodies[-1]
    assert b'name="temperature"\r\n\r\n0.1' in sent  # as in llama-swap: JSON bodies only


async def test_peer_filters_reach_the_peer(served: Served) -> None:
    name = "openrouter/meta-llama/llama-3.1-8b-instruct"
    await served.chat({"model": name, "messages": CHAT, "temperature": 1.5, "top_p": 0.5})
    assert served.peer.last() == {
        "model": "meta-llama/llama-3.1-8b-instruct",
        "messages": CHAT,
        "provider": {"data_collection": "deny", "zdr": True},
    }
    body = {"model": "meta-llama/llama-3.1-8b-instruct", "messages": CHAT, "stream": True}
    body["provider"] = {"data_collection": "allow"}  # a client cannot loosen the policy
    async with served.http.stream("POST", "/v1/chat/completions", json=body) as reply:
        assert reply.status_code == 200
        text = "".join([chunk async for chunk in reply.aiter_text()])
    assert text.endswith("data: [DONE]\n\n")
    assert served.peer.last()["provider"] == {"data_collection": "deny", "zdr": True}
    assert served.peer.last()["stream"] is True
    assert served.model.bodies == []  # nothing went to the local upstream
