"""Which server and upstream client: a bare proxy on each, and swapcore's gateway, in one run.

    python benchmarks/bench_dataplane.py [--json PATH] [--quick]

``swapcore serve`` starts one ready fake model (``swapcore.fakemodel``,
16 tokens). Each variant of ``dataplane_proxy.py`` (the least an ASGI proxy
can do: read the body, find its model, forward, stream back) then runs on an
ASGI server with an upstream client, and the same requests go, alternately,
to the model's own port and through the variant: added p50 latency and the
variant's own CPU (its whole process tree, from ``/proc``) per non-streamed
request and per streamed chunk. The last row is swapcore's gateway itself
on the same model, so its cost reads against the floor of the libraries it
is built on. Variants whose libraries are not installed are left out.

The machine is shared: compare rows of one run, never runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bench_gateway as bg

HERE = Path(__file__).resolve().parent

_UVICORN = [sys.executable, "-m", "uvicorn", "dataplane_proxy:app", "--port", "{port}"]
_UVICORN_FAST = [*_UVICORN, "--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]
_UVICORN_PURE = [*_UVICORN, "--loop", "asyncio", "--http", "h11", "--log-level", "warning"]
_GRANIAN = [
    *(sys.executable, "-m", "granian", "--interface", "asgi", "--port", "{port}"),
    *("--loop", "uvloop", "--log-level", "warning", "--no-ws", "dataplane_proxy:app"),
]

#: name -> (server argv, upstream client, modules it needs)
VARIANTS: dict[str, tuple[list[str], str, tuple[str, ...]]] = {
    "uvicorn h11 + httpx": (_UVICORN_PURE, "httpx", ("uvicorn", "h11", "httpx")),
    "uvicorn httptools + httpx": (_UVICORN_FAST, "httpx", ("uvicorn", "httptools", "httpx")),
    "uvicorn httptools + httpcore": (_UVICORN_FAST, "httpcore", ("uvicorn", "httpcore")),
    "uvicorn httptools + aiohttp": (_UVICORN_FAST, "aiohttp", ("uvicorn", "aiohttp")),
    "granian + aiohttp": (_GRANIAN, "aiohttp", ("granian", "aiohttp")),
}


def tree_cpu(pid: int) -> float:
    """CPU seconds used by a process and its live descendants, from /proc."""
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            total += bg.process_cpu(current)
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as file:
                    stack.extend(int(child) for child in file.read().split())
        except OSError:
            continue
    return total


def measure(ports: dict[str, int], pid: int, n: int, streams: int) -> dict[str, float]:
    """Added p50 and the variant's CPU, non-streamed then streamed."""
    plain = json.dumps({**json.loads(bg.body(False)), "max_tokens": 16}).encode()
    stream = json.dumps({**json.loads(bg.body(True)), "max_tokens": 16}).encode()
    rows = bg.sequential(ports, pid, n, plain, tree_cpu)
    srows = bg.sequential(ports, pid, streams, stream, tree_cpu)
    return {
        "direct_p50_ms": rows["direct"]["p50_ms"],
        "added_p50_ms": rows["added"]["p50_ms"],
        "added_p99_ms": rows["added"]["p99_ms"],
        "cpu_ms_per_request": rows["gateway_cpu"]["ms_per_request"],
        "stream_added_p50_ms": srows["added"]["p50_ms"],
        "cpu_us_per_chunk": srows["gateway_cpu"]["us_per_chunk"],
    }


def wait_ready(process: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> None:
    """Until a chat completion through ``port`` succeeds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the proxy exited with {process.returncode}")
        try:
            client = bg.SyncClient(port)
            try:
                client.post(bg.body(False))
                return
            finally:
                client.close()
        except (OSError, RuntimeError):
            time.sleep(0.05)
    raise RuntimeError(f"the proxy on port {port} did not answer in time")


def run_variant(name: str, upstream: int, n: int, streams: int) -> dict[str, float] | None:
    argv, client, needs = VARIANTS[name]
    if any(importlib.util.find_spec(module) is None for module in needs):
        return None
    port = bg.free_port()
    env = {**os.environ, "UPSTREAM": f"http://127.0.0.1:{upstream}", "CLIENT": client}
    process = subprocess.Popen(
        [arg.replace("{port}", str(port)) for arg in argv],
        cwd=HERE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(process, port)
        return measure({"direct": upstream, "gateway": port}, process.pid, n, streams)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    args = parser.parse_args(argv)
    n = 300 if args.quick else 2000
    streams = 100 if args.quick else 500
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dataplane-") as tmp:
        start = bg._free_block(2)
        config = bg.write_config(Path(tmp), start, 16, 0.001)
        gateway = bg.Gateway(config, bg.free_port(), Path(tmp) / "serve.log", bg.ROOT / "src")
        try:
            gateway.wait_ready((start, start + 1))
            for name in VARIANTS:
                row = run_variant(name, start, n, streams)
                if row is not None:
                    results[name] = row
            ports = {"direct": start, "gateway": gateway.port}
            results["swapcore serve"] = measure(ports, gateway.process.pid, n, streams)
        finally:
            gateway.stop()
    print(
        f"{'variant':<30} {'direct p50':>10} {'added p50':>10} {'added p99':>10} "
        f"{'CPU/req':>9} {'stream +p50':>11} {'CPU/chunk':>10}"
    )
    print("-" * 96)
    for name, row in results.items():
        print(
            f"{name:<30} {row['direct_p50_ms']:>7.3f} ms {row['added_p50_ms']:>+7.3f} ms "
            f"{row['added_p99_ms']:>+7.3f} ms {row['cpu_ms_per_request']:>6.3f} ms "
            f"{row['stream_added_p50_ms']:>+8.3f} ms {row['cpu_us_per_chunk']:>7.1f} us"
        )
    if args.json is not None:
        payload = {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "quick": args.quick,
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
