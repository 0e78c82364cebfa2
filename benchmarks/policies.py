"""Regenerate the policy comparison of docs/policies.md with the ``swapcore simulate`` CLI.

Usage: python benchmarks/policies.py [--img DIR] [--json PATH] [--no-plots] [--grid]

Writes the simulator configuration of docs/policies.md to a temporary
directory, runs ``swapcore simulate`` on the collation example and the four
generated workloads (the exact command lines are printed), prints each
comparison table, draws the timeline pictures into ``--img`` (default
docs/img), and checks the claims the page makes, printing PASS or FAIL for
each. Exit status 1 when a claim fails. Deterministic: the same swapcore
gives the same tables and pictures.

It also prints an offline bound for round-robin and bursts: a search over
every visit order and hold (with the whole trace known in advance) for the
fewest loads that keep every wait within FIFO's own maximum, or within +10%.
That search replays the simulator's rules for one model at a time (checked:
it reproduces FIFO's loads and maximum wait on each workload).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    from swapcore.cli.main import main as swapcore
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from swapcore.cli.main import main as swapcore
from swapcore import MaxLoadedPlanner
from swapcore.sim import ModelProfile, simulate
from swapcore.sim.config import generate_trace
from swapcore.sim.schedulers import SimScheduler, cost_aware, fifo

CONFIG = """\
# docs/policies.md: three models, one loaded at a time; nothing is rejected
models:
  a: {load: 8}
  b: {load: 15}
  c: {load: 30}
