"""Sleep against stop, in the simulator: swap seconds and waits, beside an offline lower bound.

    python benchmarks/bench_tiers.py [--json PATH]

One model loaded at a time (one swap group). Each workload runs three ways
on the same trace: FIFO whose evictions stop (llama-swap), FIFO whose
evictions sleep, and the cost-aware scheduler with sleep, pricing a
sleeping model by its wake. Cold loads take ``LOAD`` seconds, wakes
``WAKE``, stops and sleeps 0 (their seconds would add the same to every
policy that evicts as often).

- ``alternating-N/M``: vLLM's sleep-mode experiment: N prompts alternating
  over M models, each sent after the previous one is served (one every
  ``GAP`` seconds), service 5 s; cold 30 s, wake 1.5 s.
- ``round-robin``, ``poisson``, ``bursts``, ``dominant``: the workloads of
  docs/policies.md (loads a=8, b=15, c=30 s), with a wake of a twentieth of
  the load.

The bound: with hindsight, any policy must start every requested model cold
once, and, one model at a time, evict all but one of them at least once;
so ``sum of loads + the smallest (K - 1) eviction costs`` (K requested
models) is a lower bound on the swap seconds of every policy, sleeping or
not. Target (issue 11): on ``alternating-6/2``, sleep's swap seconds are at
most 0.4x stop's.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from swapcore import GroupPlanner  # noqa: E402
from swapcore.sim import ModelProfile, SimReport, simulate  # noqa: E402
from swapcore.sim.config import generate_trace  # noqa: E402
from swapcore.sim.schedulers import cost_aware, fifo  # noqa: E402
from swapcore.sim.traces import Arrival  # noqa: E402

LOAD, WAKE, GAP, SERVICE = 30.0, 1.5, 60.0, 5.0
POLICY_LOADS = {"a": 8.0, "b": 15.0, "c": 30.0}
GENERATED = {
    "round-robin": "round-robin:models=a,b,c;rounds=20;interval=2;service=2",
    "poisson": "poisson:rates=a:0.3,b:0.15,c:0.05;duration=1800;service=2;seed=1",
    "bursts": "bursts:models=a,b,c;burst_size=8;bursts=30;gap=10;spacing=0.5;service=2;seed=1",
    "dominant": "dominant:model=a;rare=b,c;duration=1800;rate=2;rare_every=60;service=4;seed=1",
}


def alternating(prompts: int, models: int) -> list[Arrival]:
    names = "abcdefgh"[:models]
    return [Arrival(at=i * GAP, model=names[i % models], service=SERVICE) for i in range(prompts)]


def lower_bound(trace: Sequence[Arrival], profiles: dict[str, ModelProfile]) -> float:
    """Every requested model loads cold once; all but one are evicted at least once."""
    requested = sorted({a.model for a in trace})
    loads = sum(profiles[m].load for m in requested)
    evictions = sorted(min(profiles[m].stop, profiles[m].sleep) for m in requested)
    return loads + sum(evictions[: max(0, len(requested) - 1)])


def figures(report: SimReport) -> dict[str, Any]:
    return {
        "swap_seconds": report.swap_seconds,
        "cold_loads": report.total_loads,
        "wakes": report.total_wakes,
        "p50": report.waits.p50,
        "p99": report.waits.p99,
        "served": report.served,
    }


def run(name: str, trace: list[Arrival], loads: dict[str, float], wake: dict[str, float]) -> Any:
    stopping = {m: ModelProfile(load) for m, load in loads.items()}
    sleeping = {m: ModelProfile(load, wake=wake[m]) for m, load in loads.items()}
    models = sorted(loads)

    def planner() -> GroupPlanner:
        return GroupPlanner({}, models=models)

    limit = {"default_concurrency_limit": 100_000}
    runs = {
        "fifo+stop": simulate(trace, planner=planner, models=stopping, scheduler=fifo(**limit)),
        "fifo+sleep": simulate(trace, planner=planner, models=sleeping, scheduler=fifo(**limit)),
        "cost-aware+sleep": simulate(
            trace, planner=planner, models=sleeping, scheduler=cost_aware(**limit)
        ),
    }
    row = {label: figures(report) for label, report in runs.items()}
    return {"workload": name, "bound": lower_bound(trace, sleeping), "runs": row}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results = []
    for prompts, count in ((6, 2), (20, 2), (6, 3), (20, 3)):
        names = "abc"[:count]
        results.append(
            run(
                f"alternating-{prompts}/{count}",
                alternating(prompts, count),
                dict.fromkeys(names, LOAD),
                dict.fromkeys(names, WAKE),
            )
        )
    for name, spec in GENERATED.items():
        trace = generate_trace(spec)
        wake = {m: load / 20 for m, load in POLICY_LOADS.items()}
        results.append(run(name, trace, POLICY_LOADS, wake))
    header = f"{'workload':<17} {'policy':<17} {'swap s':>8} {'x stop':>7} {'cold':>5}"
    print(header + f" {'wakes':>6} {'p50 wait':>9} {'p99 wait':>9} {'bound':>7}")
    print("-" * 94)
    for result in results:
        stop = result["runs"]["fifo+stop"]["swap_seconds"]
        for label, row in result["runs"].items():
            ratio = row["swap_seconds"] / stop if stop else float("nan")
            print(
                f"{result['workload']:<17} {label:<17} {row['swap_seconds']:>8.1f} {ratio:>6.2f}x"
                f" {row['cold_loads']:>5} {row['wakes']:>6} {row['p50']:>8.1f}s {row['p99']:>8.1f}s"
                f" {result['bound']:>7.1f}"
            )
    vllm = results[0]["runs"]
    target = vllm["fifo+sleep"]["swap_seconds"] / vllm["fifo+stop"]["swap_seconds"]
    print(
        f"alternating-6/2 (vLLM's shape): sleep / stop swap seconds = {target:.2f} (target <= 0.4)"
    )
    if args.json is not None:
        payload = {"python": platform.python_version(), "results": results, "vllm_ratio": target}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
