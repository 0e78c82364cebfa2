"""Gateway overhead: the same fake upstream called directly and through ``swapcore serve``.

    python benchmarks/bench_gateway.py [--json PATH] [--quick]
        [--requests N] [--concurrency M] [--concurrent-requests K] [--tokens T]

Starts ``swapcore serve`` (uvicorn) in a subprocess on a one-model config whose
model is ``swapcore.fakemodel`` (uvicorn too, no load delay), preloads it, then
sends the same chat completion to the model's own port (``direct``) and to the
gateway (``gateway``), with an ``httpx`` client:

- ``sequential``: N requests one after another, alternating direct and
  gateway request by request so drift (CPU frequency, other load) hits both
  sides alike; latency is the time to the last byte of the response.
- ``concurrent``: M workers sharing K requests, direct then gateway then
  again (two rounds each, aggregated); requests per second and latency.

Both non-streaming and streaming (``"stream": true``, the whole SSE stream
read; ``ttfb`` is the time to the first chunk). ``added`` is gateway minus
direct, per percentile. The model is ready throughout: this measures the
gateway's own cost (parse the body, acquire, forward, stream back), not swaps.

The client, the gateway and the upstream share the machine's cores: compare
figures from one machine, don't assert them. Target: added p50 < 2 ms on a
ready model (sequential).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

MODEL = "bench"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hello gateway"}]}
STREAM_BODY = {**BODY, "stream": True}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(directory: Path, model_port: int, tokens: int) -> Path:
    fake = f"{shlex.quote(sys.executable)} -m swapcore.fakemodel"
    text = f"""\
healthCheckTimeout: 30
startPort: {model_port}
models:
  {MODEL}:
    cmd: "{fake} --port ${{PORT}} --load 0 --tokens {tokens} --model-name {MODEL}"
    proxy: "http://127.0.0.1:${{PORT}}"
    concurrencyLimit: 100000
hooks:
  on_startup:
    preload: [{MODEL}]
"""
    path = directory / "bench-gateway.yaml"
    path.write_text(text)
    return path


class Gateway:
    """``swapcore serve`` in a subprocess; stopped with SIGTERM."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = log.open("w")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "swapcore", "serve", str(config), "--port", str(port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def wait_ready(self, model_url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"swapcore serve exited with {self.process.returncode}")
                try:
                    gateway = client.get(f"{self.url}/health").status_code == 200
                    model = client.get(f"{model_url}/health").status_code == 200
                except httpx.HTTPError:
                    gateway = model = False
                if gateway and model:
                    return
                time.sleep(0.05)
        raise RuntimeError("the gateway or its model did not become ready in time")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            self._log.close()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def stats(latencies: Sequence[float], seconds: float) -> dict[str, float]:
    ms = [x * 1000 for x in latencies]
    return {
        "n": len(ms),
        "seconds": seconds,
        "per_second": len(ms) / seconds if seconds else float("nan"),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "mean_ms": statistics.fmean(ms) if ms else float("nan"),
    }


# ------------------------------------------------------------------ one request


def one_sync(client: httpx.Client, url: str, stream: bool) -> tuple[float, float]:
    """Return (time to last byte, time to first byte) in seconds."""
    start = time.perf_counter()
    first = 0.0
    if stream:
        with client.stream("POST", url, json=STREAM_BODY) as response:
            for _chunk in response.iter_raw():
                if not first:
                    first = time.perf_counter() - start
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code}")
    else:
        response = client.post(url, json=BODY)
        first = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:200]}")
    return time.perf_counter() - start, first


async def one_async(client: httpx.AsyncClient, url: str, stream: bool) -> float:
    start = time.perf_counter()
    if stream:
        async with client.stream("POST", url, json=STREAM_BODY) as response:
            async for _chunk in response.aiter_raw():
                pass
            status = response.status_code
    else:
        status = (await client.post(url, json=BODY)).status_code
    if status != 200:
        raise RuntimeError(f"{url}: HTTP {status}")
    return time.perf_counter() - start


# ------------------------------------------------------------------ scenarios


def sequential(targets: dict[str, str], n: int, stream: bool) -> dict[str, dict[str, float]]:
    """N requests per target, alternating targets request by request."""
    path = "/v1/chat/completions"
    clients = {name: httpx.Client(timeout=30.0) for name in targets}
    latencies: dict[str, list[float]] = {name: [] for name in targets}
    ttfb: dict[str, list[float]] = {name: [] for name in targets}
    busy: dict[str, float] = dict.fromkeys(targets, 0.0)
    try:
        for name, base in targets.items():  # warm up connections and code paths
            for _ in range(50):
                one_sync(clients[name], base + path, stream)
        for i in range(n):
            order = list(targets.items())
            if i % 2:
                order.reverse()
            for name, base in order:
                total, first = one_sync(clients[name], base + path, stream)
                latencies[name].append(total)
                ttfb[name].append(first)
                busy[name] += total
    finally:
        for client in clients.values():
            client.close()
    result = {}
    for name in targets:
        row = stats(latencies[name], busy[name])
        if stream:
            row["ttfb_p50_ms"] = percentile([x * 1000 for x in ttfb[name]], 50)
            row["ttfb_p99_ms"] = percentile([x * 1000 for x in ttfb[name]], 99)
        result[name] = row
    return result


