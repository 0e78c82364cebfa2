"""Load and fault test: many clients against ``swapcore serve`` with swapping fake models.

``swapcore serve`` runs as a subprocess over three fake models (0.2 s loads)
in one swapping group, so requests for different models force swaps. Clients
send chat completions (a third streaming) to random models while a chaos task
unloads models, crashes the running upstream and abandons requests midway.
Every request must end in success or a documented error (429, 502, 503 with an
OpenAI-style body, or an in-band ``error`` event once a stream has begun);
none may hang; after the load nothing is left in flight or queued; after
SIGTERM the gateway exits 0 and no model process is left.

CI runs a short version (50 clients, 300 requests). ``SWAPCORE_FULL_LOAD=1``
runs the full one (200 clients, 2,000 requests). ``SWAPCORE_LOAD_REPORT=PATH``
writes the figures (requests/s, outcomes by kind, loads) as JSON.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from system_helpers import alive, free_port, pids_with, port_block

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)"),
]

FULL = os.environ.get("SWAPCORE_FULL_LOAD") == "1"
CLIENTS, REQUESTS = (200, 2000) if FULL else (50, 300)
MODELS = ("a", "b", "c")
REQUEST_TIMEOUT = 60.0  # no request may take longer: a hang fails the test
OVERALL_TIMEOUT = 600.0 if FULL else 180.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
CONCURRENCY_LIMIT = 80
DOCUMENTED = {429, 502, 503}


# ------------------------------------------------------------------ helpers


def write_config(path: Path, marker: str, max_wait: float | None = None) -> None:
    fake = f"{shlex.quote(sys.executable)} -m swapcore.fakemodel"
    models = "".join(
        f"""\
  {m}:
    cmd: "{fake} --port ${{PORT}} --load 0.2 --tokens 8 --token-delay 0.002 \
--model-name {marker}-${{MODEL_ID}}"
    proxy: "http://127.0.0.1:${{PORT}}"
"""
        for m in MODELS
    )
    # No groups: every model is in "(default)", which swaps, so one runs at a time.
    # max_wait None is llama-swap's own behaviour; a short one must keep collating
    # under saturation (it once collapsed to a load per request or two).
    bound = "" if max_wait is None else f"  max_wait: {max_wait}\n"
    path.write_text(
        f"""\
