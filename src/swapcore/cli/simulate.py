"""``swapcore simulate CONFIG [TRACE]``: replay a trace against schedulers and planners.

Reads a simulator configuration or a llama-swap ``config.yaml``
(:func:`swapcore.sim.config.load_sim_config`) and a JSON Lines trace (or
generates one with ``--generate``), runs the simulator once per scheduler x
planner, and prints the report as a table (several runs side by side).
``--patience`` makes callers give up after waiting that long. ``--json``
writes the reports, ``--plot`` a timeline picture. ``--replicas N``
simulates a cluster of N hosts, each running the configuration, with
``--cluster-policy`` choosing the host of each request
(:func:`swapcore.sim.simulate_cluster`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import attrs

from swapcore.errors import ConfigError, SwapcoreError

__all__ = ["register"]

_HELP = """\
examples:
  swapcore simulate sim.yaml trace.jsonl
  swapcore simulate sim.yaml --generate 'round-robin:models=a,b,c;rounds=4'
  swapcore simulate config.yaml trace.jsonl --compare fifo,arrival,cost-aware,'fifo:max_wait=30'
  swapcore simulate sim.yaml trace.jsonl --planner max-loaded:n=1 --planner max-loaded:n=2
  swapcore simulate sim.yaml trace.jsonl --plot timeline.png --json report.json
  swapcore simulate sim.yaml trace.jsonl --patience 60    # callers give up after 60 s
  swapcore simulate config.yaml trace.jsonl --replicas 3  # 3 hosts, each with config.yaml
  swapcore simulate sim.yaml trace.jsonl --replicas 3 --cluster-policy affinity:spill=4

schedulers: fifo, arrival, cost-aware; options after ':' separated by ';'
  (fifo:max_wait=30;default_concurrency_limit=4; max_wait=none removes the bound)
planners: config (the file's own), max-loaded:n=N, memory:budget=B (profiles' sizes),
  placement[:split=false] (the file's devices)
generators: round-robin, poisson, bursts, dominant (see docs/simulator.md)
cluster policies: affinity[:spill=N] (load a second copy where there is room once
  every holder has N requests queued)
"""


def register(subparsers: Any) -> None:
    """Add the ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="replay a request trace against schedulers and planners on a virtual clock",
        description=(
            "Replay a request trace with the real scheduler and planner on a virtual clock "
            "and report loads, waits and model usage."
        ),
        epilog=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", metavar="CONFIG", help="simulator config or llama-swap config")
    parser.add_argument("trace", metavar="TRACE", nargs="?", help="JSON Lines trace")
    parser.add_argument(
        "--generate", metavar="SPEC", help="generate the trace, e.g. 'round-robin:models=a,b'"
    )
    parser.add_argument("--save-trace", metavar="PATH", help="write the trace used as JSONL")
    parser.add_argument("--scheduler", metavar="SPEC", help="the scheduler (default: the config's)")
    parser.add_argument(
        "--compare", metavar="SPECS", help="comma-separated schedulers to run side by side"
    )
    parser.add_argument(
        "--planner",
        metavar="SPEC",
        action="append",
        help="planner (repeatable: runs every scheduler with every planner; default: config)",
    )
    parser.add_argument(
        "--load",
        metavar="MODEL=SECONDS",
        action="append",
        default=[],
        help="override a model's load seconds (repeatable, or comma-separated)",
    )
    parser.add_argument(
        "--default-load",
        metavar="SECONDS",
        type=float,
        default=None,
        help="load seconds assumed for llama-swap models without one (default 10)",
    )
    parser.add_argument(
        "--allow-unsupported",
        action="store_true",
        help="read a llama-swap config as `swapcore serve --allow-unsupported` does: keys "
        "swapcore does not implement that would change what is sent upstream are warnings",
    )
    parser.add_argument(
        "--no-recorded-costs",
        action="store_true",
        help="ignore the swap costs a recorded TRACE holds (default: each model's measured "
        "load, wake, stop and sleep seconds replace the configured ones)",
    )
    parser.add_argument(
        "--patience",
        metavar="SECONDS",
        help="callers not granted within SECONDS give up (arrivals without their own patience)",
    )
    parser.add_argument(
        "--replicas",
        metavar="N",
        help="simulate a cluster of N replicas (hosts), each running the config and planner",
    )
    parser.add_argument(
        "--cluster-policy",
        metavar="SPEC",
        help="which replica serves each request: affinity (default), affinity:spill=N",
    )
    parser.add_argument("--json", metavar="PATH", help="write the report(s) as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a timeline picture (matplotlib)")
    parser.add_argument(
        "--plot-range", metavar="START:END", help="time window of the picture, in seconds"
    )
    parser.add_argument(
        "--plot-size",
        metavar="WxH",
        help="picture size in inches at 100 dpi (default 9 wide, height by panels)",
    )
    parser.set_defaults(handler=run)


def _loads(values: list[str]) -> dict[str, float]:
    loads: dict[str, float] = {}
    for value in values:
        for part in value.split(","):
            if not part.strip():
                continue
            model, sep, seconds = part.partition("=")
            try:
                number = float(seconds)
            except ValueError:
                number = -1.0
            if not sep or not model.strip() or not number >= 0 or number == float("inf"):
                raise ConfigError(f"--load: expected MODEL=SECONDS (seconds >= 0), got {part!r}")
            loads[model.strip()] = number
    return loads


def _patience(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"--patience: expected a number of seconds > 0, got {text!r}")
    return seconds


def _replicas(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"--replicas: expected a whole number >= 1, got {text!r}")
    return count


def _range(text: str | None) -> tuple[float | None, float | None]:
    if text is None:
        return None, None
    first, sep, second = text.partition(":")
    try:
        start = float(first) if first.strip() else None
        end = float(second) if second.strip() else None
    except ValueError:
        start = end = -1.0
    if not sep or (start is not None and start < 0) or (end is not None and end < 0):
        raise ConfigError(f"--plot-range: expected START:END in seconds, got {text!r}")
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"--plot-range: END must be after START, got {text!r}")
    return start, end


