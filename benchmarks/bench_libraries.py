"""Hand-written gateway parts against well-kept libraries: routing, CORS, multipart.

    python benchmarks/bench_libraries.py [--json PATH]

Measures, in one process and one run, what adopting Starlette (routing,
CORS) and python-multipart (form parsing) would add per request, against
the gateway's own code doing the same job:

- ``routing``: an ASGI call that answers 200 at once, reached (a) directly,
  (b) through a Starlette ``Router`` holding the gateway's 27 paths (the
  target last: the worst case of its linear match), (c) the same behind
  Starlette's ``CORSMiddleware``; and the gateway's own dispatch
  (``GatewayApp`` answering ``GET /health``, its cheapest path).
- ``multipart``: finding the ``model`` field of an upload (an audio file
  with two text fields) with the gateway's ``find_field`` and with
  python-multipart's streaming ``MultipartParser`` (callbacks, no copies),
  for bodies of 1 KiB, 1 MiB and 25 MiB.

Target (issue 13, part 6): move a part to the library unless it costs more
than 0.1 ms per request. Times are medians of repeated batches (µs per call).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from swapcore.adapters._multipart import find_field  # noqa: E402

PATHS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/audio/speech",
    "/v1/audio/transcriptions",
    "/v1/audio/voices",
    "/v1/images/generations",
    "/v1/models",
    "/v1/models/{model}",
    "/completion",
    "/infill",
    "/rerank",
    "/reranking",
    "/running",
    "/unload",
    "/unload/{model}",
    "/upstream/{path:path}",
    "/logs",
    "/logs/stream",
    "/logs/stream/{which}",
    "/api/events",
    "/api/models/unload",
    "/api/models/unload/{model}",
    "/props",
    "/metrics",
    "/health",
]


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"OK"})


def _scope(path: str, method: str = "GET", headers: Sequence[tuple[bytes, bytes]] = ()) -> Any:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": list(headers),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


def _time_asgi(app: Callable[..., Any], scope: Any, calls: int, batches: int) -> float:
    """Median µs per call of ``app`` on ``scope`` (an empty body, responses discarded)."""

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    async def batch() -> float:
        began = time.perf_counter()
        for _ in range(calls):
            await app(dict(scope), receive, send)
        return (time.perf_counter() - began) / calls * 1e6

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(batch())  # warm up
        return statistics.median(loop.run_until_complete(batch()) for _ in range(batches))
    finally:
        loop.close()


def routing(calls: int, batches: int) -> dict[str, float]:
    from starlette.middleware.cors import CORSMiddleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route, Router

    class Raw:
        """An ASGI app as the endpoint: Starlette builds no Request for it."""

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await _ok(scope, receive, send)

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("OK")

    raw = Router([Route(p, Raw()) for p in PATHS])
    styled = Router([Route(p, hello) for p in PATHS])
    cors = CORSMiddleware(raw, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"])
    origin = [(b"origin", b"http://example.com")]
    results = {
        "direct": _time_asgi(_ok, _scope("/health"), calls, batches),
        "starlette router, ASGI endpoint": _time_asgi(raw, _scope("/health"), calls, batches),
        "starlette router, request endpoint": _time_asgi(styled, _scope("/health"), calls, batches),
        "starlette router + CORS": _time_asgi(
            cors, _scope("/health", headers=origin), calls, batches
        ),
    }
    try:
        from swapcore.adapters._routes import match_route
    except ImportError:  # an older checkout: no route table
        match_route = None
    if match_route is not None:
        for label, method, path in (
            ("gateway's route table: POST /v1/chat/completions", "POST", "/v1/chat/completions"),
            ("gateway's route table: POST /v/embeddings (last)", "POST", "/v/embeddings"),
        ):
            call = functools.partial(match_route, method, path)
            results[label] = _time_call(call, calls, batches)
    gateway = _gateway()
    if gateway is not None:
        results["gateway's own dispatch (GET /health)"] = _time_asgi(
            gateway, _scope("/health"), calls, batches
        )
    return results


def _gateway() -> Any:
    try:
        from swapcore import BaseRouter, GroupPlanner
        from swapcore.adapters.asgi import GatewayApp
        from swapcore.testing.fakes import FakeProcess
    except ImportError:
        return None
    router = BaseRouter({"a": FakeProcess("a")}, GroupPlanner({}, models=["a"]))
    return GatewayApp(router, upstreams={"a": "http://127.0.0.1:9"})


def _upload(size: int) -> tuple[bytes, bytes]:
    boundary = b"----swapcorebench7MA4YWxkTrZu0gW"
    audio = bytes(range(256)) * (size // 256 + 1)
    body = b"".join(
        [
            b"--" + boundary + b"\r\n",
            b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n',
            b"Content-Type: audio/wav\r\n\r\n",
            audio[:size],
            b"\r\n--" + boundary + b"\r\n",
            b'Content-Disposition: form-data; name="response_format"\r\n\r\njson',
            b"\r\n--" + boundary + b"\r\n",
            b'Content-Disposition: form-data; name="model"\r\n\r\nwhisper-1',
            b"\r\n--" + boundary + b"--\r\n",
        ]
    )
    return body, boundary


def _library_span(body: bytes, boundary: bytes) -> tuple[int, int] | None:
    """The ``model`` field's span with python-multipart's streaming parser."""
    from python_multipart.multipart import MultipartParser

    state: dict[str, Any] = {"name": None, "span": None, "header": b"", "field": b""}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        if state["field"].lower() == b"content-disposition":
            state["header"] += data[start:end]

    def on_header_end() -> None:
        state["field"] = b""

    def on_part_begin() -> None:
        state["header"], state["name"] = b"", None

    def on_headers_finished() -> None:
        header = state["header"]
        if b'name="model"' in header and b"filename=" not in header:
            state["name"] = "model"

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["name"] == "model" and state["span"] is None:
            state["span"] = (start, end)

    parser = MultipartParser(
        boundary,
        callbacks={
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    parser.write(body)
    parser.finalize()
    span: tuple[int, int] | None = state["span"]
    return span


def _time_call(function: Callable[[], Any], repeat: int, batches: int) -> float:
    function()
    runs = []
    for _ in range(batches):
        began = time.perf_counter()
        for _ in range(repeat):
            function()
        runs.append((time.perf_counter() - began) / repeat * 1e6)
    return statistics.median(runs)


def multipart(batches: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for label, size, repeat in (
        ("1 KiB", 1024, 2000),
        ("1 MiB", 1 << 20, 50),
        ("25 MiB", 25 << 20, 2),
    ):
        body, boundary = _upload(size)
        ours = find_field(body, boundary, "model")
        theirs = _library_span(body, boundary)
        assert ours == theirs, (label, ours, theirs)
        assert body[ours[0] : ours[1]] == b"whisper-1"
        ours_call = functools.partial(find_field, body, boundary, "model")
        theirs_call = functools.partial(_library_span, body, boundary)
        results[label] = {
            "find_field": _time_call(ours_call, repeat, batches),
            "python-multipart": _time_call(theirs_call, repeat, batches),
        }
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    routes = routing(args.calls, args.batches)
    direct = routes["direct"]
    print(f"{'routing (one request)':<54}{'µs/call':>10}{'added µs':>10}")
    for name, micros in routes.items():
        added = f"{micros - direct:>10.1f}" if name != "direct" else f"{'':>10}"
        print(f"{name:<54}{micros:>10.1f}{added}")
    forms = multipart(args.batches)
    print()
    print(
        f"{'multipart: find the model field':<32}{'find_field µs':>16}{'python-multipart µs':>22}"
    )
    for label, row in forms.items():
        print(f"{label:<32}{row['find_field']:>16.1f}{row['python-multipart']:>22.1f}")
    if args.json:
        payload = {"python": platform.python_version(), "routing": routes, "multipart": forms}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
