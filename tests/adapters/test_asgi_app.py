"""GatewayApp in-process: FakeProcess models, real upstreams on 127.0.0.1, an ASGI client.

The harness (Bench, Call, configs) is in gateway_harness.py; the fixtures
in conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("aiohttp")
pytest.importorskip("uvicorn")

import httpx
from gateway_harness import (
    BOUND,
    CHAT,
    Call,
    Make,
    Message,
    chat_config,
    content,
    eventually,
    fake_router,
    reasoning,
    sse_data,
    state_of,
)
from upstream_servers import Echo, LiveUpstreams, Streaming

from swapcore import BaseRouter, ConfigError, GroupPlanner, ProcessState
from swapcore.adapters.asgi import GatewayApp
from swapcore.config import PeerConfig, UpstreamTimeouts, parse_config
from swapcore.fakemodel import FakeModel
from swapcore.testing.fakes import FakeProcess
from system_helpers import free_port

# ---------------------------------------------------------------- endpoints


async def test_health_and_model_list(bench: Make) -> None:
    b = await bench()
    response = await b.client.get("/health")
    assert (response.status_code, response.text) == (200, "OK")
    response = await b.client.get("/v1/models")
    assert response.status_code == 200
    listing = response.json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["a", "b"]
    assert {m["object"] for m in listing["data"]} == {"model"}
    assert (await b.client.get("/v1/models/b")).json()["id"] == "b"
    missing = await b.client.get("/v1/models/zz")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


async def test_model_list_follows_the_config(bench: Make) -> None:
    config = chat_config(
        includeAliasesInList=True,
        peers={"remote": {"proxy": "http://peer", "models": ["m1", "m2"]}},
    )
    router, processes = fake_router(config)
    b = await bench(router=router, processes=processes, config=config)
    data = {m["id"]: m for m in (await b.client.get("/v1/models")).json()["data"]}
    # unlisted hidden; aliases listed on request; peers as peer/model; sorted.
    assert list(data) == ["nick", "plain", "plain-alias", "real", "remote/m1", "remote/m2"]
    assert data["real"]["name"] == "Real"
    assert data["real"]["description"] == "The real one"
    assert data["real"]["meta"] == {"llamaswap": {"size": 7}}
    assert data["remote/m1"]["meta"] == {"llamaswap": {"peerID": "remote"}}
    assert "name" not in data["plain"]


async def test_chat_completions_and_any_v1_post(bench: Make) -> None:
    b = await bench()
    reply = await b.client.post("/v1/chat/completions", json={"model": "a", **CHAT})
    assert reply.status_code == 200
    assert reply.json()["model"] == "a"
    assert reply.json()["choices"][0]["message"]["content"] == "You said: hello there"
    embedded = await b.client.post("/v1/embeddings", json={"model": "b", "input": ["x"]})
    assert embedded.status_code == 200
    assert len(embedded.json()["data"][0]["embedding"]) == 8
    text = await b.client.post("/v1/completions", json={"model": "a", "prompt": "hi"})
    assert text.json()["object"] == "text_completion"
    # The fake upstream's own 404 for a path it lacks comes back unchanged.
    unknown = await b.client.post("/v1/rerank", json={"model": "a"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "no route for /v1/rerank"
    await eventually(lambda: b.router.snapshot().models["a"].in_flight == 0, "the release")


async def test_streamed_chat_through_the_gateway(bench: Make) -> None:
    b = await bench()
    response = await b.client.post(
        "/v1/chat/completions", json={"model": "a", "stream": True, **CHAT}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["x-accel-buffering"] == "no"
    events = sse_data(response.text)
    assert events[-1] == "[DONE]"
    assert content(events) == "You said: hello there"
    assert reasoning(events) == ""  # no loading progress unless asked for


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 400, "invalid_json"),
        (b'{"messages": []}', "application/json", 400, "missing_model"),
        (b'{"model": 7}', "application/json", 400, "missing_model"),
        (b'{"model": ""}', "application/json", 400, "missing_model"),
        (b'{"model": "nope"}', "application/json", 404, "model_not_found"),
        (b"--b\r\nbroken", "multipart/form-data; boundary=b", 400, "invalid_form"),
        (b"x" * 2000, "application/json", 413, "body_too_large"),
    ],
)
async def test_bad_requests(
    bench: Make, body: bytes, content_type: str, status: int, code: str
) -> None:
    b = await bench(max_body_size=1000)
    response = await b.client.post(
        "/v1/chat/completions", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert all(p.starts == 0 for p in b.processes.values())


async def test_unknown_routes_and_methods(bench: Make) -> None:
    b = await bench()
    missing = await b.client.get("/nowhere")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    wrong = await b.client.get("/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert (await b.client.post("/health")).status_code == 405
    assert (await b.client.delete("/running")).status_code == 405


async def test_websockets_are_refused(bench: Make) -> None:
    b = await bench()
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    await b.app({"type": "websocket", "path": "/"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1003}]


# ------------------------------------------------------- names and rewriting


async def test_alias_and_use_model_name_rewrite_the_body(bench: Make, live: LiveUpstreams) -> None:
    echo = Echo()
    url = await live.asgi(echo)
    config = chat_config({m: url for m in ("real", "plain", "hidden")})
    router, processes = fake_router(config)
    # upstreams=None: the config's proxies (a FakeProcess has no url).
    b = await bench(
        router=router, processes=processes, config=config, upstream_apps={}, upstreams=None
    )

    body = {"model": "nick", "temperature": 0.5, **CHAT}
    reply = await b.client.post("/v1/chat/completions?x=1", json=body)
    assert reply.status_code == 200
    seen = echo.seen[-1]
    assert seen["model"] == "upstream-name"  # useModelName
    assert seen["path"] == "/v1/chat/completions"
    assert seen["query"] == "x=1"
    assert json.loads(seen["body"]) == {**body, "model": "upstream-name"}
    assert processes["real"].starts == 1

    # An alias without useModelName is forwarded as requested (llama-swap's behaviour).
    await b.client.post("/v1/chat/completions", json={"model": "plain-alias", **CHAT})
    assert echo.seen[-1]["model"] == "plain-alias"
    assert processes["plain"].starts == 1
    raw = b'{"model":"plain",  "keep":"spacing"}'
    await b.client.post("/v1/chat/completions", content=raw)
    assert echo.seen[-1]["body"] == raw  # forwarded byte for byte when nothing is renamed
    # Renaming replaces the model's value only; the rest stays byte for byte.
    raw = b'{"x": "\\u00e9",  "model" : "nick", "y":[1, 2]}'
    await b.client.post("/v1/chat/completions", content=raw)
    assert echo.seen[-1]["body"] == raw.replace(b'"nick"', b'"upstream-name"')

    # Unlisted models are still served.
    await b.client.post("/v1/chat/completions", json={"model": "hidden", **CHAT})
    assert echo.seen[-1]["model"] == "hidden"


async def test_multipart_model_field(bench: Make) -> None:
    config = chat_config()
    router, processes = fake_router(config)
    echo = Echo()
    b = await bench(
        router=router,
        processes=processes,
        config=config,
        upstream_apps={m: echo for m in config.models},
    )
    audio = bytes(range(256)) * 4
    reply = await b.client.post(
        "/v1/audio/transcriptions",
        data={"model": "nick", "language": "en"},
        files={"file": ("a.wav", audio, "audio/wav")},
    )
    assert reply.status_code == 200
    seen = echo.seen[-1]
    assert processes["real"].starts == 1
    assert seen["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="model"\r\n\r\nupstream-name\r\n' in seen["body"]
    assert audio in seen["body"]
    assert int(seen["headers"]["content-length"]) == len(seen["body"])

    no_model = await b.client.post(
        "/v1/audio/transcriptions", data={"language": "en"}, files={"file": ("a.wav", b"x")}
    )
    assert no_model.status_code == 400
    assert no_model.json()["error"]["code"] == "missing_model"


# ------------------------------------------------------------ routing errors


async def test_concurrency_limit_is_429(bench: Make) -> None:
    b = await bench(limits={"a": 1})
    async with b.router.acquire("a"):
        response = await b.client.post("/v1/chat/completions", json={"model": "a", **CHAT})
    assert response.status_code == 429
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "concurrency_limit_exceeded")


async def test_swap_failure_is_502(bench: Make) -> None:
    processes = {"a": FakeProcess("a", fail_start=1), "b": FakeProcess("b")}
    b = await bench(processes=processes)
    response = await b.client.post("/v1/chat/completions", json={"model": "a", **CHAT})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "swap_failed"
    assert "\n" not in error["message"]
    # The next request starts the model again.
    retry = await b.client.post("/v1/chat/completions", json={"model": "a", **CHAT})
    assert retry.status_code == 200


async def test_unloaded_while_waiting_is_503(bench: Make) -> None:
    processes = {"a": FakeProcess("a", auto_ready=False), "b": FakeProcess("b")}
    b = await bench(processes=processes)
    call = Call(b.app, "POST", "/v1/chat/completions", {"model": "a", **CHAT}).start()
    await processes["a"].wait_state(ProcessState.STARTING)
    unload = await b.client.post("/unload/a")
    assert unload.status_code == 200
    await call.done()
    assert call.status == 503
    assert json.loads(call.text)["error"]["code"] == "model_unloaded"


async def test_shutting_down_and_not_started_are_503(bench: Make) -> None:
    b = await bench(start=False)
    response = await b.client.post("/v1/chat/completions", json={"model": "a", **CHAT})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_started"
    await b.app.startup()
    await b.router.shutdown()
    response = await b.client.post("/v1/chat/completions", json={"model": "a", **CHAT})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "shutting_down"
    unload = await b.client.post("/unload")
    assert (unload.status_code, unload.json()["error"]["code"]) == (503, "shutting_down")


async def test_unreachable_upstream_is_502(bench: Make) -> None:
    port = free_port()  # a port nobody listens on
    # The app's own client, for a real refused connection.
    # A refused connection to a ready model is retried until connect runs out.
    b = await bench(
        upstreams={"a": f"http://127.0.0.1:{port}", "b": "http://b"},
        timeouts=UpstreamTimeouts(connect=0.3),
    )
    response = await b.client.post("/v1/chat/completions", json={"model": "a", **CHAT})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_unreachable"
    assert error["message"] == "upstream of 'a' unreachable: connection refused"
    await eventually(lambda: b.router.snapshot().models["a"].in_flight == 0, "the release")


# ---------------------------------------------------------------------- auth


async def test_api_keys(bench: Make, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo = Echo()
    b = await bench(api_keys=["key-1", "key-2"], upstream_apps={"a": echo, "b": echo})
    body = {"model": "a", **CHAT}
    assert (await b.client.get("/health")).status_code == 200  # never needs a key
    for path in ("/v1/models", "/running"):
        refused = await b.client.get(path)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["error"] == {
            "message": "invalid or missing API key",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    wrong = await b.client.post("/v1/chat/completions", json=body, headers={"x-api-key": "key-3"})
    assert wrong.status_code == 401
    assert b.processes["a"].starts == 0  # refused before anything loads
    ok = await b.client.post(
        "/v1/chat/completions", json=body, headers={"authorization": "Bearer key-2"}
    )
    assert ok.status_code == 200
    ok = await b.client.post("/v1/chat/completions", json=body, headers={"x-api-key": "key-1"})
    assert ok.status_code == 200
    # The gateway's keys never reach the upstream, and never the logs.
    assert all("authorization" not in s["headers"] for s in echo.seen)
    assert all("x-api-key" not in s["headers"] for s in echo.seen)
    assert "key-1" not in caplog.text and "key-2" not in caplog.text
    assert "POST /v1/chat/completions -> 200 model=a" in caplog.text


async def test_without_keys_client_auth_goes_upstream(bench: Make) -> None:
    echo = Echo()
    b = await bench(upstream_apps={"a": echo, "b": echo})
    await b.client.post(
        "/v1/chat/completions",
        json={"model": "a", **CHAT},
        headers={
            "authorization": "Bearer for-upstream",
            "connection": "close, x-hop",
            "x-hop": "1",
            "accept-encoding": "br",
        },
    )
    headers = echo.seen[-1]["headers"]
    assert headers["authorization"] == "Bearer for-upstream"
    assert headers["accept-encoding"] == "br"
    assert "x-hop" not in headers
    assert headers.get("connection") != "close, x-hop"
    # A client that accepts no encoding gets none (httpx would otherwise ask for gzip).
    await Call(b.app, "POST", "/v1/chat/completions", {"model": "a", **CHAT}).start().done()
    assert echo.seen[-1]["headers"]["accept-encoding"] == "identity"


# --------------------------------------------------------------------- peers


async def test_peer_models_are_forwarded_with_the_peer_key(
    bench: Make, live: LiveUpstreams
) -> None:
    echo = Echo()
    peer_url = await live.asgi(echo)
    peers = {
        "remote": PeerConfig(name="remote", proxy=f"{peer_url}/base", api_key="pk", models=("m",))
    }
    b = await bench(
        peers=peers,
        api_keys=["client-key"],
        upstream_apps={"a": FakeModel(model_name="a"), "b": FakeModel()},
    )
    auth = {"authorization": "Bearer client-key"}
    for name in ("remote/m", "m"):  # exact, and bare when one peer serves it
        reply = await b.client.post(
            "/v1/chat/completions", json={"model": name, **CHAT}, headers=auth
        )
        assert reply.status_code == 200
        seen = echo.seen[-1]
        assert seen["model"] == "m"
        assert seen["path"] == "/base/v1/chat/completions"
        assert seen["headers"]["authorization"] == "Bearer pk"
        assert seen["headers"]["x-api-key"] == "pk"
    assert all(p.starts == 0 for p in b.processes.values())  # no local swap
    missing = await b.client.post(
        "/v1/chat/completions", json={"model": "remote/zz", **CHAT}, headers=auth
    )
    assert missing.status_code == 404


async def test_peers_from_the_config(bench: Make, live: LiveUpstreams) -> None:
    echo = Echo()
    peer_url = await live.asgi(echo)
    config = chat_config(peers={"far": {"proxy": peer_url, "apiKey": "fk", "models": ["x"]}})
    router, processes = fake_router(config)
    b = await bench(router=router, processes=processes, config=config, upstream_apps={})
    reply = await b.client.post("/v1/embeddings", json={"model": "far/x", "input": "hi"})
    assert reply.status_code == 200
    assert echo.seen[-1]["model"] == "x"
    assert echo.seen[-1]["headers"]["x-api-key"] == "fk"


# ----------------------------------------------------------- loading state


async def test_loading_progress_names_the_model_an_alias_stands_for(bench: Make) -> None:
    config = chat_config(sendLoadingState=True)
    router, processes = fake_router(config, auto_ready=False)
    b = await bench(
        router=router,
        processes=processes,
        config=config,
        loading_tick=0.01,
        upstream_apps={m: FakeModel(model_name=m) for m in config.models},
    )
    call = Call(b.app, "POST", "/v1/chat/completions", {"model": "nick", "stream": True, **CHAT})
    call.start()
    await eventually(lambda: "loading model" in call.text, "the loading line")
    processes["real"].mark_ready()
    await call.done()
    progress = reasoning(sse_data(call.text))
    # The model's id, not the alias asked for nor its upstream name (useModelName).
    assert progress.startswith("swapcore: loading model real (a cold start)\n")


async def test_loading_progress_then_the_upstream_stream(bench: Make) -> None:
    processes = {"a": FakeProcess("a", auto_ready=False), "b": FakeProcess("b")}
    b = await bench(processes=processes, send_loading_state=True, loading_tick=0.01)
    call = Call(b.app, "POST", "/v1/chat/completions", {"model": "a", "stream": True, **CHAT})
    call.start()
    await eventually(lambda: "loading model a" in call.text, "the loading line")
    assert call.status == 200
    await eventually(lambda: call.text.count('"reasoning_content": "."') >= 2, "keep-alive dots")
    processes["a"].mark_ready()
    await call.done()
    events = sse_data(call.text)
    assert events[-1] == "[DONE]"
    assert content(events) == "You said: hello there"
    progress = reasoning(events)
    assert progress.startswith("swapcore: loading model a (a cold start)\n")
    assert "model a ready after" in progress
    first = events[0]
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"]["role"] == "assistant"
    await eventually(lambda: b.router.snapshot().models["a"].in_flight == 0, "the release")


async def test_loading_progress_says_a_sleeping_model_wakes_and_what_it_costs(
    bench: Make,
) -> None:
    processes = {m: FakeProcess(m, sleep_level=1) for m in "ab"}
    b = await bench(processes=processes, send_loading_state=True, loading_tick=5.0)
    await b.router.preload("a", "b")  # one at a time: a sleeps
    assert processes["a"].state is ProcessState.SLEEPING
    b.router.costs.set_prior("a", "wake", 1.25)
    body = {"model": "a", "stream": True, **CHAT}
    reply = await b.client.post("/v1/chat/completions", json=body)
    progress = reasoning(sse_data(reply.text))
    assert progress.startswith(
        "swapcore: loading model a (waking it from sleep, usually about 1.2 s)\n"
    )
    assert processes["a"].wakes == 1 and processes["a"].starts == 1


async def test_loading_progress_reports_the_queue_position(bench: Make) -> None:
    b = await bench(send_loading_state=True, loading_tick=5.0)
    await b.router.preload("b")
    async with b.router.acquire("a"):  # a is loaded and busy: b must wait for it
        call = Call(b.app, "POST", "/v1/chat/completions", {"model": "b", "stream": True, **CHAT})
        call.start()
        await eventually(lambda: "position 1" in call.text, "the queue position")
        assert b.router.snapshot().queue != ()
    await call.done()
    events = sse_data(call.text)
    assert "waiting in queue, position 1\n" in reasoning(events)
    assert content(events) == "You said: hello there"


async def test_no_progress_for_ready_models_plain_requests_or_when_off(bench: Make) -> None:
    b = await bench(send_loading_state=True)
    await b.router.preload("a")
    response = await b.client.post(
        "/v1/chat/completions", json={"model": "a", "stream": True, **CHAT}
    )
    assert reasoning(sse_data(response.text)) == ""  # ready: straight to the upstream
    response = await b.client.post("/v1/chat/completions", json={"model": "b", **CHAT})
    assert response.json()["object"] == "chat.completion"  # not streaming: plain JSON
    response = await b.client.post(
        "/v1/completions", json={"model": "a", "prompt": "x", "stream": True}
    )
    assert "reasoning_content" not in response.text  # only chat completions get progress
    off = await bench(send_loading_state=False)
    response = await off.client.post(
        "/v1/chat/completions", json={"model": "a", "stream": True, **CHAT}
    )
    assert reasoning(sse_data(response.text)) == ""


async def test_loading_progress_per_model_from_the_config(bench: Make) -> None:
    config = parse_config(
        {
            "sendLoadingState": True,
            "models": {
                "a": {"cmd": "x", "proxy": "http://a"},
                "b": {"cmd": "x", "proxy": "http://b", "sendLoadingState": False},
            },
        }
    )
    router, processes = fake_router(config)
    b = await bench(router=router, processes=processes, config=config)
    streamed = {"stream": True, **CHAT}
    response = await b.client.post("/v1/chat/completions", json={"model": "a", **streamed})
    assert "loading model a" in reasoning(sse_data(response.text))
    response = await b.client.post("/v1/chat/completions", json={"model": "b", **streamed})
    assert reasoning(sse_data(response.text)) == ""


async def test_swap_failure_after_progress_is_an_error_event(bench: Make) -> None:
    processes = {"a": FakeProcess("a", fail_start=1, start_delay=0.01), "b": FakeProcess("b")}
    b = await bench(processes=processes, send_loading_state=True)
    response = await b.client.post(
        "/v1/chat/completions", json={"model": "a", "stream": True, **CHAT}
    )
    assert response.status_code == 200  # the stream had begun
    events = sse_data(response.text)
    assert "[DONE]" not in events
    assert events[-1]["error"]["code"] == "swap_failed"
    assert events[-1]["error"]["status"] == 502


async def test_upstream_error_after_progress_is_an_error_event(bench: Make) -> None:
    processes = {"a": FakeProcess("a", start_delay=0.01), "b": FakeProcess("b")}
    b = await bench(processes=processes, send_loading_state=True)
    # FakeModel answers 400 to a chat request without messages.
    response = await b.client.post("/v1/chat/completions", json={"model": "a", "stream": True})
    events = sse_data(response.text)
    assert events[-1]["error"]["code"] == "upstream_status"
    assert events[-1]["error"]["status"] == 400
    assert "'messages' must be a non-empty list" in events[-1]["error"]["message"]


# --------------------------------------------------------------- disconnects


async def test_disconnect_while_queued_withdraws_the_request(bench: Make) -> None:
    b = await bench()
    await b.router.preload("a")
    async with b.router.acquire("a"):
        call = Call(b.app, "POST", "/v1/chat/completions", {"model": "b", **CHAT}).start()
        await eventually(lambda: b.router.snapshot().queue != (), "b queued")
        call.disconnect()
        await call.done()
        assert call.messages == []  # nobody to answer
        assert b.router.snapshot().queue == ()
    await asyncio.wait_for(b.router._settled(), BOUND)
    assert b.processes["b"].starts == 0  # the withdrawn request never triggers a load
    assert b.router.running_models() == {"a": ProcessState.READY}


async def test_disconnect_while_loading_cancels_the_wait(bench: Make) -> None:
    processes = {"a": FakeProcess("a", auto_ready=False), "b": FakeProcess("b")}
    b = await bench(processes=processes, send_loading_state=True, loading_tick=0.01)
    call = Call(b.app, "POST", "/v1/chat/completions", {"model": "a", "stream": True, **CHAT})
    call.start()
    await eventually(lambda: "loading model a" in call.text, "progress")
    call.disconnect()
    await call.done()
    snapshot = b.router.snapshot().models["a"]
    assert (snapshot.waiting, snapshot.queued, snapshot.in_flight) == (0, 0, 0)


async def test_disconnect_mid_stream_closes_the_upstream_and_releases(bench: Make) -> None:
    endless = Streaming()
    b = await bench(raw={"a": endless})
    call = Call(b.app, "POST", "/v1/chat/completions", {"model": "a", "stream": True, **CHAT})
    call.start()
    await eventually(lambda: len(call.messages) >= 4, "a few chunks")
    assert b.router.snapshot().models["a"].in_flight == 1
    call.disconnect()
    await call.done()
    await eventually(lambda: endless.closed == 1, "the upstream connection closed")
    assert not call.complete
    await eventually(lambda: b.router.snapshot().models["a"].in_flight == 0, "the release")


async def test_lease_is_held_until_the_body_is_sent(bench: Make) -> None:
    finite = Streaming(chunks=3)
    b = await bench(raw={"a": finite})
    seen_in_flight: list[int] = []
    call = Call(b.app, "POST", "/v1/chat/completions", {"model": "a", "stream": True, **CHAT})
    original = call.send

    async def send(message: Message) -> None:
        seen_in_flight.append(b.router.snapshot().models["a"].in_flight)
        await original(message)

    call.send = send  # type: ignore[method-assign]
    call.start()
    await call.done()
    assert call.complete
    assert seen_in_flight == [1] * len(call.messages)  # start, 3 chunks, the end
    await eventually(lambda: b.router.snapshot().models["a"].in_flight == 0, "the release")


async def test_upstream_failure_mid_event_stream_ends_with_an_error_event(bench: Make) -> None:
    failing = Streaming(fail_after=2)
    b = await bench(raw={"a": failing})
    response = await b.client.post(
        "/v1/chat/completions", json={"model": "a", "stream": True, **CHAT}
    )
    assert response.status_code == 200
    events = sse_data(response.text)
    assert len(events) == 3
    assert events[-1]["error"]["code"] == "upstream_failed"
    await eventually(lambda: b.router.snapshot().models["a"].in_flight == 0, "the release")


async def test_upstream_failure_mid_plain_body_abandons_the_response(bench: Make) -> None:
    failing = Streaming(fail_after=2, content_type=b"application/json")
    b = await bench(raw={"a": failing})
    call = Call(b.app, "POST", "/v1/chat/completions", {"model": "a", **CHAT}).start()
    await call.done()
    assert call.status == 200
    assert not call.complete  # the server closes the connection: a visible truncation
    await eventually(lambda: b.router.snapshot().models["a"].in_flight == 0, "the release")


# ------------------------------------------------------ management endpoints


async def test_running_and_unload(bench: Make) -> None:
    config = chat_config()
    router, processes = fake_router(config, start_delay=0.01)
    b = await bench(
        router=router,
        processes=processes,
        config=config,
        upstream_apps={m: FakeModel(model_name=m) for m in config.models},
    )
    assert (await b.client.get("/running")).json() == {"running": [], "evictions": []}
    await b.client.post("/v1/chat/completions", json={"model": "nick", **CHAT})
    await eventually(lambda: b.router.snapshot().models["real"].in_flight == 0, "the release")
    running = (await b.client.get("/running")).json()["running"]
    load = running[0]["costs"].pop("load")
    assert load["measured"] == 1 and load["source"] == "measured" and load["seconds"] >= 0
    assert running == [
        {
            "model": "real",
            "state": "ready",
            "in_flight": 0,
            "queued": 0,
            "waiting": 0,
            "costs": {},
            "proxy": b.urls["real"],
            "ttl": 0,
            "name": "Real",
            "description": "The real one",
        }
    ]
    unloaded = await b.client.post("/unload/nick")  # aliases work here too
    assert (unloaded.status_code, unloaded.json()) == (200, {"unloaded": ["real"]})
    assert processes["real"].state is ProcessState.STOPPED
    await b.client.post("/v1/chat/completions", json={"model": "plain", **CHAT})
    [plain] = (await b.client.get("/running")).json()["running"]
    assert "name" not in plain and "description" not in plain  # none configured: none shown
    unloaded = await b.client.get("/unload")  # llama-swap's method
    assert unloaded.json() == {"unloaded": ["plain"]}
    assert b.router.running_models() == {}
    missing = await b.client.post("/unload/nobody")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "model_not_found")


async def test_upstream_passthrough(bench: Make) -> None:
    echo = Echo()
    b = await bench(upstream_apps={"a": echo, "b": echo})
    reply = await b.client.put("/upstream/a/props/x%20y?z=1", content=b"raw bytes")
    assert reply.status_code == 200
    seen = echo.seen[-1]
    assert (seen["method"], seen["path"], seen["query"]) == ("PUT", "/props/x y", "z=1")
    assert seen["body"] == b"raw bytes"
    assert reply.headers["x-upstream"] == "echo"
    assert b.processes["a"].starts == 1
    redirect = await b.client.get("/upstream/a?q=2")
    assert (redirect.status_code, redirect.headers["location"]) == (301, "a/?q=2")
    assert (await b.client.post("/upstream/a")).status_code == 308
    missing = await b.client.get("/upstream/zz/health")
    assert missing.status_code == 404
    assert (await b.client.get("/upstream")).status_code == 404


# ---------------------------------------------------- lifespan and mounting


async def test_lifespan_protocol_runs_the_router_and_the_client() -> None:
    processes = {"a": FakeProcess("a")}
    router = BaseRouter(processes, GroupPlanner({}, models=processes))
    app = GatewayApp(router, upstreams={"a": "http://a"}, preload=["a"])
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: list[Message] = []

    async def send(message: Message) -> None:
        outbox.append(message)

    lifespan = asyncio.ensure_future(app({"type": "lifespan"}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await eventually(lambda: len(outbox) == 1, "startup")
    assert outbox[0] == {"type": "lifespan.startup.complete"}
    assert app.preload_task is not None
    await asyncio.wait_for(app.preload_task, BOUND)
    assert processes["a"].state is ProcessState.READY
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(lifespan, BOUND)
    assert outbox[1] == {"type": "lifespan.shutdown.complete"}
    assert state_of(processes["a"]) is ProcessState.STOPPED


async def test_lifespan_reports_a_failed_startup() -> None:
    processes = {"a": FakeProcess("a")}
    router = BaseRouter(processes, GroupPlanner({}, models=processes))
    outbox: list[Message] = []

    async def send(message: Message) -> None:
        outbox.append(message)

    async with router:  # already entered: the app cannot enter it again
        app = GatewayApp(router, upstreams={"a": "http://a"})
        messages = iter([{"type": "lifespan.startup"}])

        async def receive() -> Message:
            return next(messages)

        await asyncio.wait_for(app({"type": "lifespan"}, receive, send), BOUND)
    assert outbox[0]["type"] == "lifespan.startup.failed"
    assert "RouterNotRunning" in outbox[0]["message"]


async def test_manage_router_false_leaves_the_router_alone() -> None:
    processes = {"a": FakeProcess("a")}
    router = BaseRouter(processes, GroupPlanner({}, models=processes))
    async with router:
        async with GatewayApp(router, upstreams={"a": "http://a"}, manage_router=False) as app:
            assert app.router is router
        await router.preload("a")  # still running after the app's shutdown
    assert processes["a"].state is ProcessState.STOPPED


async def test_mounted_in_starlette(live: LiveUpstreams) -> None:
    starlette = pytest.importorskip("starlette")
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    assert starlette
    processes = {"a": FakeProcess("a")}
    router = BaseRouter(processes, GroupPlanner({}, models=processes))
    gateway = GatewayApp(router, upstreams={"a": await live.asgi(FakeModel(tokens=4))})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with gateway:
            yield

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("host app")

    host = Starlette(routes=[Route("/", home), Mount("/llm", app=gateway)], lifespan=lifespan)
    async with (
        lifespan(host),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=host), base_url="http://host"
        ) as client,
    ):
        assert (await client.get("/")).text == "host app"
        assert (await client.get("/llm/health")).text == "OK"
        models = await client.get("/llm/v1/models")
        assert [m["id"] for m in models.json()["data"]] == ["a"]
        reply = await client.post("/llm/v1/chat/completions", json={"model": "a", **CHAT})
        assert reply.json()["choices"][0]["message"]["content"] == "You said: hello there"
        redirect = await client.get("/llm/upstream/a")
        assert redirect.headers["location"] == "a/"  # relative: stays under /llm
    assert processes["a"].state is ProcessState.STOPPED


async def test_from_config_builds_the_router(bench: Make) -> None:
    config = chat_config(hooks={"on_startup": {"preload": ["nick"]}}, apiKeys=["k"])
    app = GatewayApp.from_config(config)
    assert sorted(app.router.models) == ["hidden", "plain", "real"]
    assert app.config is config
    assert app.preload == ("real",)
    assert app.requires_api_key
    router, _ = fake_router(config)
    assert GatewayApp.from_config(config, router, api_keys=()).router is router


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"upstreams": {"a": 1}}, "upstreams"),
        ({"upstreams": ["http://a"]}, "upstreams"),
        ({"api_keys": "one-string"}, "api_keys"),
        ({"api_keys": ["ok", ""]}, r"api_keys\[1\]"),
        ({"max_body_size": 0}, "max_body_size"),
        ({"max_body_size": 1.5}, "max_body_size"),
        ({"loading_tick": 0}, "loading_tick"),
        ({"max_buffered_bytes": 0}, "max_buffered_bytes"),
        ({"timeouts": {"zz": UpstreamTimeouts()}}, "timeouts"),
        ({"timeouts": {"a": 5}}, r"timeouts\['a'\]"),
        ({"timeouts": 5}, "timeouts"),
        ({"send_loading_state": "yes"}, "send_loading_state"),
        ({"preload": "a"}, "preload"),
        ({"http_client": object()}, "http_client"),
        ({"peers": {"x": PeerConfig(name="y", proxy="http://y", models=("m",))}}, "peers"),
    ],
)
def test_invalid_options_name_the_argument(kwargs: dict[str, Any], field: str) -> None:
    processes = {"a": FakeProcess("a")}
    router = BaseRouter(processes, GroupPlanner({}, models=processes))
    with pytest.raises(ConfigError, match=field):
        GatewayApp(router, **kwargs)


# ---------------------------------------------------------------------- web UI


async def test_the_ui_page_and_its_load_endpoint(bench: Make) -> None:
    config = chat_config()
    router, processes = fake_router(config, start_delay=0.01)
    b = await bench(
        router=router,
        processes=processes,
        config=config,
        api_keys=["k"],
        upstream_apps={m: FakeModel(model_name=m) for m in config.models},
    )
    challenge = await b.client.get("/ui")  # the browser is asked for the key
    assert challenge.status_code == 401
    assert challenge.headers["www-authenticate"] == 'Basic realm="swapcore"'
    page = await b.client.get("/ui", auth=("anyone", "k"))  # the key as the password
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert "<title>swapcore</title>" in page.text and "/api/events" in page.text
    # Nothing fetched from elsewhere: the only URL is the SVG namespace's name.
    rest = page.text.replace('"http://www.w3.org/2000/svg"', "")
    assert "http://" not in rest and "https://" not in rest
    head = await b.client.head("/ui/", headers={"x-api-key": "k"})
    assert (head.status_code, head.content) == (200, b"")
    root = await b.client.get("/", follow_redirects=False)
    assert (root.status_code, root.headers["location"]) == (302, "/ui")
    assert (await b.client.post("/api/models/load/nick")).status_code == 401
    key = {"authorization": "Bearer k"}
    loaded = await b.client.post("/api/models/load/nick", headers=key)
    assert (loaded.status_code, loaded.json()) == (200, {"msg": "ok", "loaded": ["real"]})
    assert processes["real"].state is ProcessState.READY
    missing = await b.client.post("/api/models/load/nobody", headers=key)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "model_not_found")
    wrong = await b.client.get("/api/models/load/real", headers=key)
    assert wrong.status_code == 405


async def test_llama_swaps_other_routed_paths(bench: Make) -> None:
    echo = Echo()
    b = await bench(upstream_apps={"a": echo, "b": echo})
    for path, upstream in [
        ("/sdapi/v1/txt2img", "/sdapi/v1/txt2img"),
        ("/sdapi/v1/img2img", "/sdapi/v1/img2img"),
        ("/audioapi/v1/tasks/run", "/audioapi/v1/tasks/run"),
        ("/v/chat/completions", "/chat/completions"),  # versionless: sent without /v
        ("/v/embeddings", "/embeddings"),
    ]:
        reply = await b.client.post(path, json={"model": "a", "prompt": "x"})
        assert reply.status_code == 200, (path, reply.text)
        assert (echo.seen[-1]["method"], echo.seen[-1]["path"]) == ("POST", upstream)
    assert (await b.client.get("/v/chat/completions")).status_code == 405
