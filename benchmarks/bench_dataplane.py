"""Which server and upstream client: a bare proxy on each, and swapcore's gateway, in one run.

    python benchmarks/bench_dataplane.py [--json PATH] [--quick]

``swapcore serve`` starts one ready fake model (``swapcore.fakemodel``:
16 tokens per completion, 64 per stream). Each variant of
``dataplane_proxy.py`` (the least an ASGI proxy can do: read the body, find
its model, forward, stream back) then runs on an ASGI server with an
upstream client, and the same requests go, alternately, to the model's own
port and through the variant: added p50 latency and the variant's own CPU
(its whole process tree, from ``/proc``) per non-streamed request and per
streamed chunk (a stream's CPU over its 64 events), for streams sent back
to back and for ``paced`` streams (one token a millisecond, as a model
generates them: each chunk then travels alone). The last row is
swapcore's gateway itself on the same model (its own process: its children
are the model servers), so its cost reads against the floor of the
libraries it is built on. Variants whose libraries are not installed are
left out.

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
STREAM_TOKENS = 64  # as bench_gateway's streams; non-streamed answers are 16 tokens

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
    from swapcore.memory import process_tree

    total = 0.0
    for member in process_tree(pid):
        try:
            total += bg.process_cpu(member)
        except OSError:
            continue
    return total


def measure(
    ports: dict[str, int], pid: int, n: int, streams: int, cpu_of: Any = tree_cpu
) -> dict[str, float]:
    """Added p50 and the variant's CPU: non-streamed, streamed, paced streams.

    ``ports`` maps ``direct``, ``paced`` (the paced model's own port) and
    ``gateway`` (the variant's).
    """
    plain = json.dumps({**json.loads(bg.body(False)), "max_tokens": 16}).encode()
    stream = json.dumps({**json.loads(bg.body(True)), "max_tokens": STREAM_TOKENS}).encode()
    fast = {"direct": ports["direct"], "gateway": ports["gateway"]}
    rows = bg.sequential(fast, pid, n, plain, cpu_of)
    srows = bg.sequential(fast, pid, streams, stream, cpu_of)
    paced = json.loads(bg.body(True, model=bg.PACED))
    paced_body = json.dumps({**paced, "max_tokens": STREAM_TOKENS}).encode()
    paced_ports = {"direct": ports["paced"], "gateway": ports["gateway"]}
    prows = bg.sequential(paced_ports, pid, max(10, streams // 10), paced_body, cpu_of)
    return {
        "direct_p50_ms": rows["direct"]["p50_ms"],
        "added_p50_ms": rows["added"]["p50_ms"],
        "added_p99_ms": rows["added"]["p99_ms"],
        "cpu_ms_per_request": rows["gateway_cpu"]["ms_per_request"],
        "stream_added_p50_ms": srows["added"]["p50_ms"],
        "cpu_us_per_chunk": srows["gateway_cpu"]["us_per_chunk"],
        "paced_cpu_us_per_chunk": prows["gateway_cpu"]["us_per_chunk"],
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


def run_variant(name: str, start: int, n: int, streams: int) -> dict[str, float] | None:
    """Measure one variant against the models on ports ``start`` and ``start + 1``."""
    argv, client, needs = VARIANTS[name]
    if any(importlib.util.find_spec(module) is None for module in needs):
        return None
    port = bg.free_port()
    upstreams = {bg.MODEL: f"http://127.0.0.1:{start}", bg.PACED: f"http://127.0.0.1:{start + 1}"}
    env = {**os.environ, "UPSTREAMS": json.dumps(upstreams), "CLIENT": client}
    process = subprocess.Popen(
        [arg.replace("{port}", str(port)) for arg in argv],
        cwd=HERE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(process, port)
        ports = {"direct": start, "paced": start + 1, "gateway": port}
        return measure(ports, process.pid, n, streams)
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
        start = bg.port_block(2)
        config = bg.write_config(Path(tmp), start, STREAM_TOKENS, 0.001)
        gateway = bg.Gateway(config, bg.free_port(), Path(tmp) / "serve.log", bg.ROOT / "src")
        try:
            gateway.wait_ready((start, start + 1))
            for name in VARIANTS:
                row = run_variant(name, start, n, streams)
                if row is not None:
                    results[name] = row
            ports = {"direct": start, "paced": start + 1, "gateway": gateway.port}
            # Its own CPU only: its children are the model servers.
            pid = gateway.process.pid
            results["swapcore serve"] = measure(ports, pid, n, streams, bg.process_cpu)
        finally:
            gateway.stop()
    print(
        f"{'variant':<30} {'direct p50':>10} {'added p50':>10} {'added p99':>10} "
        f"{'CPU/req':>9} {'stream +p50':>11} {'CPU/chunk':>10} {'paced':>9}"
    )
    print("-" * 106)
    for name, row in results.items():
        print(
            f"{name:<30} {row['direct_p50_ms']:>7.3f} ms {row['added_p50_ms']:>+7.3f} ms "
            f"{row['added_p99_ms']:>+7.3f} ms {row['cpu_ms_per_request']:>6.3f} ms "
            f"{row['stream_added_p50_ms']:>+8.3f} ms {row['cpu_us_per_chunk']:>7.1f} us"
            f" {row['paced_cpu_us_per_chunk']:>6.1f} us"
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
