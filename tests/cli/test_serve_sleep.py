"""``swapcore serve`` with ``sleepMode``: an evicted model sleeps and wakes in the same process.

Real subprocesses on 127.0.0.1 (the gateway and fake models in vLLM's sleep
mode); the helpers come from test_serve.py. No test asserts a duration (the
benchmark ``benchmarks/bench_sleep.py`` times it); every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_serve import START_TIMEOUT, Serve, chat, marker, model_pids  # noqa: F401

from system_helpers import port_block

httpx = pytest.importorskip("httpx")
pytest.importorskip("aiohttp")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")


def sleepy_config(mark: str, start_port: int, *, extra: str = "") -> str:
    fake = (
        f"{shlex.quote(sys.executable)} -m swapcore.fakemodel --load 0.3 --sleep-mode"
        " --sleep-time 0.01 --wake-time 0.05"
    )
    return f"""\
healthCheckTimeout: 15
startPort: {start_port}
models:
  a:
    cmd: "{fake} --port ${{PORT}} --model-name {mark}-a"
    proxy: "http://127.0.0.1:${{PORT}}"
    sleepMode: {{level: 1}}
    hostMemory: 16GiB
  b:
    cmd: "{fake} --port ${{PORT}} --model-name {mark}-b"
    proxy: "http://127.0.0.1:${{PORT}}"
    sleepMode: {{level: 1}}
    hostMemory: 16GiB
groups:
  chat:
    swap: true
    members: [a, b]
{extra}"""


def stats(port: int) -> Any:
    return httpx.get(f"http://127.0.0.1:{port}/fake/stats", timeout=5).json()


def running(url: str) -> dict[str, Any]:
    entries = httpx.get(f"{url}/running", timeout=5).json()["running"]
    return {entry["model"]: entry for entry in entries}


def test_a_b_a_wakes_a_in_the_same_process(marker: str, tmp_path: Path) -> None:  # noqa: F811
    start = port_block(2)
    path = tmp_path / "config.yaml"
    path.write_text(sleepy_config(marker, start, extra="swapcore:\n  costs_file: costs.json\n"))
    serve = Serve(tmp_path, str(path))
    try:
        serve.wait_healthy()
        chat(serve.url, "a")
        pid_a = stats(start)["pid"]
        chat(serve.url, "b")  # a is evicted: asleep, alive
        now = running(serve.url)
        assert now["a"]["state"] == "sleeping" and now["b"]["state"] == "ready"
        assert stats(start)["sleep_state"] == "asleep"
        assert model_pids(marker)["a"] == {pid_a}
        chat(serve.url, "a")  # a wakes; b sleeps
        a_stats = stats(start)
        assert (a_stats["pid"], a_stats["sleeps"], a_stats["wakes"]) == (pid_a, 1, 1)
        now = running(serve.url)
        assert now["a"]["state"] == "ready" and now["b"]["state"] == "sleeping"
        costs = now["a"]["costs"]
        assert costs["wake"]["measured"] == 1 and costs["wake"]["source"] == "measured"
        assert costs["load"]["measured"] == 1 and costs["sleep"]["measured"] == 1
        assert costs["wake"]["seconds"] < costs["load"]["seconds"]
    finally:
        assert serve.stop() == 0
    saved = json.loads((tmp_path / "costs.json").read_text())
    assert set(saved["models"]["a"]) == {"load", "sleep", "wake"}
    assert not model_pids(marker)  # the sleepers were stopped with the gateway
    # A restart remembers what was learned.
    serve = Serve(tmp_path, str(path))
    try:
        serve.wait_healthy()
        assert running(serve.url) == {}
        listed = httpx.get(f"{serve.url}/running", timeout=5).json()
        assert listed == {"running": [], "evictions": []}
        chat(serve.url, "a")
        assert running(serve.url)["a"]["costs"]["wake"]["measured"] == 1
    finally:
        assert serve.stop() == 0


def test_a_host_budget_for_one_sleeper_stops_the_other(
    marker: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    start = port_block(2)
    path = tmp_path / "config.yaml"
    path.write_text(sleepy_config(marker, start, extra="swapcore:\n  host_memory_budget: 20GiB\n"))
    serve = Serve(tmp_path, str(path))
    try:
        serve.wait_healthy()
        chat(serve.url, "a")
        chat(serve.url, "b")  # a sleeps (16 of 20 GiB)
        chat(serve.url, "a")  # a is still asleep while b leaves: b must stop
        now = running(serve.url)
        assert now["a"]["state"] == "ready" and "b" not in now
        assert "b" not in model_pids(marker)
    finally:
        assert serve.stop() == 0


def test_a_model_that_dies_asleep_starts_cold(marker: str, tmp_path: Path) -> None:  # noqa: F811
    start = port_block(2)
    path = tmp_path / "config.yaml"
    path.write_text(sleepy_config(marker, start))
    serve = Serve(tmp_path, str(path))
    try:
        serve.wait_healthy()
        chat(serve.url, "a")
        old = stats(start)["pid"]
        chat(serve.url, "b")
        with contextlib.suppress(httpx.TransportError):  # it dies without answering
            httpx.post(f"http://127.0.0.1:{start}/fake/crash", timeout=5)
        assert chat(serve.url, "a")["choices"][0]["message"]["content"]
        after = stats(start)
        assert after["pid"] != old and after["wakes"] == 0  # started cold, not woken
    finally:
        assert serve.stop() == 0


def test_a_recorded_day_replays_with_its_cold_loads_and_wakes(
    marker: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    start = port_block(2)
    path = tmp_path / "config.yaml"
    path.write_text(sleepy_config(marker, start))
    trace = tmp_path / "day.jsonl"
    serve = Serve(tmp_path, str(path), "--record-trace", str(trace))
    try:
        serve.wait_healthy()
        for model in "ababa":
            chat(serve.url, model)
    finally:
        assert serve.stop() == 0
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    swaps = [r["swap"] for r in records if "swap" in r]
    assert [(s["model"], s["wake"]) for s in swaps] == [
        ("a", False),
        ("b", False),
        ("a", True),
        ("b", True),
        ("a", True),
    ]
    assert {r["cost"]["kind"] for r in records if "cost" in r} == {"load", "sleep", "wake"}
    report = tmp_path / "replay.json"
    replay = subprocess.run(
        [
            sys.executable,
            "-m",
            "swapcore",
            "simulate",
            str(path),
            str(trace),
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replay.returncode == 0, replay.stderr
    assert "recorded swap costs used for a, b" in replay.stderr
    assert "recorded: 2 cold loads, 3 wakes in the real run" in replay.stdout
    run = json.loads(report.read_text())["runs"][0]
    assert (run["total_loads"], run["total_wakes"]) == (2, 3)
    assert run["outcomes"]["served"] == 5
