"""Regenerate the policy comparison of docs/policies.md with the ``swapcore simulate`` CLI.

Usage: python benchmarks/policies.py [--img DIR] [--json PATH] [--no-plots]

Writes the simulator configuration of docs/policies.md to a temporary
directory, runs ``swapcore simulate`` on the collation example and the four
generated workloads (the exact command lines are printed), prints each
comparison table, draws the timeline pictures into ``--img`` (default
docs/img), and checks the claims the page makes, printing PASS or FAIL for
each. Exit status 1 when a claim fails. Deterministic: the same swapcore
gives the same tables and pictures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
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
    "cost-aware:hold=2,cost-aware:hold=2;max_wait=30"
)
HOLD = "hold=2"

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--img", type=Path, default=root / "docs" / "img")
    parser.add_argument("--json", type=Path, help="write every run's summary here")
    parser.add_argument("--no-plots", action="store_true", help="tables and checks only")
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
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
