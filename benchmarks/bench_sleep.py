"""Sleep against stop through ``swapcore serve``: requests A, B, A on two models of one swap group.

    python benchmarks/bench_sleep.py [--load 3] [--wake 0.2] [--json PATH]

Two fake models (``swapcore.fakemodel``: a cold start of ``--load`` seconds;
in sleep mode a wake of ``--wake`` seconds) share one swap group, so each
request for the other model evicts the one loaded. The same three requests
(A, B, A) run twice, side by side: with ``sleepMode: {level: 1}`` (B's
arrival puts A to sleep, A's second request wakes it) and without (A is
stopped, then started cold). The table shows each request's latency, the
models' PIDs (a woken model keeps its process) and the costs the gateway
learned. Target (issue 11): with sleep, the third request answers in under
1 s and A keeps its PID.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bench_gateway as bg

SLEEP_MODE = "    sleepMode: {level: 1}\n"


def config(directory: Path, start: int, load: float, wake: float, sleep: bool) -> Path:
    fake = f"{shlex.quote(sys.executable)} -m swapcore.fakemodel --load {load}"
    if sleep:
        fake += f" --sleep-mode --wake-time {wake} --sleep-time 0.05"
    models = "".join(
        f'  {m}:\n    cmd: "{fake} --port ${{PORT}} --model-name {m}"\n'
        f'    proxy: "http://127.0.0.1:${{PORT}}"\n' + (SLEEP_MODE if sleep else "")
        for m in ("a", "b")
    )
    text = (
        f"healthCheckTimeout: 60\nstartPort: {start}\nmodels:\n{models}"
        "groups:\n  chat:\n    swap: true\n    members: [a, b]\n"
    )
    path = directory / ("sleep.yaml" if sleep else "stop.yaml")
    path.write_text(text)
    return path


def pid_of(port: int) -> int | None:
    """The fake model's PID on ``port`` (its /fake/stats), or None when it is not up."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/fake/stats", timeout=2) as reply:
            return int(json.load(reply)["pid"])
    except OSError:
        return None


def running(port: int) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/running", timeout=5) as reply:
        return {entry["model"]: entry for entry in json.load(reply)["running"]}


def run(tmp: Path, load: float, wake: float, sleep: bool) -> dict[str, Any]:
    start = bg.port_block(2)
    path = config(tmp, start, load, wake, sleep)
    log = tmp / ("sleep.log" if sleep else "stop.log")
    gateway = bg.Gateway(path, bg.free_port(), log, bg.ROOT / "src")
    rows: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while True:  # until the gateway answers
            try:
                running(gateway.port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        ports = {"a": start, "b": start + 1}
        for model in ("a", "b", "a"):
            client = bg.SyncClient(gateway.port)
            began = time.perf_counter()
            client.post(bg.body(False, model=model))
            seconds = time.perf_counter() - began
            client.close()
            rows.append({"model": model, "seconds": seconds, "pid": pid_of(ports[model])})
        learned = {m: entry["costs"] for m, entry in running(gateway.port).items()}
    finally:
        status = gateway.stop()
    if status != 0:
        print(log.read_text(), file=sys.stderr)
    return {"requests": rows, "costs": learned, "serve_exit_status": status}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--load", type=float, default=3.0, help="cold start seconds (3)")
    parser.add_argument("--wake", type=float, default=0.2, help="wake seconds (0.2)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-sleep-") as tmp:
        results = {
            "sleep": run(Path(tmp), args.load, args.wake, sleep=True),
            "stop": run(Path(tmp), args.load, args.wake, sleep=False),
        }
    print(f"{'request':<10} {'with sleep':>12} {'pid':>8}   {'with stop':>12} {'pid':>8}")
    print("-" * 58)
    for i, (slept, stopped) in enumerate(
        zip(results["sleep"]["requests"], results["stop"]["requests"], strict=True)
    ):
        print(
            f"{i + 1}. {slept['model']:<7} {slept['seconds']:>10.3f} s {slept['pid']!s:>8}   "
            f"{stopped['seconds']:>10.3f} s {stopped['pid']!s:>8}"
        )
    third = results["sleep"]["requests"][2]
    same_pid = third["pid"] == results["sleep"]["requests"][0]["pid"]
    ratio = third["seconds"] / results["stop"]["requests"][2]["seconds"]
    print(
        f"third request with sleep: {third['seconds']:.3f} s ({ratio:.2f}x the cold restart), "
        f"A kept its PID: {same_pid}"
    )
    print(f"learned costs (sleep run): {json.dumps(results['sleep']['costs'])}")
    if args.json is not None:
        payload = {"python": platform.python_version(), "load": args.load, "wake": args.wake}
        args.json.write_text(json.dumps({**payload, "results": results}, indent=2) + "\n")
    ok = all(r["serve_exit_status"] == 0 for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
