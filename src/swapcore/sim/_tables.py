"""The plain-text tables of simulation reports: one run, or several side by side.

:func:`format_report` and :func:`format_comparison` are public as
``swapcore.sim.format_report`` and ``swapcore.sim.report.format_report`` (and
the same for ``format_comparison``); they live here to keep the report's
data classes in a module of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swapcore.sim.report import SimReport

__all__ = ["format_comparison", "format_report"]


def _num(value: float) -> str:
    """Seconds for a table: 1 decimal under 1,000, whole seconds above."""
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def _count(value: int | None) -> str:
    """A count for a table, with thousands separators."""
    return "-" if value is None else f"{value:,}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def _outcome_text(report: SimReport) -> str:
    parts = [
        f"{count} {name.replace('_', ' ')}" for name, count in report.outcomes.items() if count
    ]
    return ", ".join(parts) or "no requests"


def _device_peak(report: SimReport, device: str) -> str:
    """``peak/budget`` of one device, marked ``over`` past its budget."""
    assert report.peak_devices is not None and report.devices is not None
    peak, budget = report.peak_devices.get(device), report.devices.get(device)
    if peak is None or budget is None:
        return "-"
    return f"{peak:g}/{budget:g}" + (" over" if peak > budget * (1 + 1e-9) else "")


def _devices_text(report: SimReport) -> str:
    """One line: each device's peak against its budget, then overcommits and splits."""
    assert report.peak_devices is not None
    peaks = ", ".join(f"{d} {_device_peak(report, d)}" for d in report.peak_devices)
    return (
        f"peak {peaks}   overcommitted loads: {report.overcommits:,}"
        f"   split loads: {report.split_loads:,}"
    )


def format_report(report: SimReport) -> str:
    """The report as a plain-text table: a header, then one row per model and a total row.

    Columns: requests, served, abandoned (only when a request gave up),
    loads (cold), wakes and sleeps (only when a model slept), wait
    p50/p95/p99/max (served requests) and the seconds each model spent
    loading, busy and idle. The header gives the peak memory when known, the
    idle-TTL unloads when any, each device's peak use against its budget
    (with the overcommitted and split loads) when the run has devices, the
    swap seconds and peak host memory when a model slept, and the errors of
    failed and rejected requests.
    """
    abandoned = report.abandoned > 0
    tiers = report.total_wakes > 0 or report.total_sleeps > 0
    header = [
        "model",
        "requests",
        "served",
        *(["abandoned"] if abandoned else []),
        "loads",
        *(["wakes", "sleeps"] if tiers else []),
        "wait p50",
        "p95",
        "p99",
        "max",
        "loading",
        "busy",
        "idle",
    ]
    rows: list[list[str]] = []
    for model, stats in report.waits_by_model.items():
        usage = report.usage.get(model)
        requests = sum(1 for r in report.requests if r.model == model) if usage is None else None
        rows.append(
            [
                model,
                _count(usage.requests if usage is not None else requests),
                _count(stats.count),
                *([_count(usage.abandoned if usage is not None else 0)] if abandoned else []),
                _count(usage.loads) if usage is not None else "-",
                *(
                    [_count(usage.wakes), _count(usage.sleeps)]
                    if tiers and usage is not None
                    else ["-", "-"]
                    if tiers
                    else []
                ),
                _num(stats.p50),
                _num(stats.p95),
                _num(stats.p99),
                _num(stats.max),
                _num(usage.loading) if usage is not None else "-",
                _num(usage.busy) if usage is not None else "-",
                _num(usage.idle) if usage is not None else "-",
            ]
        )
    total = report.waits
    rows.append(
        [
            "(all)",
            _count(len(report.requests)),
            _count(total.count),
            *([_count(report.abandoned)] if abandoned else []),
            _count(report.total_loads),
            *([_count(report.total_wakes), _count(report.total_sleeps)] if tiers else []),
            _num(total.p50),
            _num(total.p95),
            _num(total.p99),
            _num(total.max),
            _num(sum(u.loading for u in report.usage.values())),
            _num(sum(u.busy for u in report.usage.values())),
            _num(sum(u.idle for u in report.usage.values())),
        ]
    )
    lines = [
        f"scheduler: {report.scheduler}",
        f"planner:   {report.planner}",
        f"requests:  {_outcome_text(report)}",
        f"makespan:  {_num(report.makespan)} s"
        + (f"   peak memory: {report.peak_memory:g}" if report.peak_memory is not None else "")
        + (f"   ttl unloads: {report.ttl_unloads:,}" if report.ttl_unloads else ""),
    ]
    if report.peak_devices is not None:
        lines.append(f"devices:   {_devices_text(report)}")
    if tiers:
        host = report.peak_host_memory
        lines.append(
            f"swaps:     {_num(report.swap_seconds)} s in {report.total_loads:,} cold loads, "
            f"{report.total_wakes:,} wakes, {report.total_stops:,} stops, "
            f"{report.total_sleeps:,} sleeps"
            + (f"   peak host memory: {host:g}" if host is not None else "")
        )
    lines += [
        "",
        _table(header, rows),
        "(waits and times in seconds; waits over served requests)",
    ]
    for error, count in report.errors.items():
        lines.append(f"{count:,} x {error}")
    return "\n".join(lines)