def _size(text: str | None) -> tuple[float, float | None]:
    if text is None:
        return 9.0, None
    width, sep, height = text.lower().partition("x")
    try:
        size = (float(width), float(height))
    except ValueError:
        size = (0.0, 0.0)
    if not sep or not (0 < size[0] <= 100 and 0 < size[1] <= 100):
        raise ConfigError(f"--plot-size: expected WIDTHxHEIGHT in inches, e.g. 9x4, got {text!r}")
    return size


def run(args: argparse.Namespace) -> int:
    """Run the simulations and print the report; returns the exit status."""
    from swapcore.sim import (
        format_comparison,
        format_report,
        read_trace,
        simulate,
        simulate_cluster,
        write_trace,
    )
    from swapcore.sim.config import (
        DEFAULT_LOAD,
        cluster_policy_from_spec,
        generate_trace,
        load_sim_config,
        planner_from_spec,
        scheduler_from_spec,
    )

    if (args.trace is None) == (args.generate is None):
        raise ConfigError("give either a TRACE file or --generate SPEC (exactly one)")
    if args.scheduler is not None and args.compare is not None:
        raise ConfigError("--scheduler and --compare are exclusive (put it in --compare)")
    patience = _patience(args.patience)
    replicas = _replicas(args.replicas)
    if args.cluster_policy is not None and replicas is None:
        raise ConfigError("--cluster-policy needs --replicas N (it routes between replicas)")
    plot_range = _range(args.plot_range)
    width, height = _size(args.plot_size)
    default_load = DEFAULT_LOAD if args.default_load is None else args.default_load
    if not default_load >= 0 or default_load == float("inf"):
        raise ConfigError(f"--default-load: must be a number of seconds >= 0, got {default_load}")
    overrides = _loads(args.load)
    config = load_sim_config(
        args.config,
        loads=overrides,
        default_load=default_load,
        allow_unsupported=args.allow_unsupported,
    )
    recorded = None
    if args.trace is not None and not args.no_recorded_costs:
        from swapcore.sim.record import read_recorded

        recorded = read_recorded(args.trace)
        config = config.with_recorded(recorded, keep=overrides)
    for warning in config.warnings:
        print(f"warning: {config.source}: {warning}", file=sys.stderr)
    for note in config.notes:
        print(f"note: {note}", file=sys.stderr)

    if args.trace is not None:
        trace = read_trace(args.trace)
        trace_name = args.trace
    else:
        trace = generate_trace(args.generate)
        trace_name = args.generate
    if config.aliases:
        trace = [
            attrs.evolve(a, model=config.aliases[a.model]) if a.model in config.aliases else a
            for a in trace
        ]
    if args.save_trace:
        write_trace(trace, args.save_trace)

    defaults = config.scheduler_defaults
    if args.compare is not None:
        specs = [spec for spec in args.compare.split(",") if spec.strip()]
        if not specs:
            raise ConfigError("--compare: name at least one scheduler")
        schedulers = [scheduler_from_spec(spec, defaults=defaults) for spec in specs]
    elif args.scheduler is not None:
        schedulers = [scheduler_from_spec(args.scheduler, defaults=defaults)]
    else:
        schedulers = [config.scheduler]
    planners = [
        planner_from_spec(spec, models=config.models, config=config)
        for spec in (args.planner or ["config"])
    ]
    policy = None
    if replicas is not None:
        policy = cluster_policy_from_spec(args.cluster_policy or "affinity")

    reports: dict[str, Any] = {}
    for planner in planners:
        for scheduler in schedulers:
            if len(planners) == 1:
                label = scheduler.label
            elif len(schedulers) == 1:
                label = planner.name
            else:
                label = f"{scheduler.label} / {planner.name}"
            if label in reports:
                raise ConfigError(f"--compare: {label!r} is given twice")
            if replicas is not None:
                reports[label] = simulate_cluster(
                    trace,
                    replicas=replicas,
                    planner=planner,
                    models=config.models,
                    scheduler=scheduler,
                    policy=policy,
                    patience=patience,
                    host_budget=config.host_budget,
                    devices=config.devices,
                )
                continue
            reports[label] = simulate(
                trace,
                planner=planner,
                models=config.models,
                scheduler=scheduler,
                patience=patience,
                host_budget=config.host_budget,
                devices=config.devices,
            )

    span = trace[-1].at - trace[0].at if trace else 0.0
    print(f"trace:  {trace_name}: {len(trace)} requests over {span:.1f} s")
    print(f"config: {config.source} ({config.kind}; {len(config.models)} models)")
    if patience is not None:
        print(f"patience: {patience:g} s (callers not granted by then give up)")
    if recorded is not None and (recorded.cold_loads or recorded.wakes):
        real_loads, real_wakes = sum(recorded.cold_loads.values()), sum(recorded.wakes.values())
        print(f"recorded: {real_loads} cold loads, {real_wakes} wakes in the real run")
    if replicas is not None:
        _print_clusters(reports)
    elif len(reports) == 1:
        print(format_report(next(iter(reports.values()))))
    else:
        print(format_comparison(reports))

    if args.json:
        data = {
            "config": config.source,
            "trace": trace_name,
            "patience": patience,
            "replicas": replicas,
            "recorded": None
            if recorded is None
            else {"cold_loads": recorded.cold_loads, "wakes": recorded.wakes},
            "runs": [{"label": label, **r.to_dict()} for label, r in reports.items()],
        }
        with open(args.json, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=1)
            stream.write("\n")
    if args.plot:
        from swapcore.sim.plot import plot_timeline

        pictured = reports if replicas is None else _per_replica(reports)
        try:
            plot_timeline(
                pictured,
                args.plot,
                start=plot_range[0],
                end=plot_range[1],
                width=width,
                height=height,
            )
        except ImportError as exc:
            raise SwapcoreError(f"--plot: {exc}") from None
    return 0


def _print_clusters(reports: dict[str, Any]) -> None:
    """Each cluster run's table; a title line per run when there are several."""
    from swapcore.sim import format_cluster_report

    for index, (label, report) in enumerate(reports.items()):
        if len(reports) > 1:
            print(("\n" if index else "") + f"== {label} ==")
        print(format_cluster_report(report))


def _per_replica(reports: dict[str, Any]) -> dict[str, Any]:
    """One timeline panel per replica of each cluster run (labelled with the run when several)."""
    panels = {}
    for label, cluster in reports.items():
        for replica, report in cluster.replicas.items():
            panels[replica if len(reports) == 1 else f"{label} {replica}"] = report
    return panels
