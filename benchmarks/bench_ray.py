"""swapcore on Ray Serve against Ray Serve's own model multiplexing, on one trace, in one run.

    python benchmarks/bench_ray.py [--duration S] [--rate R] [--load S] [--seed N]
                                   [--runs ray,ray-tuned,swapcore] [--json PATH]

Needs the ``ray`` extra. Starts a local Ray cluster of three nodes on this
machine (``ray.cluster_utils.Cluster``), each able to hold one host, and
replays the same generated trace of streaming chat requests over six fake
models (real subprocesses, ``swapcore.fakemodel``, each taking ``--load``
seconds to start) against each set-up in turn:

- ``ray``: Ray Serve's multiplexing as its documentation shows it: a
  deployment of three replicas with ``@serve.multiplexed(
  max_num_models_per_replica=2)`` whose loader starts the fake model, Ray's
  default request router (it prefers replicas that hold the model, falls
  back to those holding the fewest), the LRU eviction of the multiplexing
  wrapper, and Ray's default ``max_ongoing_requests`` (5).
- ``ray-tuned``: the same with ``max_ongoing_requests=1024``, so a busy
  replica is never skipped for one without the model (Ray's best case for
  cold loads).
- ``swapcore``: :func:`swapcore.adapters.ray.build_app` on a llama-swap
  config of the same six models, each host's memory budget holding two.

Every set-up sits behind the same front deployment (the HTTP path is the
same), and its models run the same command. Measured per set-up: cold loads
(fake model processes started, counted from /proc), requests that failed,
the wait (time to the first streamed token, from the client's send) at p50,
p99 and max, and requests per second over the trace. The last row is the
simulator's prediction for swapcore (``swapcore.sim.simulate_cluster``,
fed the measured start-up time of one fake model). Target (issue 14):
fewer cold loads than Ray's own multiplexing, and a p99 wait no worse.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

MODELS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")
WEIGHTS = (0.28, 0.22, 0.17, 0.14, 0.11, 0.08)
HOSTS = 3
PER_HOST = 2
TOKENS = 32
TOKEN_DELAY = 0.025  # a completion streams for 0.8 s: 12 at once are more than 5 slots
RUNS = ("ray", "ray-tuned", "swapcore")


# ----------------------------------------------------------------------- trace


def make_trace(duration: float, rate: float, burst_size: int, seed: int) -> list[tuple[float, str]]:
    """(time, model) pairs: an opening rush, Poisson arrivals with skewed popularity, bursts.

    The rush asks for every model three times within 50 ms (a cluster coming
    up, or redeployed, under traffic); every 8 s, ``burst_size`` requests for
    one model arrive within half a second (more than one replica's default
    ``max_ongoing_requests``).
    """
    rng = random.Random(seed)
    trace = [(0.2 + rng.uniform(0, 0.05), model) for model in MODELS for _ in range(3)]
    t = 0.5
    while True:
        t += rng.expovariate(rate)
        if t >= duration:
            break
        trace.append((t, rng.choices(MODELS, WEIGHTS)[0]))
    burst = 6.0
    while burst < duration:
        model = rng.choice(MODELS)
        trace.extend((burst + rng.uniform(0, 0.5), model) for _ in range(burst_size))
        burst += 8.0
    return sorted(trace)


def fake_command(marker: str, model: str, load: float, port: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "swapcore.fakemodel",
        "--port",
        port,
        "--load",
        str(load),
        "--tokens",
        str(TOKENS),
        "--token-delay",
        str(TOKEN_DELAY),
        "--model-name",
        f"{marker}-{model}",
    ]


def swapcore_config(marker: str, load: float) -> str:
    lines = ["healthCheckTimeout: 120", "startPort: 7300", "models:"]
    for model in MODELS:
        cmd = " ".join(shlex.quote(a) for a in fake_command(marker, model, load, "${PORT}"))
        lines += [
            f"  {model}:",
            f"    cmd: {json.dumps(cmd)}",
            '    proxy: "http://127.0.0.1:${PORT}"',
            "    memory: 8GiB",
            "    concurrencyLimit: 256",  # llama-swap's default (10) would refuse bursts
        ]
    lines += ["swapcore:", f"  memory_budget: {8 * PER_HOST}GiB", "  max_wait: 30"]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------- Ray's own LRU


class FakeServer:
    """One fake model process started by the multiplexing loader; stopped when Ray evicts it."""

    def __init__(self, marker: str, model: str, load: float) -> None:
        self.model = model
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            fake_command(marker, model, load, str(self.port)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    async def ready(self, client: Any) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if (await client.get(f"{self.url}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.model} did not start")

    async def __del__(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        await asyncio.get_running_loop().run_in_executor(None, self.process.wait)


def ray_lru_host(marker: str, load: float) -> Any:
    """The deployment class Ray's documentation suggests: a multiplexed loader, LRU per replica."""
    import httpx

    from ray import serve

    class RayLRUHost:
        def __init__(self) -> None:
            self.client = httpx.AsyncClient(timeout=300)

        @serve.multiplexed(max_num_models_per_replica=PER_HOST)
        async def get_model(self, model_id: str) -> FakeServer:
            server = FakeServer(marker, model_id, load)
            await server.ready(self.client)
            return server

        async def call(self, request: dict[str, Any]) -> AsyncIterator[Any]:
            server = await self.get_model(serve.get_multiplexed_model_id())
            async with self.client.stream(
                request["method"],
                server.url + request["path"],
                content=request["body"],
                headers={"content-type": "application/json"},
            ) as response:
                yield {
                    "status": response.status_code,
                    "headers": [
                        (b"content-type", response.headers.get("content-type", "").encode())
                    ],
                    "report": None,
                }
                async for chunk in response.aiter_raw():
                    yield chunk

    return RayLRUHost


