"""Soak: many clients against ``swapcore serve`` while models crash, hang and get killed.

    python benchmarks/soak.py [--clients 200] [--seconds 60] [--quick] [--json PATH]

``swapcore serve`` runs as a subprocess, on 127.0.0.1 only, over four models
that cannot all be loaded (one swapping group): three ``swapcore.fakemodel``
servers and, when llama-cpp-python[server] and gguf are installed, a real
engine (``llama_cpp.server`` serving a tiny random-weight llama GGUF written
with ``gguf``; otherwise a fourth fake model, and the report says so).
Clients send chat completions to random models, a third of them streamed,
for ``--seconds``. Meanwhile:

- a chaos task ``kill -9``s a random running model every ``--kill-every``
  seconds;
- some requests to model ``a`` carry the fake model's hang marker: the
  upstream stops sending mid-stream, and ``timeouts.read`` (2 s) must end
  them and free the group;
- at the end the gateway gets SIGTERM while requests are still open, with a
  graceful timeout shorter than some of them, so the shutdown contract is
  exercised too.

Every request is classified: ``ok`` (a complete answer: 200 with a body
that parses, or a stream ending in ``[DONE]``), an error by its code (a
JSON error, or an ``error`` event once a stream has begun), ``lost`` (no
answer at all, or a body cut short with no error), ``hung`` (no end within
``--request-timeout``), ``plain_500`` (a 5xx whose body is not JSON). After
the gateway exits: ``orphans`` (model processes still alive 3 s later) and
``tracebacks`` (in the gateway's log). It prints a table and, with
``--json``, writes the figures. The test suite runs a short profile
(``run(quick_profile())``) and requires 0 lost, 0 hung, 0 orphans, 0 plain
500s and 0 tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from swapcore.fakemodel import HANG_MARKER  # noqa: E402
from system_helpers import model_pids, port_block  # noqa: E402

FAKES = ("a", "b", "c")
ENGINE = "tiny"
READ_TIMEOUT = 2.0


@dataclass
class Profile:
    """How hard the soak pushes."""

    clients: int = 200
    seconds: float = 60.0
    kill_every: float = 3.0
    hang_share: float = 0.01  # of requests to model a
    request_timeout: float = 90.0
    graceful_timeout: int = 2
    load: float = 0.3  # fake models' load time
    seed: int = 0


def quick_profile() -> Profile:
    """The short profile the test suite runs (about 20 s on 2 cores)."""
    return Profile(clients=40, seconds=10.0, kill_every=2.0, hang_share=0.05, request_timeout=60)


@dataclass
class Report:
    """What the soak saw."""

    engine: bool = False
    requests: int = 0
    ok: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    lost: int = 0
    lost_kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    hung: int = 0
    refused: int = 0  # never accepted: the gateway had stopped listening (after its SIGTERM)
    plain_500: int = 0
    kills: int = 0
    orphans: int = 0
    tracebacks: int = 0
    exit_status: int | None = None
    stopping: bool = False  # the gateway got its SIGTERM: clients start nothing new
    latencies: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def q(p: float) -> float | None:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else None

        return {
            "engine": self.engine,
            "requests": self.requests,
            "ok": self.ok,
            "errors": dict(self.errors),
            "lost": self.lost,
            "lost_kinds": dict(self.lost_kinds),
            "hung": self.hung,
            "refused": self.refused,
            "plain_500": self.plain_500,
            "kills": self.kills,
            "orphans": self.orphans,
            "tracebacks": self.tracebacks,
            "exit_status": self.exit_status,
            "p50_s": q(0.50),
            "p99_s": q(0.99),
        }


def _engine_available() -> bool:
    try:
        from engine_helpers import missing_engine_module
    except ImportError:
        return False
    return missing_engine_module() is None


def write_config(directory: Path, marker: str, profile: Profile) -> tuple[Path, bool]:
    """The soak's config: four models in one swapping group; True when one is a real engine."""
    fake = f"{shlex.quote(sys.executable)} -m swapcore.fakemodel"
    models = "".join(
        f"""\
  {m}:
    cmd: "{fake} --port ${{PORT}} --load {profile.load} --tokens 12 --token-delay 0.005
      --model-name {marker}-{m}"
    proxy: "http://127.0.0.1:${{PORT}}"
    timeouts:
      read: {READ_TIMEOUT}
"""
        for m in FAKES
    )
    engine = _engine_available()
    if engine:
        from engine_helpers import engine_cmd_string, write_tiny_llama

        path = write_tiny_llama(directory / f"{marker}.gguf")
        command = engine_cmd_string(path, extra=["--verbose", "false"]).replace('"', '\\"')
        models += f"""\
  {ENGINE}:
    cmd: "{command}"
    proxy: "http://127.0.0.1:${{PORT}}"
    checkEndpoint: /v1/models
    timeouts:
      read: 30
"""
    else:
        models += f"""\
  {ENGINE}:
    cmd: "{fake} --port ${{PORT}} --load {profile.load} --model-name {marker}-{ENGINE}"
    proxy: "http://127.0.0.1:${{PORT}}"
"""
    path = directory / "soak.yaml"
    path.write_text(
        f"""\
healthCheckTimeout: 30
startPort: {port_block(4)}
models:
{models}swapcore:
  default_concurrency_limit: {profile.clients * 2}
  max_wait: 10
"""
    )
    return path, engine


