"""Benchmark the simulator: events per second and the time to replay a 100,000-request trace.

Usage: python benchmarks/bench_sim.py [--json PATH] [--quick] [--requests N] [--profile]

Cases (each on a seeded trace of about N requests, default 100,000, three
models a, b, c loading in 8, 15 and 30 s, one model at a time):
  poisson / fifo          Poisson mix 0.1/0.06/0.04 req/s, 2 s service, llama-swap's
                          default concurrency limit 10
  poisson / fifo+max_wait same, max_wait=30 (the scheduler reads the clock on every event,
                          the engine asks next_deadline() after every event)
  poisson / arrival       ArrivalOrderScheduler
  poisson / cost-aware    CostAwareScheduler (load times from the profiles)
  overload / fifo         Poisson mix 0.5/0.3/0.2 req/s: more than one model at a time
                          can serve, so many requests are rejected at the limit of 10
  overload / fifo+patience=30
                          same, every caller gives up after 30 s without a grant
                          (simulate(patience=30): about 40% give up, each an on_cancel)
  round-robin / fifo      a b c a b c ... every 0.5 s, 0.2 s service (constant churn)
  dominant / fifo         a at 2 req/s, b and c every 60 s, 4 s service, limit 1000

Each case reports the wall time of simulate() (best of --repeat runs, trace
generation excluded), the events processed (arrivals, stop/load/serve
completions, ticks) and events per second. --profile prints a cProfile of the
first case instead.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

try:
    from swapcore import MaxLoadedPlanner
    from swapcore.sim import (
        Arrival,
        SimScheduler,
        arrival_order,
        cost_aware,
        dominant,
        fifo,
        poisson_mix,
        round_robin,
        simulate,
    )
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from swapcore import MaxLoadedPlanner
    from swapcore.sim import (
        Arrival,
        SimScheduler,
        arrival_order,
        cost_aware,
        dominant,
        fifo,
        poisson_mix,
        round_robin,
        simulate,
    )

MODELS = {"a": 8.0, "b": 15.0, "c": 30.0}


def poisson_trace(requests: int) -> list[Arrival]:
    rates = {"a": 0.1, "b": 0.06, "c": 0.04}  # 0.2 req/s in all
    return poisson_mix(rates, duration=requests / 0.2, service=2.0, seed=1)


def overload_trace(requests: int) -> list[Arrival]:
    rates = {"a": 0.5, "b": 0.3, "c": 0.2}  # 1 req/s: more than one-at-a-time can serve
    return poisson_mix(rates, duration=requests, service=2.0, seed=1)


def round_robin_trace(requests: int) -> list[Arrival]:
    return round_robin(["a", "b", "c"], rounds=requests // 3, interval=0.5, service=0.2)


def dominant_trace(requests: int) -> list[Arrival]:
    return dominant(
        "a",
        ["b", "c"],
        duration=requests / 2.0,
        dominant_rate=2.0,
        rare_every=60.0,
        service=4.0,
        seed=1,
    )


Case = tuple[str, Callable[[int], list[Arrival]], Callable[[], SimScheduler], float | None]
"""name, trace, scheduler, and the callers' patience (None: they wait forever)."""

CASES: list[Case] = [
    ("poisson / fifo", poisson_trace, fifo, None),
    ("poisson / fifo+max_wait=30", poisson_trace, lambda: fifo(max_wait=30.0), None),
    ("poisson / arrival", poisson_trace, arrival_order, None),
    ("poisson / cost-aware", poisson_trace, cost_aware, None),
    ("overload / fifo", overload_trace, fifo, None),
    ("overload / fifo+patience=30", overload_trace, fifo, 30.0),
    ("round-robin / fifo", round_robin_trace, fifo, None),
    ("dominant / fifo", dominant_trace, lambda: fifo(default_concurrency_limit=1000), None),
]


def run_case(
    name: str,
    make_trace: Callable[[int], list[Arrival]],
    make_scheduler: Callable[[], SimScheduler],
    patience: float | None,
    requests: int,
    repeat: int,
) -> dict[str, object]:
    trace = make_trace(requests)
    best = float("inf")
    report = None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        report = simulate(
            trace,
            planner=lambda: MaxLoadedPlanner(1),
            models=MODELS,
            scheduler=make_scheduler(),
            patience=patience,
        )
        best = min(best, time.perf_counter() - start)
    assert report is not None
    return {
        "case": name,
        "requests": len(trace),
        "served": report.served,
        "abandoned": report.abandoned,
        "loads": report.total_loads,
        "events": report.events,
        "seconds": round(best, 3),
        "events_per_second": round(report.events / best),
        "requests_per_second": round(len(trace) / best),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="10,000 requests, one run (smoke)")
    parser.add_argument("--requests", type=int, default=100_000, help="trace size (default 100k)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best counts")
    parser.add_argument("--profile", action="store_true", help="cProfile the first case")
    args = parser.parse_args(argv)
    requests, repeat = (10_000, 1) if args.quick else (args.requests, args.repeat)
    if args.profile:
        name, make_trace, make_scheduler, patience = CASES[0]
        trace = make_trace(requests)
        profiler = cProfile.Profile()
        profiler.enable()
        simulate(
            trace,
            planner=lambda: MaxLoadedPlanner(1),
            models=MODELS,
            scheduler=make_scheduler(),
            patience=patience,
        )
        profiler.disable()
        print(f"cProfile of {name}, {len(trace):,} requests")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return 0
    rows = [run_case(*case, requests=requests, repeat=repeat) for case in CASES]
    print(
        f"{'case':<28} {'requests':>9} {'served':>8} {'abandoned':>9} {'loads':>7} {'events':>9}"
        f" {'seconds':>8} {'events/s':>10} {'requests/s':>11}"
    )
    for row in rows:
        print(
            f"{row['case']:<28} {row['requests']:>9,} {row['served']:>8,}"
            f" {row['abandoned']:>9,} {row['loads']:>7,}"
            f" {row['events']:>9,} {row['seconds']:>8.3f} {row['events_per_second']:>10,}"
            f" {row['requests_per_second']:>11,}"
        )
    if args.json:
        payload = {"benchmark": "sim", "python": sys.version.split()[0], "results": rows}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
