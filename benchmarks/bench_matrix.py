"""Benchmark the swap-matrix compiler, solver and planner on llama-swap's shapes.

Usage: python benchmarks/bench_matrix.py [--json PATH] [--quick]

Shapes:
  (i)   one set ``target & (m-0-0 | ... | m-0-9) & ... `` with D dimensions of
        10 choices (10**D combinations): compile time, solve time with one
        running model per dimension plus one model outside the matrix, and the
        tracemalloc peaks of one compile and of one solve: compile memory grows
        with the expression text (linearly in D), solve memory stays flat.
  (ii)  1, 8 and 32 sets ``target-N & (10 a-models) & (10 b-models)`` with
        eviction costs a=2, b=5 (others 1); query target-q (q = sets // 2)
        with running [a-q-1, b-q-2, a-0-0, b-0-1, outside], as llama-swap's
        BenchmarkProgram_SolveMultiSet does.
  (iii) a swap decision on the 8-set matrix: MatrixPlanner.eviction_for then
        on_swap_start with the same running set, logging at INFO into a
        handler that formats each record and drops it (cached planner, and a
        cold one built per decision).

Timings use time.perf_counter_ns around each call, many repetitions, and
report the median and the 99th percentile in microseconds.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import platform
import sys
import tracemalloc
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

from swapcore import MatrixPlanner, MatrixSolver, compile_matrix


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and p99 of ``repeat`` calls of ``fn``, in microseconds."""
    fn()  # warm up
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            start = perf_counter_ns()
            fn()
            samples.append(perf_counter_ns() - start)
    finally:
        if gc_was_enabled:
            gc.enable()
    samples.sort()
    median = samples[len(samples) // 2]
    p99 = samples[min(len(samples) - 1, (len(samples) * 99) // 100)]
    return median / 1000, p99 / 1000


def peak_kib(fn: Callable[[], object]) -> float:
    """The tracemalloc peak of one call of ``fn``, in KiB."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return round(peak / 1024, 1)


def dimensions_set(dimensions: int, choices: int = 10) -> str:
    parts = ["target"]
    for i in range(dimensions):
        parts.append("(" + " | ".join(f"m-{i}-{j}" for j in range(choices)) + ")")
    return " & ".join(parts)


def multi_set(count: int, choices: int = 10) -> tuple[dict[str, str], dict[str, int]]:
    sets: dict[str, str] = {}
    costs: dict[str, int] = {}
    for s in range(count):
        a_models = [f"a-{s}-{c}" for c in range(choices)]
        b_models = [f"b-{s}-{c}" for c in range(choices)]
        costs.update(dict.fromkeys(a_models, 2))
        costs.update(dict.fromkeys(b_models, 5))
        sets[f"set-{s}"] = f"target-{s} & ({' | '.join(a_models)}) & ({' | '.join(b_models)})"
    return sets, costs


def multi_query(count: int) -> tuple[str, list[str]]:
    q = count // 2
    return f"target-{q}", [f"a-{q}-1", f"b-{q}-2", "a-0-0", "b-0-1", "outside"]


class _FormatAndDrop(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def run(quick: bool) -> list[dict[str, Any]]:
    scale = 10 if quick else 1
    results: list[dict[str, Any]] = []

    def add(shape: str, case: str, timing: tuple[float, float], **extra: Any) -> None:
        results.append(
            {"shape": shape, "case": case, "median_us": timing[0], "p99_us": timing[1], **extra}
        )

    for dims in (2, 3, 4, 5, 6, 10):
        text = dimensions_set(dims)
        program = compile_matrix({"grid": text})
        solver = MatrixSolver(program)
        running = [f"m-{i}-{(3 * i + 1) % 10}" for i in range(dims)] + ["outside"]
        combinations = 10**dims
        add(
            "(i) dimensions",
            f"compile {dims}x10",
            measure(lambda t=text: compile_matrix({"grid": t}), 1000 // scale),
            combinations=combinations,
            peak_kib=peak_kib(lambda t=text: compile_matrix({"grid": t})),
        )
        add(
            "(i) dimensions",
            f"solve {dims}x10",
            measure(lambda s=solver, r=running: s.solve("target", r), 20000 // scale),
            combinations=combinations,
            peak_kib=peak_kib(lambda s=solver, r=running: s.solve("target", r)),
        )

    for count in (1, 8, 32):
        sets, costs = multi_set(count)
        solver = MatrixSolver(compile_matrix(sets), costs)
        target, running = multi_query(count)
        add(
            "(ii) multi-set",
            f"compile {count} sets",
            measure(lambda s=sets: compile_matrix(s), 1000 // scale),
        )
        add(
            "(ii) multi-set",
            f"solve {count} sets",
            measure(lambda s=solver, t=target, r=running: s.solve(t, r), 20000 // scale),
        )

    logger = logging.getLogger("swapcore.matrix")
    logger.setLevel(logging.INFO)
    logger.addHandler(_FormatAndDrop())
    logger.propagate = False
    sets, costs = multi_set(8)
    solver = MatrixSolver(compile_matrix(sets), costs)
    target, running = multi_query(8)
    planner = MatrixPlanner(solver)

    def decision(p: MatrixPlanner = planner) -> None:
        p.eviction_for(target, running)
        p.on_swap_start(target, running)

    def cold_decision() -> None:
        decision(MatrixPlanner(solver))

    add("(iii) planner", "eviction_for + on_swap_start (cached)", measure(decision, 20000 // scale))
    add(
        "(iii) planner",
        "eviction_for + on_swap_start (cold)",
        measure(cold_decision, 20000 // scale),
    )
    add(
        "(iii) planner",
        "eviction_for only (cached)",
        measure(lambda: planner.eviction_for(target, running), 20000 // scale),
    )
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    header = f"{'shape':<16} {'case':<40} {'median µs':>10} {'p99 µs':>10}  extra"
    print(header)
    print("-" * len(header))
    for row in results:
        extra = ", ".join(f"{k}={row[k]}" for k in ("combinations", "peak_kib") if k in row)
        timing = f"{row['median_us']:>10.1f} {row['p99_us']:>10.1f}"
        print(f"{row['shape']:<16} {row['case']:<40} {timing}  {extra}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="10x fewer repetitions")
    args = parser.parse_args(argv)
    results = run(args.quick)
    print_table(results)
    if args.json:
        payload = {
            "benchmark": "matrix",
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "quick": args.quick,
            "results": results,
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