async def _one(
    session: Any, url: str, model: str, stream: bool, hang: bool, profile: Profile, report: Report
) -> None:
    import aiohttp

    content = f"hello {HANG_MARKER}" if hang else "hello"
    payload = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        payload["stream"] = True
    if model == ENGINE:
        payload["max_tokens"] = 8
    start = time.monotonic()
    report.requests += 1

    async def call() -> tuple[int, str, bytes]:
        async with session.post(f"{url}/v1/chat/completions", json=payload) as response:
            return response.status, response.headers.get("content-type", ""), await response.read()

    try:
        status, content_type, raw = await asyncio.wait_for(call(), profile.request_timeout)
    except asyncio.TimeoutError:
        report.hung += 1
        return
    except aiohttp.ClientConnectorError:
        report.refused += 1  # not accepted at all: nothing was lost
        return
    except aiohttp.ClientError as exc:
        report.lost += 1  # no answer, or a body cut short with no error
        report.lost_kinds[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
        return
    _classify(report, status, content_type, raw, time.monotonic() - start)


def _classify(report: Report, status: int, content_type: str, raw: bytes, took: float) -> None:
    if content_type.startswith("text/event-stream"):
        events = [
            line[6:]
            for line in raw.decode("utf-8", "replace").splitlines()
            if line.startswith("data: ")
        ]
        if events and events[-1] == "[DONE]":
            report.ok += 1
            report.latencies.append(took)
            return
        try:
            last = json.loads(events[-1]) if events else None
        except ValueError:
            last = None
        if isinstance(last, dict) and isinstance(last.get("error"), dict):
            report.errors[str(last["error"].get("code"))] += 1
        else:
            report.lost += 1  # a stream that ended with neither [DONE] nor an error
            report.lost_kinds[f"stream without an end ({status})"] += 1
        return
    try:
        body = json.loads(raw)
    except ValueError:
        if status >= 500:
            report.plain_500 += 1
        else:
            report.lost += 1
            report.lost_kinds[f"HTTP {status}, not JSON"] += 1
        return
    if status == 200:
        report.ok += 1
        report.latencies.append(took)
    elif isinstance(body, dict) and isinstance(body.get("error"), dict):
        report.errors[f"{status} {body['error'].get('code')}"] += 1
    elif status >= 500:
        report.plain_500 += 1
    else:
        report.errors[f"{status} (upstream)"] += 1


async def _drive(url: str, marker: str, profile: Profile, report: Report, stop_at: float) -> None:
    import aiohttp

    rng = random.Random(profile.seed)
    models = (*FAKES, ENGINE)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            while time.monotonic() < stop_at and not report.stopping:
                model = rng.choice(models)
                hang = model == "a" and rng.random() < profile.hang_share
                stream = hang or rng.random() < 1 / 3
                await _one(session, url, model, stream, hang, profile, report)

        async def chaos() -> None:
            while time.monotonic() < stop_at:
                await asyncio.sleep(profile.kill_every)
                pids = model_pids(marker)
                if pids:
                    try:
                        os.kill(rng.choice(pids), signal.SIGKILL)
                        report.kills += 1
                    except ProcessLookupError:
                        pass

        await asyncio.gather(chaos(), *(client() for _ in range(profile.clients)))


async def _soak(
    url: str, gateway: subprocess.Popen[bytes], marker: str, profile: Profile, report: Report
) -> None:
    stop_at = time.monotonic() + profile.seconds
    driving = asyncio.ensure_future(_drive(url, marker, profile, report, stop_at))
    # SIGTERM while the last requests are still open (the shutdown contract).
    await asyncio.sleep(max(0.0, stop_at - time.monotonic() - 0.5))
    gateway.send_signal(signal.SIGTERM)
    report.stopping = True
    await driving


def run(profile: Profile, *, log_path: Path | None = None) -> Report:
    """Run one soak and return its report."""
    report = Report()
    marker = f"soak-{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="swapcore-soak-") as tmp:
        directory = Path(tmp)
        config, report.engine = write_config(directory, marker, profile)
        log = log_path or directory / "serve.log"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        if report.engine:
            from engine_helpers import engine_env

            env = {**engine_env(), "PYTHONPATH": str(ROOT / "src")}
        with log.open("w") as sink:
            gateway = subprocess.Popen(
                [
                    sys.executable, "-m", "swapcore", "serve", str(config),
                    "--port", str(port),
                    "--graceful-timeout", str(profile.graceful_timeout),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )  # fmt: skip
            try:
                url = f"http://127.0.0.1:{port}"
                _wait_listening(port, gateway)
                asyncio.run(_soak(url, gateway, marker, profile, report))
                report.exit_status = gateway.wait(timeout=120)
            finally:
                if gateway.poll() is None:
                    gateway.kill()
                    gateway.wait()
        deadline = time.monotonic() + 3.0
        while model_pids(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        report.orphans = len(model_pids(marker))
        for pid in model_pids(marker):  # leave nothing behind even when the soak fails
            os.kill(pid, signal.SIGKILL)
        report.tracebacks = log.read_text(errors="replace").count("Traceback")
    return report


def _wait_listening(port: int, gateway: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.poll() is not None:
            raise RuntimeError(f"swapcore serve exited early with {gateway.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("swapcore serve did not listen in time")


def print_report(report: Report, profile: Profile) -> None:
    s = report.summary()
    engine = "a real llama.cpp engine" if s["engine"] else "a fake (llama-cpp-python not installed)"
    print(f"soak: {profile.clients} clients, {profile.seconds:g} s, 4 models ({engine} among them)")
    for key in (
        "requests", "ok", "lost", "hung", "refused", "plain_500", "orphans", "tracebacks", "kills"
    ):  # fmt: skip
        print(f"  {key:<12} {s[key]}")
    print(f"  {'exit status':<12} {s['exit_status']}")
    for code, count in sorted(s["errors"].items(), key=lambda kv: -kv[1]):
        print(f"  error {code:<30} {count}")
    for kind, count in sorted(s["lost_kinds"].items(), key=lambda kv: -kv[1]):
        print(f"  lost: {kind:<60} {count}")
    if s["p50_s"] is not None:
        print(f"  ok latency   p50 {s['p50_s'] * 1000:.0f} ms, p99 {s['p99_s'] * 1000:.0f} ms")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients (200)")
    parser.add_argument("--seconds", type=float, default=None, help="how long to run (60)")
    parser.add_argument("--kill-every", type=float, default=None, help="seconds between kills")
    parser.add_argument("--quick", action="store_true", help="the test suite's short profile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    profile = quick_profile() if args.quick else Profile()
    profile.seed = args.seed
    if args.clients is not None:
        profile.clients = args.clients
    if args.seconds is not None:
        profile.seconds = args.seconds
    if args.kill_every is not None:
        profile.kill_every = args.kill_every
    report = run(profile)
    print_report(report, profile)
    if args.json is not None:
        args.json.write_text(json.dumps(report.summary(), indent=2) + "\n")
    bad = report.lost + report.hung + report.orphans + report.plain_500 + report.tracebacks
    return 0 if bad == 0 and report.exit_status == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
