"""Benchmark the schedulers' decision cost (pure state machines, no I/O, no event loop).

Usage: python benchmarks/bench_scheduler.py [--json PATH] [--quick]

FIFOScheduler runs every case; CostAwareScheduler and ArrivalOrderScheduler
run the per-event cases and the drains (rows prefixed "cost-aware:" and
"arrival:"). In the cost-aware drains the five models are ranked by score;
in the arrival-order drains the walk stops at the first blocked request.

Cases:
  fast path          request for a ready model + serve done (per pair)
  swap cycle         request -> start_swap -> swap done -> grant -> serve done
  drain 100/5 idle   a swap completes over 100 queued requests for 5 other models,
                     all still blocked (the new model is busy)
  drain 100/5 start  same, but the swap's caller left: the drain starts one swap,
                     19 requests join it, 80 stay queued
  ingest 1,000       1,000 requests for 5 models queued behind one swap (total),
                     without and with max_wait (which checks the oldest request's age)

Effects are a minimal in-memory driver, so the figures are the scheduler's own
cost plus a few dict lookups. Reference (llama-swap's Go FIFO on the same
machine): fast path 0.5-1.4 us, 100-request drain 33-48 us.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

try:
    from swapcore import (
        ArrivalOrderScheduler,
        CostAwareScheduler,
        FIFOScheduler,
        ProcessState,
        Request,
        RoutingError,
        SwapPlanner,
    )
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from swapcore import (
        ArrivalOrderScheduler,
        CostAwareScheduler,
        FIFOScheduler,
        ProcessState,
        Request,
        RoutingError,
        SwapPlanner,
    )

Scheduler = FIFOScheduler | CostAwareScheduler | ArrivalOrderScheduler

READY = ProcessState.READY
STOPPED = ProcessState.STOPPED
MODELS = ("A", "B", "C", "D", "E", "F")


class OneAtATime(SwapPlanner):
    """llama-swap's default policy: one model at a time."""

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return [model for model in running if model != target]


class LeanEffects:
    """The cheapest driver that honours the Effects contract."""

    def __init__(self) -> None:
        self.states = dict.fromkeys(MODELS, STOPPED)
        self.running: dict[str, ProcessState] = {}
        self.gone: set[Request] = set()
        self.started: list[tuple[str, Sequence[str]]] = []

    def set(self, model: str, state: ProcessState) -> None:
        self.states[model] = state
        if state.is_running:
            self.running[model] = state
        else:
            self.running.pop(model, None)

    def model_state(self, model: str) -> ProcessState | None:
        return self.states.get(model)

    def running_models(self) -> Mapping[str, ProcessState]:
        return self.running

    def start_swap(self, model: str, evict: Sequence[str]) -> None:
        self.started.append((model, evict))

    def grant_serve(self, request: Request, model: str) -> bool:
        return request not in self.gone

    def grant_error(self, request: Request, error: RoutingError) -> None:
        pass

    def report_position(self, request: Request, position: int) -> None:
        pass


def finish(effects: LeanEffects, scheduler: Scheduler, model: str) -> None:
    for victim in scheduler.swaps[model]:
        effects.set(victim, STOPPED)
    effects.set(model, READY)
    scheduler.on_swap_done(model, None)


def fifo(effects: LeanEffects, max_wait: float | None = None) -> Scheduler:
    return FIFOScheduler(OneAtATime(), effects, default_concurrency_limit=10_000, max_wait=max_wait)


def cost_aware(effects: LeanEffects, max_wait: float | None = None) -> Scheduler:
    return CostAwareScheduler(
        OneAtATime(), effects, default_concurrency_limit=10_000, max_wait=max_wait
    )


def arrival(effects: LeanEffects, max_wait: float | None = None) -> Scheduler:
    assert max_wait is None
    return ArrivalOrderScheduler(OneAtATime(), effects, default_concurrency_limit=10_000)


Make = Callable[..., Scheduler]


def timed(run: Callable[[], Callable[[], object]], reps: int) -> list[float]:
    """Median-ready samples in microseconds: ``run()`` prepares, its result is timed."""
    samples: list[float] = []
    gc.disable()
    try:
        for _ in range(reps):
            body = run()
            start = time.perf_counter_ns()
            body()
            samples.append((time.perf_counter_ns() - start) / 1000)
    finally:
        gc.enable()
    return samples


