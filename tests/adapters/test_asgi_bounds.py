"""GatewayApp's bounds: upstream timeouts, refused connections, shutdown, memory, hostile bodies.

Real upstreams on 127.0.0.1 (upstream_servers.py); the harness in
gateway_harness.py. Timeouts are set to fractions of a second so the tests
are quick; no test asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("aiohttp")
pytest.importorskip("uvicorn")

from gateway_harness import (
    BOUND,
    CHAT,
    Call,
    Make,
    Message,
    content,
    eventually,
    sse_data,
)
from upstream_servers import Echo, LiveUpstreams, Streaming, read_request

from swapcore import BaseRouter, Group, GroupPlanner, ProcessState
from swapcore.adapters._requests import PARSE_LIMIT
from swapcore.config import UpstreamTimeouts, parse_config
from swapcore.fakemodel import HANG_MARKER, FakeModel
from swapcore.testing.fakes import FakeProcess
from system_helpers import free_port

STREAM = {"model": "a", "stream": True, **CHAT}


def in_flight(b: Any, model: str = "a") -> int:
    return int(b.router.snapshot().models[model].in_flight)


# ------------------------------------------------------------ upstream time


async def test_no_response_headers_in_time_is_504_and_releases(bench: Make) -> None:
    silent = Streaming(silent=True)
    b = await bench(raw={"a": silent}, timeouts=UpstreamTimeouts(response_header=0.2))
    response = await b.client.post("/v1/chat/completions", json={"model": "a", **CHAT})
    assert response.status_code == 504
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_timeout")
    assert error["message"] == "the upstream of 'a' sent no response within 0.2 s"
    await eventually(lambda: in_flight(b) == 0, "the release")
    await eventually(lambda: silent.closed == 1, "the upstream connection closed")


async def test_silence_mid_stream_ends_with_an_error_event(bench: Make) -> None:
    stalling = Streaming(stall_after=2)
    b = await bench(raw={"a": stalling}, timeouts=UpstreamTimeouts(read=0.2))
    response = await b.client.post("/v1/chat/completions", json=STREAM)
    assert response.status_code == 200
    events = sse_data(response.text)
    assert len(events) == 3
    assert content(events[:2]) == "tt"
    error = events[-1]["error"]
    assert (error["code"], error["status"]) == ("upstream_timeout", 504)
    assert error["message"] == "the upstream of 'a' sent nothing for 0.2 s"
    await eventually(lambda: in_flight(b) == 0, "the release")
    await eventually(lambda: stalling.closed == 1, "the upstream connection closed")


async def test_silence_mid_plain_body_abandons_the_response(bench: Make) -> None:
    stalling = Streaming(stall_after=1, content_type=b"application/json")
    b = await bench(raw={"a": stalling}, timeouts=UpstreamTimeouts(read=0.2))
    call = Call(b.app, "POST", "/v1/chat/completions", {"model": "a", **CHAT}).start()
    await call.done()
    assert call.status == 200
    assert not call.complete  # truncated, never a body that looks whole
    await eventually(lambda: in_flight(b) == 0, "the release")


async def test_a_hung_stream_no_longer_blocks_its_swap_group(bench: Make) -> None:
    # a and b share the default group, which swaps: b waits until a is released.
    hanging = FakeModel(model_name="a", tokens=50, token_delay=0.001, hang_after_tokens=3)
    b = await bench(
        upstream_apps={"a": hanging, "b": FakeModel(model_name="b", tokens=4)},
        timeouts=UpstreamTimeouts(read=0.3),
    )
    hung = asyncio.ensure_future(b.client.post("/v1/chat/completions", json=STREAM))
    await eventually(lambda: in_flight(b) == 1, "a serving")
    other = await asyncio.wait_for(
        b.client.post("/v1/chat/completions", json={"model": "b", **CHAT}), BOUND
    )
    assert other.status_code == 200
    assert other.json()["model"] == "b"
    events = sse_data((await asyncio.wait_for(hung, BOUND)).text)
    assert events[-1]["error"]["code"] == "upstream_timeout"
    assert b.processes["a"].state is ProcessState.STOPPED  # swapped out for b


async def test_a_client_that_stops_reading_is_cut_off(bench: Make) -> None:
    endless = Streaming(interval=0.0005)
    b = await bench(raw={"a": endless}, timeouts=UpstreamTimeouts(read=0.2))
    call = Call(b.app, "POST", "/v1/chat/completions", STREAM)
    stuck = asyncio.Event()
    original = call.send

    async def send(message: Message) -> None:
        if len(call.messages) >= 3:
            await stuck.wait()  # the client reads no more: the send never returns
        await original(message)

    call.send = send  # type: ignore[method-assign]
    call.start()
    await call.done()
    assert not call.complete
    await eventually(lambda: in_flight(b) == 0, "the release")
    await eventually(lambda: endless.closed == 1, "the upstream connection closed")


async def test_a_refused_connection_to_a_ready_model_is_retried(
    bench: Make, live: LiveUpstreams
) -> None:
    port = free_port()  # a port nobody listens on
    b = await bench(
        upstreams={"a": f"http://127.0.0.1:{port}", "b": "http://b"},
        timeouts=UpstreamTimeouts(connect=BOUND),
    )
    attempts: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        attempts.append(1)
        body = b'{"ok": true}'
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()

    request = asyncio.ensure_future(
        b.client.post("/v1/chat/completions", json={"model": "a", **CHAT})
    )
    await eventually(lambda: b.processes["a"].state is ProcessState.READY, "a ready")
    await asyncio.sleep(0.2)  # let a few connection attempts be refused first
    assert not request.done()
    server = await asyncio.start_server(answer, "127.0.0.1", port)
    try:
        response = await asyncio.wait_for(request, BOUND)
    finally:
        server.close()
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert attempts == [1]  # refused attempts never reached an upstream


async def test_a_model_that_went_down_before_the_request_reached_it_is_restarted(
    bench: Make,
) -> None:
    port = free_port()  # a port nobody listens on
    processes = {"a": FakeProcess("a"), "b": FakeProcess("b")}
    b = await bench(
        processes=processes,
        upstreams={"a": f"http://127.0.0.1:{port}", "b": "http://b"},
        timeouts=UpstreamTimeouts(connect=BOUND),
    )
    request = asyncio.ensure_future(
        b.client.post("/v1/chat/completions", json={"model": "a", **CHAT})
    )
    await eventually(lambda: processes["a"].state is ProcessState.READY, "a ready")
    processes["a"].crash()  # refused, and no longer ready: the request is routed again
    await eventually(lambda: processes["a"].starts == 2, "a restarted")
    server = await asyncio.start_server(_answer_ok, "127.0.0.1", port)
    try:
        response = await asyncio.wait_for(request, BOUND)
    finally:
        server.close()
    assert response.status_code == 200
    # Once more, and it stays down: then the request fails (after one reroute only).
    processes["a"].fail_start = 1
    request = asyncio.ensure_future(
        b.client.post("/v1/chat/completions", json={"model": "a", **CHAT})
    )
    await eventually(lambda: processes["a"].state is ProcessState.READY, "a ready")
    processes["a"].crash()
    response = await asyncio.wait_for(request, BOUND)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "swap_failed"


async def _answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    body = b'{"ok": true}'
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    writer.close()


# ------------------------------------------------------------------ shutdown


async def test_shutdown_ends_every_open_request_with_shutting_down(bench: Make) -> None:
    processes = {
        "a": FakeProcess("a"),
        "b": FakeProcess("b", auto_ready=False),
        "c": FakeProcess("c"),
    }
    # a and c may run together; b swaps alone.
    planner = GroupPlanner(
        {"ac": Group(["a", "c"], swap=False, exclusive=False), "b": Group(["b"], exclusive=False)}
    )
    b = await bench(
        processes=processes,
        router=BaseRouter(processes, planner),
        raw={"a": Streaming(), "c": Streaming(silent=True)},
        upstream_apps={},
    )
    streaming = Call(b.app, "POST", "/v1/chat/completions", STREAM).start()
    await eventually(lambda: len(streaming.messages) >= 3, "the stream under way")
    # c's upstream never answers: waiting for headers. b never gets ready: waiting on a swap.
    waiting_headers = Call(b.app, "POST", "/v1/embeddings", {"model": "c", "input": "x"}).start()
    await eventually(lambda: in_flight(b, "c") == 1, "c serving")
    swapping = Call(b.app, "POST", "/v1/chat/completions", {"model": "b", **CHAT}).start()
    await eventually(lambda: processes["b"].state is ProcessState.STARTING, "b starting")

    await asyncio.wait_for(b.app.shutdown(), BOUND)
    for call in (streaming, waiting_headers, swapping):
        await call.done()
        assert call.complete
    assert sse_data(streaming.text)[-1]["error"]["code"] == "shutting_down"
    for call in (waiting_headers, swapping):
        assert call.status == 503
        assert json.loads(call.text)["error"]["code"] == "shutting_down"
    late = Call(b.app, "POST", "/v1/chat/completions", {"model": "a", **CHAT}).start()
    await late.done()
    assert (late.status, json.loads(late.text)["error"]["code"]) == (503, "shutting_down")
    assert all(p.state is not ProcessState.READY for p in processes.values())
    assert b.app.open_requests == 0


async def test_a_cancellation_from_the_server_is_answered_not_raised(bench: Make) -> None:
    b = await bench(raw={"a": Streaming(silent=True)})
    call = Call(b.app, "POST", "/v1/chat/completions", {"model": "a", **CHAT}).start()
    await eventually(lambda: in_flight(b) == 1, "a serving")
    assert call.task is not None
    call.task.cancel()  # what uvicorn does past its own graceful timeout
    await asyncio.wait({call.task}, timeout=BOUND)
    assert not call.task.cancelled()
    assert call.task.exception() is None
    assert call.status == 503
    assert json.loads(call.text)["error"]["code"] == "shutting_down"
    await eventually(lambda: in_flight(b) == 0, "the release")


# -------------------------------------------------------------------- memory


async def test_request_bodies_beyond_the_budget_get_503_retry_after(bench: Make) -> None:
    silent = Streaming(silent=True)
    processes = {"a": FakeProcess("a"), "b": FakeProcess("b")}
    together = GroupPlanner({"ab": Group(["a", "b"], swap=False)})
    b = await bench(
        processes=processes,
        router=BaseRouter(processes, together),
        raw={"a": silent},
        max_buffered_bytes=3000,
    )
    big = {"model": "a", "pad": "x" * 2000, **CHAT}
    held = Call(b.app, "POST", "/v1/chat/completions", big).start()
    await eventually(lambda: in_flight(b) == 1, "the first body held")
    assert 2000 < b.app.buffered_bytes <= 3000
    refused = await b.client.post("/v1/chat/completions", json=big)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "gateway_busy"
    # Without Content-Length (chunked upload) the budget holds too.

    async def chunks() -> Any:
        yield json.dumps(big).encode()

    refused = await b.client.post("/v1/chat/completions", content=chunks())
    assert (refused.status_code, refused.json()["error"]["code"]) == (503, "gateway_busy")
    small = await b.client.post("/v1/embeddings", json={"model": "b", "input": "x"})
    assert small.status_code == 200  # small bodies still fit
    held.disconnect()
    await held.done()
    await eventually(lambda: b.app.buffered_bytes == 0, "the budget given back")


async def test_body_too_large_is_refused_before_it_is_read(bench: Make) -> None:
    b = await bench(max_body_size=100)
    call = Call(b.app, "POST", "/v1/chat/completions", {"model": "a", "x": "y" * 200})
    call.scope["headers"].append((b"content-length", str(len(call.body)).encode()))
    received: list[int] = []
    original = call.receive

    async def receive() -> Message:
        received.append(1)
        return await original()

    call.receive = receive  # type: ignore[method-assign]
    await call.start().done()
    assert call.status == 413
    assert received == []  # answered from Content-Length alone
    assert b.app.buffered_bytes == 0


@pytest.mark.parametrize("scanned", [False, True], ids=["parsed", "scanned"])
async def test_deeply_nested_json_is_400(bench: Make, scanned: bool) -> None:
    b = await bench()
    pad = b" " * (PARSE_LIMIT + 1) if scanned else b""
    body = b'{"model": "a", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}" + pad
    response = await b.client.post("/v1/chat/completions", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "json_too_deep"
    assert b.processes["a"].starts == 0


async def test_large_bodies_are_scanned_not_parsed(bench: Make, live: LiveUpstreams) -> None:
    echo = Echo()
    url = await live.asgi(echo)
    config = parse_config({"models": {"a": {"cmd": "x", "proxy": url, "useModelName": "renamed"}}})
    b = await bench(("a",), config=config, upstream_apps={}, upstreams={"a": url})
    text = "é" * (PARSE_LIMIT // 2 + 10)
    body = json.dumps({"messages": [{"role": "user", "content": text}], "model": "a"}).encode()
    assert len(body) > PARSE_LIMIT
    response = await b.client.post("/v1/chat/completions", content=body)
    assert response.status_code == 200
    assert echo.seen[-1]["body"] == body.replace(b'"model": "a"', b'"model": "renamed"')
    twice = b'{"model": "a", "model": "b", "pad": "' + b"x" * PARSE_LIMIT + b'"}'
    refused = await b.client.post("/v1/chat/completions", content=twice)
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "missing_model")
    many = b'{"model": "a", "x": [' + b'"",' * 1_100_000 + b'""]}'
    refused = await b.client.post("/v1/chat/completions", content=many)
    assert (refused.status_code, refused.json()["error"]["code"]) == (413, "body_too_complex")


async def test_compressed_request_bodies_are_415(bench: Make) -> None:
    b = await bench()
    response = await b.client.post(
        "/v1/chat/completions",
        content=b"\x1f\x8b\x08\x00",
        headers={"content-encoding": "gzip", "content-type": "application/json"},
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_encoding"


async def test_hang_marker_reaches_the_fake_model(bench: Make) -> None:
    b = await bench(timeouts=UpstreamTimeouts(read=0.2))
    body = {"model": "a", "stream": True, "messages": [{"role": "user", "content": HANG_MARKER}]}
    response = await b.client.post("/v1/chat/completions", json=body)
    events = sse_data(response.text)
    assert events[-1]["error"]["code"] == "upstream_timeout"