async def _concurrent_round(
    base: str, total: int, workers: int, stream: bool
) -> tuple[list[float], float]:
    url = base + "/v1/chat/completions"
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    latencies: list[float] = []
    remaining = total
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
        await asyncio.gather(*(one_async(client, url, stream) for _ in range(workers)))  # warm

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                latencies.append(await one_async(client, url, stream))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return latencies, time.perf_counter() - start


def concurrent(
    targets: dict[str, str], total: int, workers: int, stream: bool, rounds: int = 2
) -> dict[str, dict[str, float]]:
    latencies: dict[str, list[float]] = {name: [] for name in targets}
    seconds: dict[str, float] = dict.fromkeys(targets, 0.0)
    per_round = max(1, total // rounds)
    for _ in range(rounds):
        for name, base in targets.items():
            lat, secs = asyncio.run(_concurrent_round(base, per_round, workers, stream))
            latencies[name].extend(lat)
            seconds[name] += secs
    return {name: stats(latencies[name], seconds[name]) for name in targets}


# ------------------------------------------------------------------ report


def added(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    direct, gateway = rows["direct"], rows["gateway"]
    out = {
        key: gateway[key] - direct[key]
        for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")
        if key in direct
    }
    for key in ("ttfb_p50_ms", "ttfb_p99_ms"):
        if key in direct:
            out[key] = gateway[key] - direct[key]
    out["per_second_ratio"] = gateway["per_second"] / direct["per_second"]
    return out


def print_table(results: dict[str, dict[str, Any]]) -> None:
    header = (
        f"{'scenario':<26} {'target':<8} {'n':>6} {'req/s':>8} "
        f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'ttfb p50':>9}"
    )
    print(header)
    print("-" * len(header))
    for scenario, rows in results.items():
        for name in ("direct", "gateway"):
            row = rows[name]
            ttfb = f"{row['ttfb_p50_ms']:>9.2f}" if "ttfb_p50_ms" in row else f"{'':>9}"
            print(
                f"{scenario:<26} {name:<8} {int(row['n']):>6} {row['per_second']:>8.0f} "
                f"{row['p50_ms']:>8.2f} {row['p90_ms']:>8.2f} {row['p99_ms']:>8.2f} {ttfb}"
            )
        add = rows["added"]
        ttfb = f"{add['ttfb_p50_ms']:>+9.2f}" if "ttfb_p50_ms" in add else f"{'':>9}"
        print(
            f"{scenario:<26} {'added':<8} {'':>6} {add['per_second_ratio']:>7.2f}x "
            f"{add['p50_ms']:>+8.2f} {add['p90_ms']:>+8.2f} {add['p99_ms']:>+8.2f} {ttfb}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    parser.add_argument("--requests", type=int, default=None, help="sequential requests (2000)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent workers (16)")
    parser.add_argument(
        "--concurrent-requests", type=int, default=None, help="concurrent requests (4000)"
    )
    parser.add_argument("--tokens", type=int, default=16, help="tokens per completion (16)")
    args = parser.parse_args(argv)
    n = args.requests or (200 if args.quick else 2000)
    k = args.concurrent_requests or (400 if args.quick else 4000)

    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        model_port, gateway_port = free_port(), free_port()
        config = write_config(Path(tmp), model_port, args.tokens)
        gateway = Gateway(config, gateway_port, Path(tmp) / "serve.log")
        model_url = f"http://127.0.0.1:{model_port}"
        targets = {"direct": model_url, "gateway": gateway.url}
        results: dict[str, dict[str, Any]] = {}
        try:
            gateway.wait_ready(model_url)
            scenarios: list[tuple[str, Callable[[], dict[str, dict[str, float]]]]] = [
                ("sequential", lambda: sequential(targets, n, stream=False)),
                ("sequential-stream", lambda: sequential(targets, n, stream=True)),
                (
                    f"concurrent-{args.concurrency}",
                    lambda: concurrent(targets, k, args.concurrency, stream=False),
                ),
                (
                    f"concurrent-{args.concurrency}-stream",
                    lambda: concurrent(targets, k, args.concurrency, stream=True),
                ),
            ]
            for name, scenario in scenarios:
                rows: dict[str, Any] = scenario()
                rows["added"] = added(rows)
                results[name] = rows
        finally:
            status = gateway.stop()
            log = (Path(tmp) / "serve.log").read_text()
        if status != 0:
            print(log, file=sys.stderr)
            print(f"swapcore serve exited with {status}", file=sys.stderr)

    print_table(results)
    if args.json is not None:
        payload = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "quick": args.quick,
            "tokens": args.tokens,
            "concurrency": args.concurrency,
            "serve_exit_status": status,
            "llama_swap_published_figure": None,
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if status == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