def bench_fast_path(reps: int, make: Make = fifo) -> list[float]:
    effects = LeanEffects()
    effects.set("A", READY)
    scheduler = make(effects)
    requests = iter([Request("A", id=i, arrived=0.0) for i in range(reps)])

    def prepare() -> Callable[[], None]:
        request = next(requests)

        def body() -> None:
            scheduler.on_request(request)
            scheduler.on_serve_done("A")

        return body

    return timed(prepare, reps)


def bench_swap_cycle(reps: int, make: Make = fifo) -> list[float]:
    effects = LeanEffects()
    effects.set("A", READY)
    scheduler = make(effects)
    requests = iter([Request("AB"[i % 2 - 1], id=i, arrived=0.0) for i in range(reps)])

    def prepare() -> Callable[[], None]:
        request = next(requests)
        model = request.model

        def body() -> None:
            scheduler.on_request(request)
            finish(effects, scheduler, model)
            scheduler.on_serve_done(model)

        return body

    return timed(prepare, reps)


def drain_setup(caller_leaves: bool, make: Make = fifo) -> Callable[[], None]:
    """F's swap in flight, 100 requests for A-E queued behind it; returns the completion."""
    effects = LeanEffects()
    scheduler = make(effects)
    first = Request("F", id=0, arrived=0.0)
    scheduler.on_request(first)
    if caller_leaves:
        effects.gone.add(first)
    for i in range(100):
        scheduler.on_request(Request(MODELS[i % 5], id=i + 1, arrived=0.0))
    assert len(scheduler.queued) == 100

    def body() -> None:
        finish(effects, scheduler, "F")

    return body


def bench_drain(reps: int, caller_leaves: bool, make: Make = fifo) -> list[float]:
    return timed(lambda: drain_setup(caller_leaves, make), reps)


def bench_ingest(reps: int, max_wait: float | None = None, make: Make = fifo) -> list[float]:
    def prepare() -> Callable[[], None]:
        effects = LeanEffects()
        scheduler = make(effects, max_wait)
        scheduler.on_request(Request("F", id=0, arrived=0.0))
        requests = [Request(MODELS[i % 5], id=i + 1, arrived=0.0) for i in range(1000)]

        def body() -> None:
            on_request = scheduler.on_request
            for request in requests:
                on_request(request)

        return body

    return timed(prepare, reps)


def summary(name: str, samples: list[float], unit: str) -> dict[str, object]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    scale = 1000.0 if unit == "ms" else 1.0
    return {
        "case": name,
        "unit": unit,
        "reps": len(samples),
        "median": round(statistics.median(ordered) / scale, 3),
        "p99": round(p99 / scale, 3),
        "min": round(ordered[0] / scale, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    args = parser.parse_args(argv)
    small, large = (2_000, 50) if args.quick else (100_000, 500)
    rows = [
        summary("fast path (request + serve done)", bench_fast_path(small), "us"),
        summary("swap cycle (request..serve done)", bench_swap_cycle(small), "us"),
        summary("drain 100 over 5 models, all blocked", bench_drain(large, False), "us"),
        summary("drain 100 over 5 models, 1 start + 19 joins", bench_drain(large, True), "us"),
        summary("ingest 1,000 behind one swap (total)", bench_ingest(max(large // 10, 5)), "ms"),
        summary(
            "ingest 1,000 behind one swap, max_wait set",
            bench_ingest(max(large // 10, 5), max_wait=60.0),
            "ms",
        ),
    ]
    for prefix, make in (("cost-aware", cost_aware), ("arrival", arrival)):
        rows += [
            summary(f"{prefix}: fast path", bench_fast_path(small, make), "us"),
            summary(f"{prefix}: swap cycle", bench_swap_cycle(small, make), "us"),
            summary(f"{prefix}: drain 100/5, all blocked", bench_drain(large, False, make), "us"),
            summary(f"{prefix}: drain 100/5, caller left", bench_drain(large, True, make), "us"),
            summary(
                f"{prefix}: ingest 1,000 (total)",
                bench_ingest(max(large // 10, 5), None, make),
                "ms",
            ),
        ]
    print(f"{'case':<46} {'median':>9} {'p99':>9} {'min':>9}  unit  reps")
    for row in rows:
        print(
            f"{row['case']:<46} {row['median']:>9} {row['p99']:>9} {row['min']:>9}"
            f"  {row['unit']:<4}  {row['reps']}"
        )
    if args.json:
        payload = {"benchmark": "scheduler", "python": sys.version.split()[0], "results": rows}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
