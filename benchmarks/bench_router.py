"""Router benchmarks: acquire/release round trips and a swap-heavy crowd.

    python benchmarks/bench_router.py [--json PATH] [--quick] [--profile]

Scenarios (one always-ready FakeProcess unless stated):

- ``sequential``: one task, ``async with router.acquire("a"): pass`` in a loop.
  ``sequential-recorded`` is the same with a ``TraceRecorder`` writing every
  request to a file (``swapcore serve --record-trace``).
- ``concurrent-100``: 100 tasks, each holding its lease across one
  ``await asyncio.sleep(0)``; ``loop-only-100`` is the same loop without the
  router, so the difference is the router's cost.
- ``*-inline``: the same with events handled inline by whoever posts them
  instead of by the run-loop task, to measure what the task switch costs.
- ``crowd-1000``: 1,000 concurrent acquirers across 4 models, one model
  loaded at a time (FakeProcess start delay 1 ms): total time and loads.

Figures are wall-clock on whatever machine runs this; compare them, don't
assert them.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import json
import platform
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from swapcore import BaseRouter, RouterEvent, SwapPlanner
from swapcore.scheduling.fifo import FIFOScheduler
from swapcore.sim import TraceRecorder
from swapcore.testing.fakes import FakeProcess

T = TypeVar("T")
WIDE = functools.partial(FIFOScheduler, default_concurrency_limit=100_000)


class OneAtATime(SwapPlanner):
    """Every other running model is evicted."""

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return [m for m in running if m != target]


class InlineRouter(BaseRouter):
    """The router with events handled inline by whoever posts them (no run-loop task).

    For comparison only: it saves a task switch per event but runs scheduler
    code in the callers' tasks.
    """

    def _start_run_loop(self) -> None:
        pass


async def sequential(
    router_class: type[BaseRouter], n: int, on_event: Callable[[RouterEvent], None] | None = None
) -> dict[str, float]:
    async with router_class({"a": FakeProcess("a")}, OneAtATime(), on_event=on_event) as router:
        await router.preload("a")
        start = time.perf_counter()
        for _ in range(n):
            async with router.acquire("a"):
                pass
        elapsed = time.perf_counter() - start
    return {"n": n, "seconds": elapsed, "per_second": n / elapsed}


async def concurrent(
    router_class: type[BaseRouter] | None, n: int, tasks: int = 100
) -> dict[str, float]:
    each = n // tasks

    async def loop_only() -> None:
        for _ in range(each):
            await asyncio.sleep(0)

    if router_class is None:
        start = time.perf_counter()
        await asyncio.gather(*(loop_only() for _ in range(tasks)))
        elapsed = time.perf_counter() - start
        return {"n": each * tasks, "seconds": elapsed, "per_second": each * tasks / elapsed}

    async with router_class({"a": FakeProcess("a")}, OneAtATime(), scheduler=WIDE) as router:
        await router.preload("a")

        async def client() -> None:
            for _ in range(each):
                async with router.acquire("a"):
                    await asyncio.sleep(0)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(tasks)))
        elapsed = time.perf_counter() - start
    return {"n": each * tasks, "seconds": elapsed, "per_second": each * tasks / elapsed}


async def crowd(n: int = 1000, seed: int = 7) -> dict[str, float]:
    rng = random.Random(seed)
    procs = {m: FakeProcess(m, start_delay=0.001) for m in "abcd"}
    async with BaseRouter(procs, OneAtATime(), scheduler=WIDE) as router:

        async def client(model: str) -> None:
            async with router.acquire(model):
                await asyncio.sleep(0)

        start = time.perf_counter()
        await asyncio.gather(*(client(rng.choice("abcd")) for _ in range(n)))
        elapsed = time.perf_counter() - start
    loads = sum(p.starts for p in procs.values())
    return {"n": n, "seconds": elapsed, "per_second": n / elapsed, "loads": loads}


def run(factory: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(factory())  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--profile", action="store_true", help="cProfile the sequential case")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else 200_000

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(lambda: sequential(BaseRouter, n))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return 0

    results: dict[str, dict[str, float]] = {}
    results["sequential"] = run(lambda: sequential(BaseRouter, n))
    results["sequential-inline"] = run(lambda: sequential(InlineRouter, n))
    with tempfile.TemporaryDirectory() as tmp:
        recorder = TraceRecorder(Path(tmp) / "trace.jsonl")
        results["sequential-recorded"] = run(lambda: sequential(BaseRouter, n, recorder))
        recorder.close()
    results["loop-only-100"] = run(lambda: concurrent(None, n))
    results["concurrent-100"] = run(lambda: concurrent(BaseRouter, n))
    results["concurrent-100-inline"] = run(lambda: concurrent(InlineRouter, n))
    results["crowd-1000"] = run(lambda: crowd())

    print(f"{'scenario':<28} {'n':>8} {'seconds':>9} {'per second':>12} {'loads':>6}")
    for name, row in results.items():
        loads = f"{int(row['loads'])}" if "loads" in row else ""
        print(
            f"{name:<28} {int(row['n']):>8} {row['seconds']:>9.3f} "
            f"{row['per_second']:>12,.0f} {loads:>6}"
        )
    if args.json is not None:
        payload = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "quick": args.quick,
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