planner: max-loaded
scheduler: {use: fifo, default_concurrency_limit: 1000}
"""

SCHEDULERS = (
    "fifo,arrival,cost-aware,fifo:max_wait=30,cost-aware:max_wait=30,"
    "cost-aware:hold=auto,cost-aware:hold=auto;max_wait=30"
)
HOLD = "hold=auto"

# name, generator spec, schedulers for the picture, picture time window
WORKLOADS = [
    (
        "collation",
        "round-robin:models=a,b,c;rounds=4;interval=0.5;service=1",
        "fifo,arrival",
        "0:240",
    ),
    (
        "round-robin",
        "round-robin:models=a,b,c;rounds=20;interval=2;service=2",
        "fifo,arrival,cost-aware",
        "0:300",
    ),
    (
        "poisson",
        "poisson:rates=a:0.3,b:0.15,c:0.05;duration=1800;service=2;seed=1",
        "fifo,cost-aware",
        "0:600",
    ),
    (
        "bursts",
        "bursts:models=a,b,c;burst_size=8;bursts=30;gap=10;spacing=0.5;service=2;seed=1",
        "fifo,arrival",
        "0:300",
    ),
    (
        "dominant",
        "dominant:model=a;rare=b,c;duration=1800;rate=2;rare_every=60;service=4;seed=1",
        "fifo,fifo:max_wait=30",
        "0:600",
    ),
]
# The max_wait sweep: which bound helps where.
SWEEP = ("poisson", "dominant")
SWEEP_SCHEDULERS = ",".join(
    f"{name}:max_wait={bound}" for bound in (30, 60, 120) for name in ("fifo", "cost-aware")
)
MAX_WAIT = 30.0
DOMINANT_SERVICE = 4.0
LOADS = {"a": 8.0, "b": 15.0, "c": 30.0}


def run(argv: list[str]) -> str:
    """Run ``swapcore`` with ``argv``; return its stdout (raise on a non-zero status)."""
    print("$ swapcore " + " ".join(shlex.quote(arg) for arg in argv), file=sys.stderr)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = swapcore(argv)
    if status != 0:
        raise SystemExit(f"swapcore exited with status {status}")
    return out.getvalue()


def runs_by_label(path: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(path.read_text())
    return {run["label"]: run for run in data["runs"]}


def check(results: list[tuple[bool, str]], ok: bool, claim: str) -> None:
    results.append((ok, claim))


def run_workloads(img: Path, no_plots: bool, summary: dict[str, dict[str, Any]]) -> None:
    """Run every workload in the current directory; fill ``summary``; print the tables."""
    config = Path("policies.yaml")
    config.write_text(CONFIG)
    for name, spec, pictured, window in WORKLOADS:
        report = Path(f"{name}.json")
        schedulers = "fifo,arrival" if name == "collation" else SCHEDULERS
        table = run(
            ["simulate", str(config), "--generate", spec, "--compare", schedulers,
             "--json", str(report)]
        )  # fmt: skip
        print(f"## {name}\n\n```\n{table.rstrip()}\n```\n")
        summary[name] = {
            label: {
                "loads": r["total_loads"],
                "p99": r["waits"]["p99"],
                "max": r["waits"]["max"],
                "mean": r["waits"]["mean"],
                "rare_max": {m: r["waits_by_model"][m]["max"] for m in ("b", "c")},
            }
            for label, r in runs_by_label(report).items()
        }
        if name in SWEEP:
            sweep = Path(f"{name}-sweep.json")
            table = run(
                ["simulate", str(config), "--generate", spec, "--compare", SWEEP_SCHEDULERS,
                 "--json", str(sweep)]
            )  # fmt: skip
            print(f"## {name}: max_wait 30 / 60 / 120\n\n```\n{table.rstrip()}\n```\n")
            summary[f"{name}-sweep"] = {
                label: {"loads": r["total_loads"], "p99": r["waits"]["p99"],
                        "max": r["waits"]["max"]}
                for label, r in runs_by_label(sweep).items()
            }  # fmt: skip
        if pictured is not None and not no_plots:
            img.mkdir(parents=True, exist_ok=True)
            run(
                ["simulate", str(config), "--generate", spec, "--compare", pictured,
                 "--plot", str(img / f"policies-{name}.png"),
                 "--plot-range", window, "--plot-size", "9x4"]
            )  # fmt: skip


# -- the offline bound -------------------------------------------------------------

Trace = dict[str, list[tuple[float, float]]]  # model -> [(arrival, service)] in order


def _serve(trace: Trace, model: str, ready: float, p: int) -> tuple[float, int, float]:
    """``model`` ready at ``ready``: its queued requests start, later ones take the fast
    path while it is busy. Returns (idle at, next unserved index, longest wait)."""
    requests, end, longest = trace[model], ready, 0.0
    while p < len(requests) and requests[p][0] <= ready:
        longest = max(longest, ready - requests[p][0])
        end = max(end, ready + requests[p][1])
        p += 1
    while p < len(requests) and requests[p][0] < end:
        end = max(end, requests[p][0] + requests[p][1])
        p += 1
    return end, p, longest


def _decision(trace: Trace, model: str, end: float, ptr: dict[str, int]) -> float | None:
    """When ``model`` idles at ``end``: the time a request for another model is queued
    (its own arrivals in between take the fast path, updating ``ptr``); None: trace over."""
    while True:
        other = min(
            (trace[m][ptr[m]][0] for m in trace if m != model and ptr[m] < len(trace[m])),
            default=math.inf,
        )
        if other <= end:
            return end
        own = trace[model][ptr[model]][0] if ptr[model] < len(trace[model]) else math.inf
        if own == other == math.inf:
            return None
        if own > other:
            return other
        end, ptr[model], _ = _serve(trace, model, own, ptr[model])


def offline_min_loads(
    trace: Trace, bound: float, *, holds: bool, fifo: bool = False
) -> tuple[int, float] | None:
    """The fewest loads (then the lowest maximum wait) with every wait <= ``bound``.

    One model loaded at a time, instant stops. At each moment the loaded model is
    idle while others are queued, the choices are: load a queued model, or (with
    ``holds``) keep the model loaded until its next request. ``fifo=True`` replays
    FIFO instead (load the oldest queued request's model). Exhaustive depth-first
    search with branch and bound, and a memo that drops a state reached later with
    no fewer loads and no lower maximum wait than an earlier one (it could idle until
    then). Returns (loads, max wait) or None when no schedule meets ``bound``.
    """
    best: list[Any] = [math.inf, math.inf, False]
    seen: dict[tuple[str, tuple[int, ...]], list[tuple[float, int, float]]] = {}

    def fits(t: float, model: str, ptr: dict[str, int]) -> bool:
        queued = [(trace[m][ptr[m]], m) for m in trace if m != model and ptr[m] < len(trace[m])]
        queued = [(first, m) for first, m in queued if first[0] <= t]
        for order in itertools.permutations(queued):
            clock, ok = t, True
            for (arrived, service), m in order:
                clock += LOADS[m]
                if clock - arrived > bound + 1e-9:
                    ok = False
                    break
                clock += service
            if ok:
                return True
        return False

    def visit(t: float | None, model: str, ptr: dict[str, int], loads: int, worst: float) -> None:
        if worst > bound + 1e-9:
            return
        if t is None:
            if (loads, worst) < (best[0], best[1]):
                best[:] = [loads, worst, True]
            return
        left = sum(1 for m in trace if m != model and ptr[m] < len(trace[m]))
        if loads + left > best[0] or not fits(t, model, ptr):
            return
        key = (model, tuple(ptr.values()))
        for t0, loads0, worst0 in seen.setdefault(key, []):
            if t0 <= t + 1e-9 and loads0 <= loads and worst0 <= worst + 1e-9:
                return
        seen[key].append((t, loads, worst))
        queued = sorted(
            (trace[m][ptr[m]][0], m)
            for m in trace
            if m != model and ptr[m] < len(trace[m]) and trace[m][ptr[m]][0] <= t
        )
        for _, target in queued[:1] if fifo else queued:
            after = dict(ptr)
            end, after[target], longest = _serve(trace, target, t + LOADS[target], after[target])
            visit(_decision(trace, target, end, after), target, after, loads + 1,
                  max(worst, longest))  # fmt: skip
        if holds and not fifo and ptr[model] < len(trace[model]):
            after = dict(ptr)
            end, after[model], _ = _serve(trace, model, trace[model][ptr[model]][0], after[model])
            visit(_decision(trace, model, end, after), model, after, loads, worst)

    first = min((requests[0][0], m) for m, requests in trace.items() if requests)[1]
    ptr = dict.fromkeys(trace, 0)
    end, ptr[first], longest = _serve(trace, first, trace[first][0][0] + LOADS[first], 0)
    visit(_decision(trace, first, end, ptr), first, ptr, 1, longest)
    return (int(best[0]), float(best[1])) if best[2] else None


def offline_bounds(summary: dict[str, dict[str, Any]], results: list[tuple[bool, str]]) -> None:
    """Print the offline bound next to FIFO on round-robin and bursts."""
    print("## offline bound: fewest loads with every wait within a bound\n\n```")
    print(f"{'workload':12} {'bound':>8}  {'FIFO':>12}  {'visit order':>12}  {'+ holds':>12}")
    for name, spec, _, _ in WORKLOADS:
        if name not in ("round-robin", "bursts"):
            continue
        trace: Trace = {m: [] for m in sorted(LOADS)}
        for arrival in generate_trace(spec):
            trace[arrival.model].append((arrival.at, arrival.service))
        fifo = summary[name]["fifo"]
        replay = offline_min_loads(trace, math.inf, holds=False, fifo=True)
        check(
            results,
            replay is not None
            and replay[0] == fifo["loads"]
            and abs(replay[1] - fifo["max"]) < 1e-6,
            f"{name}: the offline search replays FIFO "
            f"({fifo['loads']} loads, max {fifo['max']:.1f})",
        )
        for label, bound in (("FIFO max", fifo["max"]), ("+10%", 1.1 * fifo["max"])):
            cells = [f"{fifo['loads']} / {fifo['max']:.1f}"]
            for holds in (False, True):
                found = offline_min_loads(trace, bound, holds=holds)
                cells.append("none" if found is None else f"{found[0]} / {found[1]:.1f}")
            print(f"{name:12} {label:>8}  " + "  ".join(f"{c:>12}" for c in cells))
    print("(loads / max wait in seconds)\n```\n")


# -- the seed sweep -----------------------------------------------------------------

SEEDS = range(10)
SWEPT = ("poisson", "bursts", "dominant")  # round-robin and collation have no seed


def _figures(spec: str, scheduler: SimScheduler) -> tuple[int, float, float]:
    """(loads, p99, max wait) of one run of the page's setup, through the Python API."""
    report = simulate(
        generate_trace(spec),
        planner=lambda: MaxLoadedPlanner(1),
        models={m: ModelProfile(load=seconds) for m, seconds in LOADS.items()},
        scheduler=scheduler.with_options(default_concurrency_limit=1000),
    )
    return report.total_loads, report.waits.p99, report.waits.max


def seed_sweep(results: list[tuple[bool, str]]) -> dict[str, dict[str, list[int]]]:
    """Each seeded workload on seeds 0-9: how often cost-aware beats, ties or loses to FIFO.

    Prints one row per workload and pairing (cost-aware against FIFO with the same
    ``max_wait``): seeds with fewer / as many / more loads, with a lower / equal /
    higher p99 wait, and with a max wait more than 10% above FIFO's.
    """
    pairings = [
        (f"cost-aware{label}", cost_aware(**options), fifo(max_wait=bound))
        for bound in (None, MAX_WAIT)
        for label, options in (
            ("" if bound is None else f"(max_wait={bound:g})", {"max_wait": bound}),
            (
                f"({HOLD})" if bound is None else f"({HOLD}, max_wait={bound:g})",
                {"hold": "auto", "max_wait": bound},
            ),
        )
    ]
    print("## seeds 0-9: cost-aware against FIFO with the same max_wait\n\n```")
    heads = ("loads - = +", "p99 - = +", "max >+10%")
    print(f"{'workload':9} {'cost-aware':34} {heads[0]:>12} {heads[1]:>10} {heads[2]:>9}")
    counts: dict[str, dict[str, list[int]]] = {}
    for name, spec, _, _ in WORKLOADS:
        if name not in SWEPT:
            continue
        for label, ours, theirs in pairings:
            tally = [0] * 7
            for seed in SEEDS:
                seeded = spec.replace("seed=1", f"seed={seed}")
                mine, fifos = _figures(seeded, ours), _figures(seeded, theirs)
                tally[(mine[0] > fifos[0]) - (mine[0] < fifos[0]) + 1] += 1
                tally[4 + (mine[1] > fifos[1]) - (mine[1] < fifos[1])] += 1
                tally[6] += mine[2] > 1.1 * fifos[2]
            counts.setdefault(name, {})[label] = tally
            loads, p99 = " ".join(map(str, tally[:3])), " ".join(map(str, tally[3:6]))
            print(f"{name:9} {label:34} {loads:>12} {p99:>10} {tally[6]:>9}")
    print(f"({len(SEEDS)} seeds each; - fewer or lower, = the same, + more or higher)\n```\n")
    for name, rows in counts.items():
        worst = max(tally[6] for tally in rows.values())
        check(results, worst == 0, f"{name}, seeds 0-9: cost-aware max wait within +10% of FIFO's")
    poisson = counts["poisson"][f"cost-aware({HOLD})"]
    check(
        results,
        poisson[0] == len(SEEDS),
        f"poisson, seeds 0-9: cost-aware({HOLD}) needs fewer loads than FIFO on "
        f"{poisson[0]} of {len(SEEDS)} seeds",
    )
    return counts


# -- the parameter grid -------------------------------------------------------------

GRID = {
    "round-robin": [
        f"round-robin:models=a,b,c;rounds=20;interval={interval};service={service}"
        for interval in (0.5, 1, 2, 4, 8, 15)
        for service in (1, 2, 5)
    ],
    "poisson": [
        f"poisson:rates=a:{a},b:{b},c:{c};duration=1800;service={service};seed={{seed}}"
        for a, b, c in ((0.3, 0.15, 0.05), (0.1, 0.1, 0.1), (0.05, 0.02, 0.01), (0.5, 0.1, 0.02))
        for service in (1, 2, 5)
    ],
    "bursts": [
        f"bursts:models=a,b,c;burst_size={size};bursts=30;gap={gap};spacing={spacing};"
        "service=2;seed={seed}"
        for gap in (0, 2, 5, 10, 20, 40)
        for size in (2, 4, 8)
        for spacing in (0.2, 1, 3)
    ],
    "dominant": [
        f"dominant:model=a;rare=b,c;duration=1800;rate={rate};rare_every={every};"
        f"service={service};seed={{seed}}"
        for rate in (0.5, 1, 2)
        for every in (20, 60, 180)
        for service in (1, 4)
    ],
}
GRID_SEEDS = range(5)


def _verdict(ours: tuple[int, float, float], theirs: tuple[int, float, float]) -> str:
    """W: fewer loads or a lower p99 and neither worse; M: one better, one worse;
    T: the same loads and p99; L: worse only; X: a max wait above FIFO's + 10%."""
    if ours[2] > 1.1 * theirs[2] + 1e-9:
        return "X"
    better = ours[0] < theirs[0] or ours[1] < theirs[1] - 1e-9
    worse = ours[0] > theirs[0] or ours[1] > theirs[1] + 1e-9
    return "M" if better and worse else "W" if better else "L" if worse else "T"


def parameter_grid() -> dict[str, dict[str, dict[str, int]]]:
    """Every generator over a grid of its parameters (5 seeds each where seeded)."""
    print("## parameter grid: cost-aware against FIFO with the same max_wait\n\n```")
    heads = " ".join(f"{k:>4}" for k in "WMTLX")
    print(f"{'workload':12} {'runs':>5}  {'cost-aware':34} {heads}")
    found: dict[str, dict[str, dict[str, int]]] = {}
    for bound in (None, MAX_WAIT):
        for name, specs in GRID.items():
            for label, options in (("", {}), (f"({HOLD})", {"hold": "auto"})):
                if bound is not None:
                    label = f"({label[1:-1] + ', ' if label else ''}max_wait={bound:g})"
                counts = dict.fromkeys("WMTLX", 0)
                for spec in specs:
                    for seed in GRID_SEEDS if "{seed}" in spec else (0,):
                        concrete = spec.format(seed=seed)
                        ours = _figures(concrete, cost_aware(max_wait=bound, **options))
                        counts[_verdict(ours, _figures(concrete, fifo(max_wait=bound)))] += 1
                found.setdefault(name, {})[f"cost-aware{label}"] = counts
                runs = sum(counts.values())
                cells = " ".join(f"{counts[k]:>4}" for k in "WMTLX")
                print(f"{name:12} {runs:>5}  {'cost-aware' + label:34} {cells}")
    print(
        "(W fewer loads or lower p99, neither worse; M one better, one worse; "
        "T the same; L worse; X max wait > FIFO's + 10%)\n```\n"
    )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--img", type=Path, default=root / "docs" / "img")
    parser.add_argument("--json", type=Path, help="write every run's summary here")
    parser.add_argument("--no-plots", action="store_true", help="tables and checks only")
    parser.add_argument(
        "--grid", action="store_true", help="also run every generator over a parameter grid"
    )
    args = parser.parse_args(argv)
    results: list[tuple[bool, str]] = []
    summary: dict[str, dict[str, Any]] = {}
    img = args.img.resolve()
    home = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the commands and tables then name the config as the page does
        try:
            run_workloads(img, args.no_plots, summary)
        finally:
            os.chdir(home)
    offline_bounds(summary, results)
    sweep = seed_sweep(results)
    grid = parameter_grid() if args.grid else None
    collation = summary["collation"]
    check(results, collation["fifo"]["loads"] == 3, "A B C x4: FIFO 3 loads")
    check(results, collation["arrival"]["loads"] == 12, "A B C x4: arrival order 12 loads")
    dom = summary["dominant"]
    for model in ("b", "c"):
        bound = MAX_WAIT + DOMINANT_SERVICE + LOADS[model]
        got = dom["fifo(max_wait=30)"]["rare_max"][model]
        check(
            results, got <= bound, f"dominant, max_wait=30: {model} max wait {got:.1f} <= {bound:g}"
        )
    unbounded = dom["fifo"]["rare_max"]["c"]
    check(results, unbounded > 10 * MAX_WAIT, f"dominant, no max_wait: c waits {unbounded:.1f} s")
    wins: dict[str, str] = {}
    for name in ("round-robin", "poisson", "bursts", "dominant"):
        for ours_label, suffix in (
            ("cost-aware", ""),
            ("cost-aware(max_wait=30)", "(max_wait=30)"),
            (f"cost-aware({HOLD})", ""),
            (f"cost-aware({HOLD}, max_wait=30)", "(max_wait=30)"),
        ):
            ours, theirs = summary[name][ours_label], summary[name][f"fifo{suffix}"]
            if ours["loads"] < theirs["loads"] or ours["p99"] < theirs["p99"]:
                wins.setdefault(name, ours_label)  # with or without max_wait
            ratio = ours["max"] / theirs["max"] if theirs["max"] else 1.0
            check(
                results,
                ratio <= 1.10,
                f"{name}: {ours_label} max wait {ours['max']:.1f} vs FIFO{suffix} "
                f"{theirs['max']:.1f} ({(ratio - 1) * 100:+.1f}%) within +10%",
            )
    check(
        results,
        len(wins) >= 2,
        "cost-aware beats FIFO on loads or p99 on >= 2 workloads: "
        + (", ".join(f"{name} ({label})" for name, label in wins.items()) or "none"),
    )
    print("## checks\n")
    for ok, claim in results:
        print(f"{'PASS' if ok else 'FAIL'}  {claim}")
    if args.json:
        args.json.write_text(json.dumps({**summary, "seeds": sweep, "grid": grid}, indent=1) + "\n")
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
