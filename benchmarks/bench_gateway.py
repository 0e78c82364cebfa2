"""Gateway overhead: the same fake upstreams called directly and through ``swapcore serve``.

    python benchmarks/bench_gateway.py [--json PATH] [--quick] [--src PATH]

Starts ``swapcore serve`` (a subprocess) on a config of two fake models
(``swapcore.fakemodel``, uvicorn, preloaded, both loaded at once): ``bench``
streams its tokens back to back, ``paced`` one every millisecond (as a model
generates them). The same requests then go to a model's own port
(``direct``) and to the gateway (``gateway``), from a lean keep-alive
HTTP/1.1 client (raw sockets, so the client's own cost stays small on a
shared machine), in one run:

- ``sequential``: chat completions one after another, alternating direct and
  gateway request by request (drift hits both alike): p50/p99 latency to the
  last byte, and the gateway process's own CPU time per request, read from
  ``/proc/<pid>/stat`` (user + system), not from wall time.
- ``stream`` and ``stream-paced``: streamed completions of
  ``--stream-tokens`` events: latency, the gateway's CPU per stream and per
  streamed chunk (an SSE event the model sent; the gateway may forward
  several that arrive together in one write, counted as ``writes``).
- ``concurrent-16`` and ``concurrent-64``: that many clients for a fixed
  time, direct then gateway, twice: requests per second, latency and the
  gateway's CPU per request.
- ``streams-16``: 16 concurrent streams: streamed chunks (events) per second.
- ``bodies``: six concurrent 60 MB chat bodies sent to the gateway with its
  default body budget (256 MiB): the gateway's peak resident memory
  (``VmHWM``, reset before the phase) and how the requests ended.

``--metrics`` measures instead what the Prometheus metrics cost: two
gateways, one with ``--no-metrics``, each over its own two fake models, in
one run: sequential requests alternating between them (p50 and each
gateway's CPU per request), 16 concurrent clients on each in turn, twice
(requests per second and CPU per request), the CPU of one ``GET
/metrics`` scrape, and, in this process, the router's own CPU per
acquire and release of a ready fake model without and with the metrics
listening (the part of the cost that does not drown in HTTP noise).

The client, the gateway and the upstream share the machine's cores: compare
the two sides of one run (``ratio``), never figures across runs. ``--src``
runs the gateway from another checkout (compare versions in one sitting).
Targets (issue 10): added sequential p50 <= 1 ms; gateway CPU <= 0.5 ms per
non-streamed request and <= 50 us per streamed chunk; peak memory under the
budget + 100 MB.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from system_helpers import port_block  # noqa: E402

MODEL = "bench"
PACED = "paced"
PATH = "/v1/chat/completions"
MiB = 1024 * 1024
BODY_BUDGET_MB = 256  # swapcore serve's default --max-buffered-mb


def body(stream: bool, content: str = "hello gateway", model: str = MODEL) -> bytes:
    payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        payload["stream"] = True
    return json.dumps(payload).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used, from /proc."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


# ------------------------------------------------------------------ a lean client


def _request(target: tuple[str, int], data: bytes) -> bytes:
    host, port = target
    return (
        f"POST {PATH} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\n\r\n"
    ).encode() + data


class _Reader:
    """Reads HTTP/1.1 responses (Content-Length or chunked) off a byte source."""

    def __init__(self) -> None:
        self.buffer = b""

    def parse(self, more: Any) -> tuple[int, bytes, int]:
        """(status, body, chunks); ``more()`` returns the next bytes (b"" at EOF)."""
        while b"\r\n\r\n" not in self.buffer:
            data = more()
            if not data:
                raise ConnectionError("closed before the headers")
            self.buffer += data
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"content-length" in headers:
            size = int(headers[b"content-length"])
            while len(self.buffer) < size:
                data = more()
                if not data:
                    raise ConnectionError("closed mid-body")
                self.buffer += data
            payload, self.buffer = self.buffer[:size], self.buffer[size:]
            return status, payload, 1
        payload, chunks = b"", 0
        while True:
            while b"\r\n" not in self.buffer:
                data = more()
                if not data:
                    raise ConnectionError("closed mid-body")
                self.buffer += data
            line, rest = self.buffer.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(rest) < size + 2:
                data = more()
                if not data:
                    raise ConnectionError("closed mid-body")
                rest += data
            payload += rest[:size]
            self.buffer = rest[size + 2 :]
            if size == 0:
                return status, payload, chunks
            chunks += 1


class SyncClient:
    """One keep-alive connection, blocking."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.sock = socket.create_connection(self.target)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = _Reader()

    def post(self, data: bytes) -> tuple[int, int, int]:
        """(status, SSE events, chunked writes) of one request."""
        self.sock.sendall(_request(self.target, data))
        status, payload, writes = self.reader.parse(lambda: self.sock.recv(65536))
        if status != 200:
            raise RuntimeError(f"HTTP {status}")
        return status, payload.count(b"data: "), writes

    def close(self) -> None:
        self.sock.close()


