"""What a simulation reports: loads, waits, usage and the timeline, as data and as tables.

:class:`SimReport` is the result of :func:`~swapcore.sim.simulate`. Its parts
are frozen attrs classes: :class:`WaitStats` (nearest-rank percentiles),
:class:`RequestRecord` (one per arrival, whatever its outcome),
:class:`LoadInterval` (one per load) and :class:`ModelUsage` (per model
loads, loading, ready, busy and idle seconds). :func:`format_report` and
:func:`format_comparison` render plain-text tables; :meth:`SimReport.to_dict`
gives JSON-ready data.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from swapcore.sim.traces import Arrival

__all__ = [
    "FAILED",
    "NOT_FOUND",
    "OUTCOMES",
    "REJECTED",
    "SERVED",
    "UNFINISHED",
    "LoadInterval",
    "ModelUsage",
    "RequestRecord",
    "SimReport",
    "WaitStats",
    "build_report",
    "format_comparison",
    "format_report",
]

SERVED = "served"
"""Outcome: the request was granted and served for its service seconds."""
REJECTED = "rejected"
"""Outcome: refused at once, the model's concurrency limit was reached (HTTP 429)."""
NOT_FOUND = "not_found"
"""Outcome: the model has no profile in the simulation (HTTP 404)."""
FAILED = "failed"
"""Outcome: any other routing error (a failed swap, an unload, a shutdown)."""
UNFINISHED = "unfinished"
"""Outcome: still waiting when nothing was left to happen (a scheduler that stalls)."""
OUTCOMES = (SERVED, REJECTED, NOT_FOUND, FAILED, UNFINISHED)
"""Every outcome, in report order."""


def _frozen(value: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return types.MappingProxyType(dict(value))


def _nearest_rank(ordered: Sequence[float], percent: float) -> float:
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


@attrs.frozen
class WaitStats:
    """Wait percentiles in seconds over ``count`` served requests (all 0.0 when none).

    Percentiles are nearest-rank: ``p95`` is the smallest wait that at least
    95% of the requests did not exceed; ``max`` is the longest wait.
    """

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, waits: Sequence[float]) -> WaitStats:
        """The statistics of ``waits`` (any order)."""
        if not waits:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        ordered = sorted(waits)
        return cls(
            len(ordered),
            math.fsum(ordered) / len(ordered),
            _nearest_rank(ordered, 50),
            _nearest_rank(ordered, 95),
            _nearest_rank(ordered, 99),
            ordered[-1],
        )


@attrs.frozen
class RequestRecord:
    """One arrival and what became of it.

    ``id`` is the arrival's position in the (time-sorted) trace. ``outcome``
    is one of :data:`OUTCOMES`. For a served request ``started`` is the
    grant time, ``finished`` = ``started`` + ``service`` and ``wait`` =
    ``started`` - ``arrived``. For a failed one ``started`` is None,
    ``finished`` the time of the error and ``wait`` the time until it; an
    unfinished one has ``finished`` None and ``wait`` up to the end of the
    simulation. ``error`` is the error's type and message, or None.
    """

    id: int
    model: str
    arrived: float
    service: float
    started: float | None
    finished: float | None
    wait: float
    outcome: str
    error: str | None = None


@attrs.frozen
class LoadInterval:
    """One load of ``model``: loading from ``start``, ready at ``ready``, stopped at ``end``.

    ``stop_began`` is when its eviction began (None when it was still loaded
    at the end of the simulation, which is then ``end``). ``ready`` is None
    only for a load that never finished.
    """

    model: str
    start: float
    ready: float | None
    end: float
    stop_began: float | None = None

    @property
    def loading(self) -> float:
        """Seconds spent loading."""
        return (self.ready if self.ready is not None else self.end) - self.start

    @property
    def ready_time(self) -> float:
        """Seconds ready to serve (until its stop began, or the end)."""
        if self.ready is None:
            return 0.0
        until = self.stop_began if self.stop_began is not None else self.end
        return max(0.0, until - self.ready)


