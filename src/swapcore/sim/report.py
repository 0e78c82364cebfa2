"""What a simulation reports: loads, waits, usage and the timeline, as data and as tables.

:class:`SimReport` is the result of :func:`~swapcore.sim.simulate`. Its parts
are frozen attrs classes: :class:`WaitStats` (nearest-rank percentiles),
:class:`RequestRecord` (one per arrival, whatever its outcome),
:class:`LoadInterval` (one per load) and :class:`ModelUsage` (per model
loads, loading, ready, busy and idle seconds, abandoned requests).
:func:`format_report` and :func:`format_comparison` render plain-text tables
(they live in ``swapcore.sim._tables``); :meth:`SimReport.to_dict` gives
JSON-ready data.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from swapcore.sim._tables import format_comparison, format_report
from swapcore.sim.traces import Arrival

__all__ = [
    "ABANDONED",
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
    "TierCounts",
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
ABANDONED = "abandoned"
"""Outcome: the caller gave up, not granted within its patience (``Arrival.patience``)."""
UNFINISHED = "unfinished"
"""Outcome: still waiting when nothing was left to happen (a scheduler that stalls)."""
OUTCOMES = (SERVED, REJECTED, NOT_FOUND, FAILED, ABANDONED, UNFINISHED)
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
    ``finished`` the time of the error and ``wait`` the time until it. An
    abandoned one (its caller gave up) has ``started`` None, ``finished``
    the give-up time ``arrived + patience`` and ``wait`` exactly the
    patience. An unfinished one has ``finished`` None and ``wait`` up to the
    end of the simulation. ``error`` is the error's type and message, or None.
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
    at the end of the simulation, which is then ``end``); the eviction may
    be a stop or a sleep. ``ready`` is None only for a load that never
    finished. ``wake`` is True when the interval began with a wake from
    sleep rather than a cold load.
    """

    model: str
    start: float
    ready: float | None
    end: float
    stop_began: float | None = None
    wake: bool = False

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
class TierCounts:
    """The engine's swap counts beyond cold loads: per model wakes, sleeps and stops.

    ``swap_seconds`` adds up every cold load, wake, stop and sleep the run
    made (each at its profile's seconds); ``peak_host_memory`` is the most
    host memory sleeping models held at once (None when nothing can sleep).
    """

    wakes: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen)
    sleeps: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen)
    stops: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen)
    swap_seconds: float = 0.0
    peak_host_memory: float | None = None


@attrs.frozen
class ModelUsage:
    """Per-model totals: ``loads``, seconds ``loading``, ``ready``, ``busy`` and ``idle``.

    ``busy`` counts the seconds with at least one request in flight; ``idle``
    the seconds ready with none (``ready`` - ``busy``). ``requests`` counts
    the model's arrivals, ``served`` those served. ``ttl_unloads`` counts
    the unloads its idle TTL caused (:attr:`ModelProfile.ttl
    <swapcore.sim.profiles.ModelProfile.ttl>`); ``abandoned`` the requests
    whose callers gave up (``Arrival.patience``).
    """

    loads: int
    loading: float
    ready: float
    busy: float
    idle: float
    requests: int
    served: int
    ttl_unloads: int = 0
    abandoned: int = 0
    wakes: int = 0
    sleeps: int = 0
    stops: int = 0


def _frozen_or_none(value: Mapping[str, float] | None) -> Mapping[str, float] | None:
    return None if value is None else types.MappingProxyType(dict(value))


def _records(value: Sequence[RequestRecord]) -> tuple[RequestRecord, ...]:
    return tuple(value)