async def _async_post(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    parser: _Reader,
    target: tuple[str, int],
    data: bytes,
) -> tuple[int, int]:
    writer.write(_request(target, data))
    pending: list[bytes] = []

    def more() -> bytes:
        return pending.pop(0) if pending else b""

    # Parse incrementally: feed what arrives until a whole response parses.
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("closed")
        snapshot = parser.buffer
        parser.buffer += chunk
        try:
            status, payload, _ = parser.parse(more)
        except ConnectionError:
            parser.buffer = snapshot + chunk
            continue
        return status, payload.count(b"data: ")


# ------------------------------------------------------------------ the gateway


def write_config(directory: Path, start_port: int, tokens: int, paced_delay: float) -> Path:
    fake = f"{shlex.quote(sys.executable)} -m swapcore.fakemodel --load 0 --tokens {tokens}"
    text = f"""\
healthCheckTimeout: 30
startPort: {start_port}
models:
  {MODEL}:
    cmd: "{fake} --port ${{PORT}} --model-name {MODEL}"
    proxy: "http://127.0.0.1:${{PORT}}"
    concurrencyLimit: 100000
  {PACED}:
    cmd: "{fake} --port ${{PORT}} --token-delay {paced_delay} --model-name {PACED}"
    proxy: "http://127.0.0.1:${{PORT}}"
    concurrencyLimit: 100000
groups:
  both:
    swap: false
    members: [{MODEL}, {PACED}]
hooks:
  on_startup:
    preload: [{MODEL}, {PACED}]
"""
    path = directory / "bench-gateway.yaml"
    path.write_text(text)
    return path