@attrs.frozen
class ModelUsage:
    """Per-model totals: ``loads``, seconds ``loading``, ``ready``, ``busy`` and ``idle``.

    ``busy`` counts the seconds with at least one request in flight; ``idle``
    the seconds ready with none (``ready`` - ``busy``). ``requests`` counts
    the model's arrivals, ``served`` those served. ``ttl_unloads`` counts
    the unloads its idle TTL caused (:attr:`ModelProfile.ttl
    <swapcore.sim.profiles.ModelProfile.ttl>`).
    """

    loads: int
    loading: float
    ready: float
    busy: float
    idle: float
    requests: int
    served: int
    ttl_unloads: int = 0


def _records(value: Sequence[RequestRecord]) -> tuple[RequestRecord, ...]:
    return tuple(value)


def _intervals(value: Sequence[LoadInterval]) -> tuple[LoadInterval, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class SimReport:
    """The result of one simulation run.

    ``waits`` covers the served requests; ``waits_by_model`` has an entry
    for every model with a profile or an arrival. ``makespan`` is the clock
    value at which the last request finished (or failed). ``timeline`` lists
    every load in start order. ``outcomes`` counts requests per outcome
    (every outcome present, 0 when none). ``peak_memory`` is the largest
    total size of loaded models (loading, ready or stopping), or None when a
    model has no size. ``events`` counts the events the engine processed.
    """

    scheduler: str
    planner: str
    total_loads: int
    loads_per_model: Mapping[str, int] = attrs.field(converter=_frozen)
    waits: WaitStats
    waits_by_model: Mapping[str, WaitStats] = attrs.field(converter=_frozen)
    makespan: float
    requests: Sequence[RequestRecord] = attrs.field(converter=_records)
    timeline: Sequence[LoadInterval] = attrs.field(converter=_intervals)
    usage: Mapping[str, ModelUsage] = attrs.field(converter=_frozen)
    outcomes: Mapping[str, int] = attrs.field(converter=_frozen)
    peak_memory: float | None = None
    events: int = 0

    @property
    def served(self) -> int:
        """How many requests were served."""
        return self.outcomes[SERVED]

    @property
    def rejected(self) -> int:
        """How many requests the concurrency limit refused."""
        return self.outcomes[REJECTED]

    @property
    def ttl_unloads(self) -> int:
        """How many unloads the models' idle TTLs caused, in total."""
        return sum(usage.ttl_unloads for usage in self.usage.values())

    @property
    def busy(self) -> Mapping[str, float]:
        """Seconds each model had a request in flight."""
        return {model: usage.busy for model, usage in self.usage.items()}

    @property
    def idle(self) -> Mapping[str, float]:
        """Seconds each model was ready with nothing in flight."""
        return {model: usage.idle for model, usage in self.usage.items()}

    def to_dict(self, *, requests: bool = True) -> dict[str, Any]:
        """The report as JSON-ready data (``requests`` False leaves out the per-request list)."""
        data: dict[str, Any] = {
            "scheduler": self.scheduler,
            "planner": self.planner,
            "total_loads": self.total_loads,
            "loads_per_model": dict(self.loads_per_model),
            "waits": attrs.asdict(self.waits),
            "waits_by_model": {m: attrs.asdict(w) for m, w in self.waits_by_model.items()},
            "makespan": self.makespan,
            "outcomes": dict(self.outcomes),
            "usage": {m: attrs.asdict(u) for m, u in self.usage.items()},
            "peak_memory": self.peak_memory,
            "events": self.events,
            "timeline": [attrs.asdict(i) for i in self.timeline],
        }
        if requests:
            data["requests"] = [attrs.asdict(r) for r in self.requests]
        return data


def build_report(
    *,
    arrivals: Sequence[Arrival],
    started: Sequence[float | None],
    finished: Sequence[float | None],
    outcomes: Sequence[str],
    errors: Mapping[int, str],
    end: float,
    loads: Mapping[str, int],
    busy: Mapping[str, float],
    timeline: Sequence[LoadInterval],
    peak_memory: float | None,
    scheduler: str,
    planner: str,
    events: int,
    ttl_unloads: Mapping[str, int] | None = None,
) -> SimReport:
    """Assemble a :class:`SimReport` from the engine's per-request and per-model records."""
    records: list[RequestRecord] = []
    all_waits: list[float] = []
    waits: dict[str, list[float]] = {model: [] for model in loads}
    arrived_per_model: dict[str, int] = dict.fromkeys(loads, 0)
    counts = dict.fromkeys(OUTCOMES, 0)
    makespan = 0.0
    for index, arrival in enumerate(arrivals):
        outcome = outcomes[index]
        counts[outcome] += 1
        model = arrival.model
        arrived_per_model[model] = arrived_per_model.get(model, 0) + 1
        begin = started[index]
        done = finished[index]
        if begin is not None:
            wait = begin - arrival.at
            all_waits.append(wait)
            waits.setdefault(model, []).append(wait)
        else:
            wait = (done if done is not None else end) - arrival.at
            waits.setdefault(model, [])
        if done is not None and done > makespan:
            makespan = done
        records.append(
            RequestRecord(
                index,
                model,
                arrival.at,
                arrival.service,
                begin,
                done,
                wait,
                outcome,
                errors.get(index),
            )
        )
    loading: dict[str, float] = dict.fromkeys(loads, 0.0)
    ready: dict[str, float] = dict.fromkeys(loads, 0.0)
    for interval in timeline:
        loading[interval.model] += interval.loading
        ready[interval.model] += interval.ready_time
    usage = {
        model: ModelUsage(
            loads=loads[model],
            loading=loading[model],
            ready=ready[model],
            busy=busy[model],
            idle=max(0.0, ready[model] - busy[model]),
            requests=arrived_per_model[model],
            served=len(waits[model]),
            ttl_unloads=ttl_unloads.get(model, 0) if ttl_unloads else 0,
        )
        for model in loads
    }
    return SimReport(
        scheduler=scheduler,
        planner=planner,
        total_loads=sum(loads.values()),
        loads_per_model=loads,
        waits=WaitStats.of(all_waits),
        waits_by_model={model: WaitStats.of(values) for model, values in waits.items()},
        makespan=makespan,
        requests=records,
        timeline=timeline,
        usage=usage,
        outcomes=counts,
        peak_memory=peak_memory,
        events=events,
    )


# --------------------------------------------------------------------------- tables


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


def format_report(report: SimReport) -> str:
    """The report as a plain-text table: a header, then one row per model and a total row.

    Columns: requests, served, loads, wait p50/p95/p99/max (served requests)
    and the seconds each model spent loading, busy and idle. The header
    gives the peak memory when known and the idle-TTL unloads when any.
    """
    header = [
        "model",
        "requests",
        "served",
        "loads",
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
                _count(usage.loads) if usage is not None else "-",
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
            _count(report.total_loads),
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
        "",
        _table(header, rows),
        "(waits and times in seconds; waits over served requests)",
    ]
    return "\n".join(lines)


def format_comparison(reports: Mapping[str, SimReport]) -> str:
    """Several runs side by side: one column per run (keyed by label), one row per figure.

    Rows: loads, idle-TTL unloads (when any run has one), wait
    p50/p95/p99/max/mean, makespan, request outcomes, then per model its
    loads, p99 and max wait.
    """
    labels = list(reports)
    runs = list(reports.values())
    rows: list[list[str]] = []

    def add(name: str, cells: Sequence[str]) -> None:
        rows.append([name, *cells])

    add("loads", [_count(r.total_loads) for r in runs])
    if any(r.ttl_unloads for r in runs):
        add("ttl unloads", [_count(r.ttl_unloads) for r in runs])
    for field in ("p50", "p95", "p99", "max", "mean"):
        add(f"wait {field}", [_num(getattr(r.waits, field)) for r in runs])
    add("makespan", [_num(r.makespan) for r in runs])
    for outcome in OUTCOMES:
        if any(r.outcomes[outcome] for r in runs):
            add(outcome.replace("_", " "), [_count(r.outcomes[outcome]) for r in runs])
    models: dict[str, None] = {}
    for r in runs:
        models.update(dict.fromkeys(r.waits_by_model))
    for model in models:
        add(f"{model}: loads", [_count(r.loads_per_model.get(model, 0)) for r in runs])
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