healthCheckTimeout: 15
startPort: {port_block(len(MODELS))}
models:
{models}swapcore:
  default_concurrency_limit: {CONCURRENCY_LIMIT}
{bound}"""
    )


@contextlib.contextmanager
def serve(config: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "swapcore", "serve", str(config), "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            yield process, f"http://127.0.0.1:{port}", log
        finally:
            if process.poll() is None:  # the test failed: still stop the models cleanly
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=STOP_TIMEOUT)


def wait_healthy(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, "swapcore serve exited early"
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("swapcore serve did not answer /health in time")


def is_openai_error(payload: object) -> bool:
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), dict):
        return False
    error = payload["error"]
    return isinstance(error.get("message"), str) and isinstance(error.get("type"), str)


# ------------------------------------------------------------------ the load


class Outcomes:
    """What happened to every request, by kind."""

    def __init__(self) -> None:
        self.kinds: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self.latencies: list[float] = []

    def bad(self, what: str) -> None:
        self.kinds["failure"] += 1
        if len(self.failures) < 20:
            self.failures.append(what)


async def one_request(
    client: Any, url: str, rng: random.Random, outcomes: Outcomes, abandon: bool
) -> None:
    model = rng.choice(MODELS)
    stream = rng.random() < 1 / 3
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"hello {model}"}],
        "stream": stream,
    }
    began = time.monotonic()
    try:
        if abandon:
            # A client that leaves: before the answer (waiting or being served).
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    client.post(f"{url}/v1/chat/completions", json=body), rng.uniform(0.01, 0.5)
                )
            outcomes.kinds["abandoned"] += 1
            return
        if stream:
            await stream_request(client, url, body, outcomes)
        else:
            response = await client.post(f"{url}/v1/chat/completions", json=body)
            classify(response.status_code, response.content, model, outcomes)
    except httpx.TimeoutException:
        outcomes.bad(f"{model} stream={stream}: timed out (hung) after {REQUEST_TIMEOUT} s")
    except httpx.HTTPError as exc:
        outcomes.bad(f"{model} stream={stream}: {type(exc).__name__}: {exc}")
    else:
        outcomes.latencies.append(time.monotonic() - began)


def classify(status: int, content: bytes, model: str, outcomes: Outcomes) -> None:
    try:
        payload = json.loads(content)
    except ValueError:
        outcomes.bad(f"HTTP {status}: not JSON: {content[:200]!r}")
        return
    if status == 200:
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if choices and choices[0]["message"]["content"]:
            outcomes.kinds["ok"] += 1
        else:
            outcomes.bad(f"HTTP 200 without a completion: {content[:200]!r}")
    elif status in DOCUMENTED and is_openai_error(payload):
        outcomes.kinds[f"{status} {payload['error'].get('code')}"] += 1
    else:
        outcomes.bad(f"HTTP {status}: {content[:300]!r}")


async def stream_request(client: Any, url: str, body: dict[str, Any], outcomes: Outcomes) -> None:
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        content = b"".join([chunk async for chunk in response.aiter_raw()])
        status = response.status_code
    if status != 200:
        classify(status, content, body["model"], outcomes)
        return
    events = [
        block.removeprefix(b"data: ")
        for block in content.split(b"\n\n")
        if block.startswith(b"data: ")
    ]
    if events and events[-1] == b"[DONE]":
        text = "".join(
            json.loads(e)["choices"][0]["delta"].get("content") or ""
            for e in events[:-1]
            if json.loads(e).get("choices")
        )
        if text:
            outcomes.kinds["ok stream"] += 1
        else:
            outcomes.bad(f"stream without content: {content[:300]!r}")
        return
    last = json.loads(events[-1]) if events else None
    if is_openai_error(last):
        # Once a stream has begun, errors arrive in-band (docs/gateway.md).
        assert isinstance(last, dict)
        outcomes.kinds[f"stream error {last['error'].get('code')}"] += 1
    else:
        outcomes.bad(f"stream ended without [DONE] or error: {content[-300:]!r}")


async def chaos(client: Any, url: str, stop: asyncio.Event, rng: random.Random) -> dict[str, int]:
    """Unload models and crash the running upstream now and then, until told to stop."""
    done: collections.Counter[str] = collections.Counter()
    actions = itertools.cycle(["crash", "unload-one", "crash", "unload-all"])
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(0.8, 1.6))
        if stop.is_set():
            break
        action = next(actions)
        try:
            if action == "unload-one":
                await client.post(f"{url}/unload/{rng.choice(MODELS)}")
            elif action == "unload-all":
                await client.post(f"{url}/unload")
            else:
                running = (await client.get(f"{url}/running")).json()["running"]
                ready = [r["model"] for r in running if r["state"] == "ready"]
                if not ready:
                    continue
                # The fake exits at once, without answering: the gateway says 502.
                await client.post(f"{url}/upstream/{ready[0]}/fake/crash")
        except httpx.HTTPError:
            pass
        done[action] += 1
    return dict(done)


async def run_load(url: str) -> dict[str, Any]:
    rng = random.Random(20240601)
    outcomes = Outcomes()
    # Idle connections expire on our side before uvicorn's 5 s keep-alive timeout
    # closes them: reusing one the server is closing would be a client-side race.
    limits = httpx.Limits(
        max_connections=CLIENTS + 8, max_keepalive_connections=CLIENTS + 8, keepalive_expiry=2.0
    )
    timeout = httpx.Timeout(REQUEST_TIMEOUT, connect=10.0)
    remaining = REQUESTS
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def worker(seed: int) -> None:
            nonlocal remaining
            local = random.Random(seed)
            while remaining > 0:
                remaining -= 1
                await one_request(client, url, local, outcomes, abandon=local.random() < 0.03)

        stop = asyncio.Event()
        chaos_task = asyncio.ensure_future(chaos(client, url, stop, random.Random(7)))
        began = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(*(worker(rng.randrange(1 << 30)) for _ in range(CLIENTS))),
            OVERALL_TIMEOUT,
        )
        elapsed = time.monotonic() - began
        stop.set()
        chaos_actions = await asyncio.wait_for(chaos_task, 30)
    latencies = sorted(outcomes.latencies)
    return {
        "clients": CLIENTS,
        "requests": REQUESTS,
        "seconds": round(elapsed, 3),
        "requests_per_second": round(REQUESTS / elapsed, 1),
        "outcomes": dict(sorted(outcomes.kinds.items())),
        "failures": outcomes.failures,
        "latency_p50_s": round(latencies[len(latencies) // 2], 4) if latencies else None,
        "latency_p99_s": round(latencies[int(len(latencies) * 0.99)], 4) if latencies else None,
        "latency_max_s": round(latencies[-1], 4) if latencies else None,
        "chaos": chaos_actions,
    }


def settled(url: str) -> bool:
    running = httpx.get(f"{url}/running", timeout=5).json()["running"]
    return all(r["in_flight"] == 0 and r["queued"] == 0 and r["waiting"] == 0 for r in running)


# ------------------------------------------------------------------ the test


@pytest.fixture
def marker() -> Iterator[str]:
    mark = f"swapcore-load-test-{uuid.uuid4().hex[:10]}"
    yield mark
    for pid in pids_with(mark):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("max_wait", [None, 2.0], ids=["no-max-wait", "max-wait-2s"])
def test_load_and_faults(marker: str, tmp_path: Path, max_wait: float | None) -> None:
    config = tmp_path / "config.yaml"
    write_config(config, marker, max_wait)
    seen: set[int] = set()
    with serve(config, tmp_path) as (process, url, log):
        wait_healthy(process, url)
        report = asyncio.run(run_load(url))
        seen |= pids_with(marker)

        # Nothing leaked: abandoned and failed requests left no count behind.
        deadline = time.monotonic() + 15
        while not settled(url):
            assert time.monotonic() < deadline, httpx.get(f"{url}/running").text
            time.sleep(0.1)
        # The gateway still serves every model after the storm.
        for model in MODELS:
            response = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "after"}]},
                timeout=REQUEST_TIMEOUT,
            )
            assert response.status_code == 200, response.text
            seen |= pids_with(marker)

        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=STOP_TIMEOUT)
        text = log.read_text()

    report["loads"] = sum("swapcore.groups: swap to" in line for line in text.splitlines())
    report["crashes_noticed"] = text.count("exited unexpectedly")
    report["serve_exit_status"] = status
    print("\nload report:", json.dumps(report, indent=2))
    if os.environ.get("SWAPCORE_LOAD_REPORT"):
        Path(os.environ["SWAPCORE_LOAD_REPORT"]).write_text(json.dumps(report, indent=2) + "\n")

    assert report["failures"] == [], report
    outcomes = report["outcomes"]
    assert sum(outcomes.values()) == REQUESTS
    assert outcomes.get("ok", 0) + outcomes.get("ok stream", 0) > REQUESTS // 3, outcomes
    # Collation works: a load serves several requests (thrashing would be ~1 each).
    assert 2 <= report["loads"] <= REQUESTS // 4, report
    assert status == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert pids_with(marker) == set()
    assert not any(alive(pid) for pid in seen), "a model process outlived the gateway"