class Gateway:
    """``swapcore serve`` in a subprocess; stopped with SIGTERM."""

    def __init__(
        self, config: Path, port: int, log: Path, src: Path, extra: Sequence[str] = ()
    ) -> None:
        self.port = port
        self._log = log.open("w")
        env = {**os.environ, "PYTHONPATH": str(src)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                *("-m", "swapcore", "serve", str(config), "--port", str(port), *extra),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def wait_ready(self, model_ports: Sequence[int], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"swapcore serve exited with {self.process.returncode}")
            try:
                for port in (*model_ports, self.port):
                    client = SyncClient(port)
                    try:
                        client.post(body(False))
                    finally:
                        client.close()
                return
            except (OSError, RuntimeError):
                time.sleep(0.05)
        raise RuntimeError("the gateway or its model did not become ready in time")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            self._log.close()


# ------------------------------------------------------------------ scenarios


def sequential(
    ports: dict[str, int], pid: int, n: int, data: bytes, cpu_of: Any = None
) -> dict[str, Any]:
    """Requests one after another, alternating sides; ``cpu_of(pid)`` reads CPU seconds."""
    process_time = cpu_of or process_cpu
    clients = {name: SyncClient(port) for name, port in ports.items()}
    latencies: dict[str, list[float]] = {name: [] for name in ports}
    events = writes = 0
    try:
        for _ in range(100):  # warm up
            for client in clients.values():
                client.post(data)
        cpu = process_time(pid)
        for i in range(n):
            order = list(clients.items()) if i % 2 else list(reversed(clients.items()))
            for name, client in order:
                start = time.perf_counter()
                _, got, wrote = client.post(data)
                latencies[name].append(time.perf_counter() - start)
                if name == "gateway":
                    events += got
                    writes += wrote
        cpu = process_time(pid) - cpu
    finally:
        for client in clients.values():
            client.close()
    rows: dict[str, Any] = {}
    for name, values in latencies.items():
        ms = [v * 1000 for v in values]
        rows[name] = {"n": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}
    rows["added"] = {
        "p50_ms": rows["gateway"]["p50_ms"] - rows["direct"]["p50_ms"],
        "p99_ms": rows["gateway"]["p99_ms"] - rows["direct"]["p99_ms"],
    }
    rows["gateway_cpu"] = {"ms_per_request": cpu / n * 1000}
    if events:
        rows["gateway_cpu"].update(
            chunks_per_stream=events / n,
            writes_per_stream=writes / n,
            us_per_chunk=cpu / events * 1e6,
        )
    return rows


async def _load(port: int, clients: int, seconds: float, data: bytes) -> dict[str, float]:
    target = ("127.0.0.1", port)
    latencies: list[float] = []
    chunk_total = 0
    stop_at = 0.0

    async def worker() -> None:
        nonlocal chunk_total
        reader, writer = await asyncio.open_connection(*target)
        parser = _Reader()
        try:
            await _async_post(reader, writer, parser, target, data)  # warm
            await ready.wait()
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                status, chunks = await _async_post(reader, writer, parser, target, data)
                if status != 200:
                    raise RuntimeError(f"HTTP {status}")
                latencies.append(time.perf_counter() - start)
                chunk_total += chunks
        finally:
            writer.close()

    ready = asyncio.Event()
    tasks = [asyncio.ensure_future(worker()) for _ in range(clients)]
    await asyncio.sleep(0.2)
    began = time.perf_counter()
    stop_at = began + seconds
    ready.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    ms = [v * 1000 for v in latencies]
    return {
        "n": len(ms),
        "per_second": len(ms) / elapsed,
        "chunks_per_second": chunk_total / elapsed,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "mean_ms": statistics.fmean(ms) if ms else float("nan"),
    }


def concurrent(
    ports: dict[str, int], pid: int, clients: int, seconds: float, data: bytes
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
    cpu = 0.0
    for _ in range(2):
        for name, port in ports.items():
            before = process_cpu(pid)
            runs[name].append(_run(_load(port, clients, seconds, data)))
            if name == "gateway":
                cpu += process_cpu(pid) - before
    rows: dict[str, Any] = {}
    for name, results in runs.items():
        n = sum(r["n"] for r in results)
        rows[name] = {
            "n": n,
            "per_second": statistics.fmean(r["per_second"] for r in results),
            "chunks_per_second": statistics.fmean(r["chunks_per_second"] for r in results),
            "p50_ms": statistics.fmean(r["p50_ms"] for r in results),
            "p99_ms": statistics.fmean(r["p99_ms"] for r in results),
        }
    rows["ratio"] = {
        "per_second": rows["gateway"]["per_second"] / rows["direct"]["per_second"],
        "chunks_per_second": (
            rows["gateway"]["chunks_per_second"] / rows["direct"]["chunks_per_second"]
            if rows["direct"]["chunks_per_second"]
            else float("nan")
        ),
    }
    rows["gateway_cpu"] = {"ms_per_request": cpu / rows["gateway"]["n"] * 1000}
    return rows


def bodies(port: int, pid: int, count: int, size_mb: int) -> dict[str, Any]:
    """``count`` concurrent ``size_mb`` MB chat bodies; the gateway's peak memory."""
    content = "x" * (size_mb * 1000 * 1000)
    # max_tokens 1: the fake model answers "You", not an echo of 60 MB.
    data = json.dumps(
        {
            **json.loads(body(False)),
            "max_tokens": 1,
            "messages": [{"role": "user", "content": content}],
        }
    ).encode()
    del content
    rss_before = memory_kib(pid, "VmRSS")
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as file:
            file.write("5")  # reset VmHWM: the peak of this phase only
        reset = True
    except OSError:
        reset = False

    async def send() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_request(("127.0.0.1", port), data))
            status, _ = await _async_post_tail(reader)
            return status
        except ConnectionError:
            return -1
        finally:
            writer.close()

    async def all_of() -> list[int]:
        return list(await asyncio.gather(*(send() for _ in range(count))))

    statuses = _run(all_of())
    peak = memory_kib(pid, "VmHWM")
    outcomes: dict[str, int] = {}
    for status in statuses:
        outcomes[str(status)] = outcomes.get(str(status), 0) + 1
    return {
        "bodies": count,
        "body_mb": size_mb,
        "budget_mb": BODY_BUDGET_MB,
        "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": peak / 1024,
        "peak_reset": reset,
        "margin_over_budget_mb": peak / 1024 - BODY_BUDGET_MB,
        "outcomes": outcomes,
    }


async def _async_post_tail(reader: asyncio.StreamReader) -> tuple[int, int]:
    parser = _Reader()
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("closed")
        snapshot = parser.buffer
        parser.buffer += chunk
        try:
            status, _, chunks = parser.parse(lambda: b"")
        except ConnectionError:
            parser.buffer = snapshot + chunk
            continue
        return status, chunks


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# ------------------------------------------------------------------ metrics on/off


def paired(ports: dict[str, int], pids: dict[str, int], n: int, data: bytes) -> dict[str, Any]:
    """Requests one after another, alternating gateways; each gateway's CPU per request."""
    clients = {name: SyncClient(port) for name, port in ports.items()}
    latencies: dict[str, list[float]] = {name: [] for name in ports}
    try:
        for _ in range(100):  # warm up
            for client in clients.values():
                client.post(data)
        cpu = {name: process_cpu(pid) for name, pid in pids.items()}
        for i in range(n):
            order = list(clients.items()) if i % 2 else list(reversed(clients.items()))
            for name, client in order:
                start = time.perf_counter()
                client.post(data)
                latencies[name].append(time.perf_counter() - start)
        cpu = {name: process_cpu(pid) - cpu[name] for name, pid in pids.items()}
    finally:
        for client in clients.values():
            client.close()
    return {
        name: {
            "n": n,
            "p50_ms": percentile([v * 1000 for v in values], 50),
            "p99_ms": percentile([v * 1000 for v in values], 99),
            "cpu_ms_per_request": cpu[name] / n * 1000,
        }
        for name, values in latencies.items()
    }


def loaded(
    ports: dict[str, int], pids: dict[str, int], clients: int, seconds: float, data: bytes
) -> dict[str, Any]:
    """``clients`` concurrent clients on each gateway in turn, twice; rate and CPU per request."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
    cpu = dict.fromkeys(ports, 0.0)
    for _ in range(2):
        for name, port in ports.items():
            before = process_cpu(pids[name])
            runs[name].append(_run(_load(port, clients, seconds, data)))
            cpu[name] += process_cpu(pids[name]) - before
    return {
        name: {
            "n": sum(r["n"] for r in results),
            "per_second": statistics.fmean(r["per_second"] for r in results),
            "p50_ms": statistics.fmean(r["p50_ms"] for r in results),
            "cpu_ms_per_request": cpu[name] / sum(r["n"] for r in results) * 1000,
        }
        for name, results in runs.items()
    }


def scrapes(port: int, pid: int, count: int) -> dict[str, Any]:
    """``count`` GET /metrics on one keep-alive connection: the gateway's CPU per scrape."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        size = len(connection.getresponse().read())
        cpu = process_cpu(pid)
        for _ in range(count):
            connection.request("GET", "/metrics")
            reply = connection.getresponse()
            reply.read()
            if reply.status != 200:
                raise RuntimeError(f"GET /metrics: HTTP {reply.status}")
        cpu = process_cpu(pid) - cpu
    finally:
        connection.close()
    return {"scrapes": count, "bytes": size, "cpu_ms_per_scrape": cpu / count * 1000}


def router_cost(n: int, rounds: int = 3) -> dict[str, Any]:
    """CPU microseconds per acquire and release on a ready model: metrics off, then on."""
    from swapcore import BaseRouter, GroupPlanner
    from swapcore.adapters.metrics import RouterMetrics
    from swapcore.testing.fakes import FakeProcess

    async def once(listening: bool) -> float:
        router = BaseRouter({"a": FakeProcess("a")}, GroupPlanner({}, models=["a"]))
        if listening:
            RouterMetrics(router).attach()
        async with router:
            async with router.acquire("a"):
                pass
            began = time.process_time()
            for _ in range(n):
                async with router.acquire("a"):
                    pass
            return (time.process_time() - began) / n * 1e6

    async def both() -> dict[str, list[float]]:
        runs: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(rounds):
            for name in runs:
                runs[name].append(await once(name == "on"))
        return runs

    runs = asyncio.run(both())
    return {name: {"us_per_request": min(values)} for name, values in runs.items()}


def metrics_cost(args: argparse.Namespace, n: int, seconds: float) -> dict[str, Any]:
    """Two gateways, metrics off and on, each over its own fake models, measured in one run."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gateway-metrics-") as tmp:
        start = port_block(4)
        gateways: dict[str, Gateway] = {}
        try:
            for index, name in enumerate(("off", "on")):
                directory = Path(tmp) / name
                directory.mkdir()
                config = write_config(directory, start + 2 * index, 16, args.token_delay)
                extra = ("--no-metrics",) if name == "off" else ()
                gateways[name] = Gateway(
                    config, free_port(), directory / "serve.log", args.src, extra
                )
            for index, gateway in enumerate(gateways.values()):
                gateway.wait_ready((start + 2 * index, start + 2 * index + 1))
            ports = {name: g.port for name, g in gateways.items()}
            pids = {name: g.process.pid for name, g in gateways.items()}
            plain = json.dumps({**json.loads(body(False)), "max_tokens": 16}).encode()
            results["sequential"] = paired(ports, pids, n, plain)
            results["concurrent-16"] = loaded(ports, pids, 16, seconds, plain)
            results["scrape"] = scrapes(ports["on"], pids["on"], 20 if args.quick else 200)
        finally:
            statuses = {name: g.stop() for name, g in gateways.items()}
    results["serve_exit_status"] = statuses
    results["router"] = router_cost(max(2000, 5 * n))
    return results


def print_metrics_table(results: dict[str, Any]) -> None:
    print(f"{'metrics':<16} {'off':>22} {'on':>22} {'on/off':>8}")
    print("-" * 72)
    for name, key, unit in (
        ("sequential", "p50_ms", "ms p50"),
        ("sequential", "cpu_ms_per_request", "ms CPU/req"),
        ("concurrent-16", "per_second", "req/s"),
        ("concurrent-16", "cpu_ms_per_request", "ms CPU/req"),
    ):
        off, on = results[name]["off"][key], results[name]["on"][key]
        print(f"{name:<16} {off:>11.3f} {unit:<10} {on:>11.3f} {unit:<10} {on / off:>7.3f}x")
    off, on = results["router"]["off"]["us_per_request"], results["router"]["on"]["us_per_request"]
    print(f"{'router':<16} {off:>11.1f} us CPU/req  {on:>11.1f} us CPU/req  {on / off:>7.3f}x")
    scrape = results["scrape"]
    print(
        f"{'scrape':<16} {scrape['cpu_ms_per_scrape']:.3f} ms CPU per GET /metrics "
        f"({scrape['bytes']} bytes)"
    )


# ------------------------------------------------------------------ report


def print_table(results: dict[str, Any]) -> None:
    print(f"{'scenario':<22} {'direct':>14} {'gateway':>14} {'added/ratio':>12}  gateway CPU")
    print("-" * 96)
    for name in ("sequential", "stream", "stream-paced"):
        rows = results[name]
        cpu = rows["gateway_cpu"]
        note = f"{cpu['ms_per_request']:.3f} ms/req"
        if "us_per_chunk" in cpu:
            note = (
                f"{cpu['ms_per_request']:.3f} ms/stream, {cpu['us_per_chunk']:.1f} us/chunk"
                f" ({cpu['chunks_per_stream']:.0f} chunks in {cpu['writes_per_stream']:.0f} writes)"
            )
        for key in ("p50_ms", "p99_ms"):
            print(
                f"{name + ' ' + key[:3]:<22} {rows['direct'][key]:>11.3f} ms "
                f"{rows['gateway'][key]:>11.3f} ms {rows['added'][key]:>+9.3f} ms  "
                + (note if key == "p50_ms" else "")
            )
    for name, rows in results.items():
        if not name.startswith(("concurrent", "streams")):
            continue
        key = "chunks_per_second" if name.startswith("streams") else "per_second"
        unit = "ch/s" if name.startswith("streams") else "req/s"
        print(
            f"{name:<22} {rows['direct'][key]:>9.0f} {unit:<4} {rows['gateway'][key]:>9.0f} "
            f"{unit:<4} {rows['ratio'][key]:>11.2f}x  {rows['gateway_cpu']['ms_per_request']:.3f}"
            f" ms/req, p99 {rows['direct']['p99_ms']:.1f} vs {rows['gateway']['p99_ms']:.1f} ms"
        )
    mem = results.get("bodies")
    if mem:
        print(
            f"{'bodies':<22} {mem['bodies']} x {mem['body_mb']} MB: peak RSS "
            f"{mem['peak_rss_mb']:.0f} MB (budget {mem['budget_mb']} MB, "
            f"{mem['margin_over_budget_mb']:+.0f} MB), before {mem['rss_before_mb']:.0f} MB, "
            f"outcomes {mem['outcomes']}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    parser.add_argument("--requests", type=int, help="sequential requests per side (3000)")
    parser.add_argument("--seconds", type=float, help="seconds per concurrent run (4)")
    parser.add_argument("--stream-tokens", type=int, default=64, help="tokens per stream (64)")
    parser.add_argument(
        "--token-delay", type=float, default=0.001, help="seconds between paced tokens (0.001)"
    )
    parser.add_argument(
        "--src",
        type=Path,
        default=ROOT / "src",
        help="run the gateway from this source tree (compare versions; default: this checkout)",
    )
    parser.add_argument(
        "--skip-bodies", action="store_true", help="leave out the memory phase (older versions)"
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="only compare two gateways, Prometheus metrics off and on (needs prometheus-client)",
    )
    args = parser.parse_args(argv)
    n = args.requests or (300 if args.quick else 3000)
    seconds = args.seconds or (1.0 if args.quick else 4.0)
    if args.metrics:
        measured = metrics_cost(args, n, seconds)
        print_metrics_table(measured)
        if args.json is not None:
            payload = {"python": platform.python_version(), "cpus": os.cpu_count(), **measured}
            args.json.write_text(json.dumps(payload, indent=2) + "\n")
        return 0 if set(measured["serve_exit_status"].values()) == {0} else 1

    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        start_port = port_block(2)
        config = write_config(Path(tmp), start_port, args.stream_tokens, args.token_delay)
        gateway_port = free_port()
        gateway = Gateway(config, gateway_port, Path(tmp) / "serve.log", args.src)
        pid = gateway.process.pid
        bench = {"direct": start_port, "gateway": gateway_port}  # ports sort by model id
        paced = {"direct": start_port + 1, "gateway": gateway_port}
        results: dict[str, Any] = {}
        try:
            gateway.wait_ready((start_port, start_port + 1))
            # max_tokens keeps non-streamed answers short whatever --stream-tokens is.
            plain = json.dumps({**json.loads(body(False)), "max_tokens": 16}).encode()
            streams = max(50, n // 10)
            results["sequential"] = sequential(bench, pid, n, plain)
            results["stream"] = sequential(bench, pid, streams, body(True))
            results["stream-paced"] = sequential(
                paced, pid, max(20, streams // 5), body(True, model=PACED)
            )
            for clients in (16, 64):
                results[f"concurrent-{clients}"] = concurrent(bench, pid, clients, seconds, plain)
            results["streams-16"] = concurrent(bench, pid, 16, seconds, body(True))
            if not args.skip_bodies:
                results["bodies"] = bodies(gateway_port, pid, 6, 60)
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
            "stream_tokens": args.stream_tokens,
            "token_delay": args.token_delay,
            "serve_exit_status": status,
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if status == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