def _intervals(value: Sequence[LoadInterval]) -> tuple[LoadInterval, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class SimReport:
    """The result of one simulation run.

    ``waits`` covers the served requests only (a request that failed or
    gave up has no wait to count); ``waits_by_model`` has an entry for
    every model with a profile or an arrival. ``makespan`` is the clock
    value at which the last request finished (or failed, or gave up). ``timeline`` lists
    every load in start order. ``outcomes`` counts requests per outcome
    (every outcome present, 0 when none). ``peak_memory`` is the largest
    total size of loaded models (loading, ready or stopping), or None when a
    model has no size. ``events`` counts the events the engine processed.

    With devices (``simulate(devices=...)``): ``devices`` holds each
    device's budget, ``peak_devices`` the largest total of model shares it
    held at once (loading, ready or stopping; the unit of the sizes),
    ``overcommits`` the loads that took a device over its budget (an
    out-of-memory start in reality) and ``split_loads`` the loads spread
    over several devices. Without devices they are None, None, 0 and 0.
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
    total_wakes: int = 0
    total_sleeps: int = 0
    total_stops: int = 0
    swap_seconds: float = 0.0
    peak_host_memory: float | None = None
    errors: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen)
    devices: Mapping[str, float] | None = attrs.field(default=None, converter=_frozen_or_none)
    peak_devices: Mapping[str, float] | None = attrs.field(default=None, converter=_frozen_or_none)
    overcommits: int = 0
    split_loads: int = 0

    @property
    def served(self) -> int:
        """How many requests were served."""
        return self.outcomes[SERVED]

    @property
    def rejected(self) -> int:
        """How many requests the concurrency limit refused."""
        return self.outcomes[REJECTED]

    @property
    def abandoned(self) -> int:
        """How many requests were given up by their callers (not granted within their patience)."""
        return self.outcomes[ABANDONED]

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
            "total_wakes": self.total_wakes,
            "total_sleeps": self.total_sleeps,
            "total_stops": self.total_stops,
            "swap_seconds": self.swap_seconds,
            "peak_host_memory": self.peak_host_memory,
            "errors": dict(self.errors),
            "devices": None if self.devices is None else dict(self.devices),
            "peak_devices": None if self.peak_devices is None else dict(self.peak_devices),
            "overcommits": self.overcommits,
            "split_loads": self.split_loads,
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
    patience: Sequence[float | None] | None = None,
    tiers: TierCounts | None = None,
    devices: Mapping[str, float] | None = None,
    peak_devices: Mapping[str, float] | None = None,
    overcommits: int = 0,
    split_loads: int = 0,
) -> SimReport:
    """Assemble a :class:`SimReport` from the engine's per-request and per-model records.

    ``patience`` is each arrival's effective patience (None: nobody has one);
    an abandoned request's ``wait`` is its patience exactly. ``devices``,
    ``peak_devices``, ``overcommits`` and ``split_loads`` are the device
    accounting, as :class:`SimReport` holds it.
    """
    records: list[RequestRecord] = []
    all_waits: list[float] = []
    waits: dict[str, list[float]] = {model: [] for model in loads}
    arrived_per_model: dict[str, int] = dict.fromkeys(loads, 0)
    abandoned: dict[str, int] = {}
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
            if outcome == ABANDONED:
                abandoned[model] = abandoned.get(model, 0) + 1
                given = patience[index] if patience is not None else None
                if given is not None:  # exact: at + patience - at may differ in the last bit
                    wait = given
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
    tiers = tiers or TierCounts()
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
            abandoned=abandoned.get(model, 0),
            wakes=tiers.wakes.get(model, 0),
            sleeps=tiers.sleeps.get(model, 0),
            stops=tiers.stops.get(model, 0),
        )
        for model in loads
    }
    reasons: dict[str, int] = {}
    for index, error in errors.items():
        if outcomes[index] in (FAILED, REJECTED):
            reasons[error] = reasons.get(error, 0) + 1
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
        total_wakes=sum(tiers.wakes.values()),
        total_sleeps=sum(tiers.sleeps.values()),
        total_stops=sum(tiers.stops.values()),
        swap_seconds=tiers.swap_seconds,
        peak_host_memory=tiers.peak_host_memory,
        errors=dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0]))),
        devices=devices,
        peak_devices=peak_devices,
        overcommits=overcommits,
        split_loads=split_loads,
    )