def format_comparison(reports: Mapping[str, SimReport]) -> str:
    """Several runs side by side: one column per run (keyed by label), one row per figure.

    Rows: loads, wakes, sleeps, stops, swap seconds and peak host memory
    (when a model slept in some run), idle-TTL unloads (when any run has one),
    the peak memory, each device's peak against its budget, the overcommitted
    and the split loads (when a run has devices), wait
    p50/p95/p99/max/mean (served requests), makespan, request outcomes
    (those some run has, ``abandoned`` among them), then per model its
    loads, abandoned requests (when some run has one for it), p99 and max
    wait.
    """
    labels = list(reports)
    runs = list(reports.values())
    rows: list[list[str]] = []

    def add(name: str, cells: Sequence[str]) -> None:
        rows.append([name, *cells])

    add("loads", [_count(r.total_loads) for r in runs])
    if any(r.total_wakes or r.total_sleeps for r in runs):
        add("wakes", [_count(r.total_wakes) for r in runs])
        add("sleeps", [_count(r.total_sleeps) for r in runs])
        add("stops", [_count(r.total_stops) for r in runs])
        add("swap seconds", [_num(r.swap_seconds) for r in runs])
        if any(r.peak_host_memory for r in runs):
            add(
                "peak host memory",
                [
                    f"{r.peak_host_memory:g}" if r.peak_host_memory is not None else "-"
                    for r in runs
                ],
            )
    if any(r.ttl_unloads for r in runs):
        add("ttl unloads", [_count(r.ttl_unloads) for r in runs])
    if any(r.peak_devices is not None for r in runs):
        add(
            "peak memory",
            [f"{r.peak_memory:g}" if r.peak_memory is not None else "-" for r in runs],
        )
        devices: dict[str, None] = {}
        for r in runs:
            devices.update(dict.fromkeys(r.peak_devices or {}))
        for device in devices:
            add(
                f"peak {device}",
                [_device_peak(r, device) if r.peak_devices is not None else "-" for r in runs],
            )
        add("overcommitted loads", [_count(r.overcommits) for r in runs])
        add("split loads", [_count(r.split_loads) for r in runs])
    for field in ("p50", "p95", "p99", "max", "mean"):
        add(f"wait {field}", [_num(getattr(r.waits, field)) for r in runs])
    add("makespan", [_num(r.makespan) for r in runs])
    for outcome in dict.fromkeys(name for r in runs for name in r.outcomes):
        if any(r.outcomes.get(outcome) for r in runs):
            add(outcome.replace("_", " "), [_count(r.outcomes.get(outcome, 0)) for r in runs])
    models: dict[str, None] = {}
    for r in runs:
        models.update(dict.fromkeys(r.waits_by_model))
    for model in models:
        add(f"{model}: loads", [_count(r.loads_per_model.get(model, 0)) for r in runs])
        gave_up = [r.usage[model].abandoned if model in r.usage else 0 for r in runs]
        if any(gave_up):
            add(f"{model}: abandoned", [_count(count) for count in gave_up])
        for field in ("p99", "max"):
            add(
                f"{model}: wait {field}",
                [
                    _num(getattr(r.waits_by_model[model], field))
                    if model in r.waits_by_model
                    else "-"
                    for r in runs
                ],
            )
    planners = {r.planner for r in runs}
    head = [f"planner: {runs[0].planner}"] if len(planners) == 1 and runs else []
    return "\n".join(
        [*head, "", _table(["", *labels], rows), "(waits and times in seconds)"]
        if head
        else [_table(["", *labels], rows), "(waits and times in seconds)"]
    )
