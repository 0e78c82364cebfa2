"""Placement across GPUs against one budget: budget violations, out-of-memory starts, evictions.

    python benchmarks/bench_placement.py [--trials N] [--steps N] [--json PATH]

Random machines (1-4 devices of 8-80 GiB), random models (3-8, of 1 GiB up
to what the devices hold; some sleep, with a host budget) and random
request sequences. On each trace, side by side:

- ``placement``: :class:`~swapcore.planners.placement.PlacementPlanner`
  over the devices. Counted at every step: a device over its budget, the
  host over its budget (sleeping models), a model refused (the planner
  raised), a needless eviction (an evicted model that could have stayed:
  the target would still fit, by the planner's own rule), and the decision
  time (``eviction_for`` + ``on_swap_start`` + ``residency_for``).
- ``one budget``: :class:`~swapcore.MemoryBudgetPlanner` with the devices'
  total as its budget, which is what a gateway without placement does.
  Counted: out-of-memory starts, the steps whose loaded set no assignment
  of whole models to devices can hold (found by exhaustive search; the
  model cannot be split), and its evictions.

Targets (issue 12): 0 budget violations, 0 refusals and 0 needless
evictions over at least 10,000 steps.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from swapcore import MemoryBudgetPlanner  # noqa: E402
from swapcore.planners.placement import PlacementPlanner  # noqa: E402
from swapcore.planners.residency import SleepRules  # noqa: E402


def machine(rng: random.Random, split: bool) -> tuple[dict[str, int], dict[str, int], SleepRules]:
    devices = {str(i): rng.randint(8, 80) for i in range(rng.randint(1, 4))}
    room = sum(devices.values()) if split else max(devices.values())
    names = [f"m{i}" for i in range(rng.randint(3, 8))]
    sizes = {m: rng.randint(1, room) for m in names}
    levels = {m: rng.choice((1, 2)) for m in names if rng.random() < 0.4}
    host = {m: rng.randint(1, 40) for m in levels}
    rules = SleepRules(levels=levels, host_memory=host, host_budget=rng.randint(0, 80))
    return devices, sizes, rules


def fits(size: Fraction, free: dict[str, Fraction], split: bool, pin: Any) -> bool:
    """The planner's documented rule (a sleeper's server keeps its devices)."""
    if pin:
        return all(free[d] >= Fraction(s) for d, s in pin.items())
    if any(room >= size for room in free.values()):
        return True
    return split and sum(r for r in free.values() if r > 0) >= size


def packable(sizes: list[int], budgets: list[int]) -> bool:
    """Can whole models of ``sizes`` go on devices of ``budgets``? (exhaustive, small)"""
    order = sorted(sizes, reverse=True)
    room = list(budgets)

    def place(i: int) -> bool:
        if i == len(order):
            return True
        tried = set()
        for d, free in enumerate(room):
            if free >= order[i] and free not in tried:
                tried.add(free)
                room[d] -= order[i]
                if place(i + 1):
                    return True
                room[d] += order[i]
        return False

    return place(0)


def run_placement(
    devices: dict[str, int], sizes: dict[str, int], rules: SleepRules, split: bool, trace: list[str]
) -> dict[str, Any]:
    planner = PlacementPlanner(sizes, devices, split=split)
    planner.sleep_rules = rules
    counts = dict(device_over=0, host_over=0, refused=0, needless=0, evictions=0, spread=0)
    running: list[str] = []
    sleeping: list[str] = []
    pins: dict[str, dict[str, float]] = {}
    seconds = 0.0
    decisions = 0
    for step, target in enumerate(trace):
        if target in running:
            planner.on_serve(target, float(step))
            continue
        began = time.perf_counter()
        try:
            evict = list(planner.eviction_for(target, running))
            before = {m: planner.placement_of(m) for m in evict}
            for keep in evict:
                rest = [m for m in running if m == keep or m not in evict]
                if fits(Fraction(sizes[target]), planner.free(rest), split, pins.get(target)):
                    counts["needless"] += 1
            planner.on_swap_start(target, running)
            eviction = planner.residency_for(target, evict, sleeping)
        except Exception:
            counts["refused"] += 1
            continue
        seconds += time.perf_counter() - began
        decisions += 1
        counts["evictions"] += len(evict)
        if target in sleeping:
            sleeping.remove(target)
        pins.pop(target, None)
        for model in eviction.sleep:
            pins[model] = before[model]
        sleeping += eviction.sleep
        for model in evict:
            running.remove(model)
        running.append(target)
        planner.on_serve(target, float(step))
        counts["spread"] += len(planner.placement_of(target)) > 1
        used = dict.fromkeys(devices, Fraction(0))
        for model in running:
            for device, share in planner.placement_of(model).items():
                used[device] += Fraction(share)
        counts["device_over"] += any(used[d] > devices[d] for d in devices)
        counts["host_over"] += rules.host_budget is not None and (
            rules.held_by(sleeping) > rules.host_budget
        )
    counts["decision_us"] = seconds / max(decisions, 1) * 1e6
    counts["swaps"] = decisions
    return counts


def run_one_budget(
    devices: dict[str, int], sizes: dict[str, int], trace: list[str]
) -> dict[str, int]:
    budget = sum(devices.values())
    planner = MemoryBudgetPlanner({m: min(s, budget) for m, s in sizes.items()}, budget)
    running: list[str] = []
    counts = dict(oom_starts=0, evictions=0, swaps=0)
    for step, target in enumerate(trace):
        if target not in running:
            evict = list(planner.eviction_for(target, running))
            planner.on_swap_start(target, running)
            counts["evictions"] += len(evict)
            counts["swaps"] += 1
            running = [m for m in running if m not in evict] + [target]
            if not packable([sizes[m] for m in running], list(devices.values())):
                counts["oom_starts"] += 1
        planner.on_serve(target, float(step))
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    rows: dict[str, dict[str, float]] = {}
    for split in (True, False):
        total: dict[str, float] = {}
        baseline: dict[str, float] = {}
        steps = 0
        for _ in range(args.trials):
            devices, sizes, rules = machine(rng, split)
            names = list(sizes)
            weights = [rng.random() for _ in names]
            trace = rng.choices(names, weights=weights, k=args.steps)
            steps += len(trace)
            for key, value in run_placement(devices, sizes, rules, split, trace).items():
                total[key] = total.get(key, 0) + value
            if not split:
                for key, value in run_one_budget(devices, sizes, trace).items():
                    baseline[key] = baseline.get(key, 0) + value
        total["decision_us"] /= args.trials
        total["steps"] = steps
        rows["placement, split" if split else "placement, whole models"] = total
        if baseline:
            rows["one budget (sum), whole models"] = {**baseline, "steps": steps}
    columns = (
        "steps",
        "swaps",
        "device_over",
        "host_over",
        "refused",
        "needless",
        "oom_starts",
        "evictions",
        "spread",
        "decision_us",
    )
    print(f"{'policy':<32}" + "".join(f"{c:>12}" for c in columns))
    for name, row in rows.items():
        cells = []
        for column in columns:
            value = row.get(column)
            if value is None:
                cells.append(f"{'-':>12}")
            elif column == "decision_us":
                cells.append(f"{value:>12.1f}")
            else:
                cells.append(f"{int(value):>12,}")
        print(f"{name:<32}" + "".join(cells))
    if args.json:
        args.json.write_text(
            json.dumps({"python": platform.python_version(), "rows": rows}, indent=2) + "\n"
        )
    placement_rows = [row for name, row in rows.items() if name.startswith("placement")]
    bad = sum(row[k] for row in placement_rows for k in ("device_over", "host_over", "refused"))
    bad += sum(row["needless"] for row in placement_rows)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