def build_ray_lru(marker: str, load: float, config_text: str, max_ongoing: int | None) -> Any:
    from ray import serve
    from swapcore.adapters.ray import SwapcoreFront

    options: dict[str, Any] = {
        "name": "RayLRUHost",
        "num_replicas": HOSTS,
        "ray_actor_options": {"num_cpus": 0, "resources": {"swaphost": 1}},
        "max_replicas_per_node": 1,
    }
    if max_ongoing is not None:
        options["max_ongoing_requests"] = max_ongoing
    host = serve.deployment(ray_lru_host(marker, load)).options(**options)
    front = serve.deployment(SwapcoreFront).options(
        name="Front", ray_actor_options={"num_cpus": 0, "resources": {"head": 0.01}}
    )
    return front.bind(host.bind(), config_text)


def build_swapcore(config_text: str) -> Any:
    from swapcore.adapters.ray import build_app

    return build_app(
        config_text,
        hosts=HOSTS,
        host_options={
            "ray_actor_options": {"num_cpus": 0, "resources": {"swaphost": 1}},
            "max_replicas_per_node": 1,
        },
        front_options={"ray_actor_options": {"num_cpus": 0, "resources": {"head": 0.01}}},
    )


# -------------------------------------------------------------------- running


class LoadCounter:
    """Counts fake model processes started, by polling /proc for the run's marker."""

    def __init__(self, marker: str) -> None:
        self.needle = marker.encode()
        self.seen: dict[int, str] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def live(self) -> set[int]:
        found = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if self.needle in cmdline and b"swapcore.fakemodel" in cmdline:
                found.add(int(entry))
                if int(entry) not in self.seen:
                    name = cmdline.split(self.needle + b"-")[-1].split(b"\0")[0]
                    self.seen[int(entry)] = name.decode()
        return found

    def run(self) -> None:
        while not self.stop.is_set():
            self.live()
            self.stop.wait(0.05)

    def close(self) -> dict[str, int]:
        self.stop.set()
        self.thread.join()
        loads: dict[str, int] = {}
        for model in self.seen.values():
            loads[model] = loads.get(model, 0) + 1
        return loads


async def replay(url: str, trace: Sequence[tuple[float, str]]) -> list[dict[str, Any]]:
    import httpx

    results: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        start = time.monotonic()

        async def one(at: float, model: str) -> None:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            sent = time.monotonic()
            record: dict[str, Any] = {"model": model, "at": at, "ok": False, "wait": None}
            try:
                async with client.stream(
                    "POST",
                    f"{url}/v1/chat/completions",
                    json={
                        "model": model,
                        "messages": [{"role": "user", "content": "hi"}],
                        "stream": True,
                    },
                ) as response:
                    record["status"] = response.status_code
                    if response.status_code != 200:
                        body = (await response.aread())[:200].decode(errors="replace")
                        record["error"] = f"status {response.status_code}: {body}"
                    done = False
                    async for line in response.aiter_lines():
                        if line.startswith("data: ") and record["wait"] is None:
                            record["wait"] = time.monotonic() - sent
                        if line == "data: [DONE]":
                            done = True
                    record["ok"] = response.status_code == 200 and done
            except Exception as exc:  # a failed request is a result, not a crash
                record["error"] = f"{type(exc).__name__}: {exc}"
            record["end"] = time.monotonic() - start
            results.append(record)

        await asyncio.gather(*(one(at, model) for at, model in trace))
    return results


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run_one(
    name: str, app: Any, url: str, marker: str, trace: Sequence[tuple[float, str]]
) -> dict[str, Any]:
    from ray import serve

    serve.run(app, name=name, route_prefix="/")
    counter = LoadCounter(marker)
    t0 = time.monotonic()
    results = asyncio.run(replay(url, trace))
    elapsed = time.monotonic() - t0
    serve.delete(name)
    deadline = time.monotonic() + 60
    while counter.live() and time.monotonic() < deadline:
        time.sleep(0.1)
    leftover = len(counter.live())
    loads = counter.close()
    ok = [r for r in results if r["ok"]]
    waits = [r["wait"] for r in ok if r["wait"] is not None]
    return {
        "setup": name,
        "requests": len(results),
        "served": len(ok),
        "failed": len(results) - len(ok),
        "cold_loads": sum(loads.values()),
        "loads_by_model": loads,
        "wait_p50": percentile(waits, 0.5),
        "wait_p99": percentile(waits, 0.99),
        "wait_max": max(waits) if waits else float("nan"),
        "rps": len(ok) / elapsed,
        "left_running": leftover,
        "errors": sorted(
            {r.get("error", f"status {r.get('status')}") for r in results if not r["ok"]}
        )[:5],
    }


def measure_start(marker: str, load: float) -> float:
    """Seconds from spawn to /health 200 for one fake model (what a cold load costs here)."""
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    process = subprocess.Popen(
        fake_command(marker, "probe", load, str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            url = f"http://127.0.0.1:{port}/health"
            with contextlib.suppress(Exception), urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - started
            time.sleep(0.02)
    finally:
        process.terminate()
        process.wait()


def simulate(trace: Sequence[tuple[float, str]], config_text: str, load: float) -> dict[str, Any]:
    from swapcore.config import load_config
    from swapcore.config.build import build_planner
    from swapcore.sim import Arrival, ModelProfile, simulate_cluster

    config = load_config(config_text)
    service = TOKENS * TOKEN_DELAY
    arrivals = [Arrival(at=at, model=model, service=service) for at, model in trace]
    report = simulate_cluster(
        arrivals,
        replicas=HOSTS,
        planner=lambda: build_planner(config),
        models={m: ModelProfile(load=load) for m in MODELS},
    )
    return {
        "setup": "swapcore (simulated)",
        "requests": len(arrivals),
        "served": report.served,
        "failed": report.refused,
        "cold_loads": report.total_loads,
        "loads_by_model": dict(report.loads_per_model),
        "wait_p50": report.waits.p50,
        "wait_p99": report.waits.p99,
        "wait_max": report.waits.max,
        "rps": report.served / max(report.makespan, 1e-9),
        "left_running": 0,
        "errors": [],
    }


def table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        f"{'set-up':<22} {'requests':>8} {'failed':>6} {'cold loads':>10}"
        f" {'p50 wait':>9} {'p99 wait':>9} {'max wait':>9} {'req/s':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['setup']:<22} {r['requests']:>8} {r['failed']:>6} {r['cold_loads']:>10} "
            f"{r['wait_p50']:>8.2f}s {r['wait_p99']:>8.2f}s {r['wait_max']:>8.2f}s {r['rps']:>6.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=45.0, help="trace length, seconds")
    parser.add_argument("--rate", type=float, default=4.0, help="mean requests per second")
    parser.add_argument("--burst", type=int, default=12, help="requests per burst (every 8 s)")
    parser.add_argument("--load", type=float, default=2.0, help="a fake model's load time, s")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--runs", default=",".join(RUNS), help="set-ups to run, in order")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    runs = [r for r in args.runs.split(",") if r]
    unknown = sorted(set(runs) - set(RUNS))
    if unknown:
        parser.error(f"--runs: unknown set-up(s) {unknown}; known: {', '.join(RUNS)}")

    from ray.cluster_utils import Cluster

    import ray
    from ray import serve

    trace = make_trace(args.duration, args.rate, args.burst, args.seed)
    print(
        f"trace: {len(trace)} requests over {args.duration:g} s, {len(MODELS)} models, "
        f"{HOSTS} hosts holding {PER_HOST} each; a model loads in {args.load:g} s",
        flush=True,
    )
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "resources": {"head": 1}},
    )
    rows: list[dict[str, Any]] = []
    try:
        for _ in range(HOSTS):
            cluster.add_node(num_cpus=1, resources={"swaphost": 1})
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        url = f"http://127.0.0.1:{port}"
        started = measure_start(f"bench-ray-probe-{uuid.uuid4().hex[:6]}", args.load)
        print(f"one fake model starts in {started:.2f} s here", flush=True)
        for name in runs:
            marker = f"bench-ray-{name}-{uuid.uuid4().hex[:6]}"
            config_text = swapcore_config(marker, args.load)
            if name == "swapcore":
                app = build_swapcore(config_text)
            else:
                app = build_ray_lru(
                    marker, args.load, config_text, 1024 if name == "ray-tuned" else None
                )
            print(f"running {name} ...", flush=True)
            rows.append(run_one(name, app, url, marker, trace))
            print(table(rows[-1:]), flush=True)
        if "swapcore" in runs:
            rows.append(simulate(trace, swapcore_config("sim", args.load), started))
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        with contextlib.suppress(Exception):
            ray.shutdown()
        cluster.shutdown()
    print()
    print(table(rows))
    by = {r["setup"]: r for r in rows}
    if "swapcore" in by and "ray" in by:
        s, r = by["swapcore"], by["ray"]
        print(
            f"\nswapcore / ray: cold loads {s['cold_loads']}/{r['cold_loads']}, "
            f"p99 wait {s['wait_p99'] / r['wait_p99']:.2f}x, failed {s['failed']}/{r['failed']}"
        )
    for row in rows:
        if row["errors"]:
            print(f"{row['setup']} errors: {row['errors']}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                    "trace": {
                        "requests": len(trace),
                        "duration": args.duration,
                        "rate": args.rate,
                        "seed": args.seed,
                        "load": args.load,
                        "measured_start": started,
                    },
                    "results": rows,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
