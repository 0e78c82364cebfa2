"""What a cluster simulation reports: per-replica reports, cluster totals and a table.

:class:`ClusterReport` is the result of
:func:`~swapcore.sim.cluster.simulate_cluster`: one
:class:`~swapcore.sim.SimReport` per replica (so the single-server tools,
:func:`~swapcore.sim.format_report` and :func:`~swapcore.sim.plot_timeline`,
work per replica) and the totals over the cluster. :func:`format_cluster_report`
renders it as plain text.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from swapcore.sim._tables import _count, _num, _table, format_report
from swapcore.sim.report import OUTCOMES, SERVED, LoadInterval, RequestRecord, SimReport, WaitStats
from swapcore.sim.traces import Arrival

__all__ = [
    "CLUSTER_OUTCOMES",
    "REFUSED",
    "ClusterReport",
    "ReplicaLoad",
    "build_cluster_report",
    "format_cluster_report",
]

REFUSED = "refused"
"""Outcome: the policy ranked no replica for the request (no replica serves its model)."""
CLUSTER_OUTCOMES = (*OUTCOMES, REFUSED)
"""Every outcome of a cluster's request, in report order."""


def _frozen(value: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return types.MappingProxyType(dict(value))


def _routes(value: Sequence[str | None]) -> tuple[str | None, ...]:
    return tuple(value)


def _records(value: Sequence[RequestRecord]) -> tuple[RequestRecord, ...]:
    return tuple(value)


def _loads(value: Sequence[ReplicaLoad]) -> tuple[ReplicaLoad, ...]:
    return tuple(value)


@attrs.frozen
class ReplicaLoad:
    """One load (or wake) of a model on one replica: ``interval`` as the replica reports it."""

    replica: str
    interval: LoadInterval


@attrs.frozen(kw_only=True)
class ClusterReport:
    """The result of one cluster simulation.

    - ``policy``: the cluster policy, as its ``repr``.
    - ``replicas``: each replica's :class:`~swapcore.sim.SimReport`, by
      replica id in the cluster's order, over the requests routed to it.
    - ``routes``: for each arrival (trace order), the replica it went to,
      or None when it was refused.
    - ``requests``: one :class:`~swapcore.sim.RequestRecord` per arrival, in
      trace order, ``id`` its position in the whole trace; a refused one
      has the outcome :data:`REFUSED`, ``started`` None, ``finished`` and
      ``arrived`` equal and ``wait`` 0.
    - ``waits``: the wait statistics over every served request of the
      cluster, the wait defined as for a single server: the seconds from
      the arrival to the grant (refused, failed and abandoned requests are
      not counted).
    - ``outcomes``: requests per outcome (every one of
      :data:`CLUSTER_OUTCOMES`, 0 when none).
    - ``timeline``: every load and wake of every replica, by start time
      (then replica): which replica held each model, when.
    - ``makespan``: when the last request finished (or failed, gave up, or
      was refused).
    """

    policy: str
    replicas: Mapping[str, SimReport] = attrs.field(converter=_frozen)
    routes: Sequence[str | None] = attrs.field(converter=_routes)
    requests: Sequence[RequestRecord] = attrs.field(converter=_records)
    waits: WaitStats
    outcomes: Mapping[str, int] = attrs.field(converter=_frozen)
    timeline: Sequence[ReplicaLoad] = attrs.field(converter=_loads)
    makespan: float

    @property
    def served(self) -> int:
        """How many requests were served, over the cluster."""
        return self.outcomes[SERVED]

    @property
    def refused(self) -> int:
        """How many requests no replica was ranked for."""
        return self.outcomes[REFUSED]

    @property
    def total_loads(self) -> int:
        """Cold loads over the cluster."""
        return sum(report.total_loads for report in self.replicas.values())

    @property
    def total_wakes(self) -> int:
        """Wakes from sleep over the cluster."""
        return sum(report.total_wakes for report in self.replicas.values())

    @property
    def loads_per_replica(self) -> Mapping[str, int]:
        """Cold loads of each replica."""
        return {replica: report.total_loads for replica, report in self.replicas.items()}

    @property
    def wakes_per_replica(self) -> Mapping[str, int]:
        """Wakes of each replica."""
        return {replica: report.total_wakes for replica, report in self.replicas.items()}

    @property
    def loads_per_model(self) -> Mapping[str, int]:
        """Cold loads of each model, over the replicas."""
        loads: dict[str, int] = {}
        for report in self.replicas.values():
            for model, count in report.loads_per_model.items():
                loads[model] = loads.get(model, 0) + count
        return loads

    def loaded_on(self, model: str) -> Sequence[str]:
        """The replicas ``model`` was loaded (or woken) on, in the order of its first load there."""
        replicas: dict[str, None] = {}
        for load in self.timeline:
            if load.interval.model == model:
                replicas.setdefault(load.replica, None)
        return list(replicas)

    def to_dict(self, *, requests: bool = True) -> dict[str, Any]:
        """The report as JSON-ready data (``requests`` False leaves out the per-request lists)."""
        data: dict[str, Any] = {
            "policy": self.policy,
            "total_loads": self.total_loads,
            "total_wakes": self.total_wakes,
            "loads_per_replica": dict(self.loads_per_replica),
            "wakes_per_replica": dict(self.wakes_per_replica),
            "waits": attrs.asdict(self.waits),
            "outcomes": dict(self.outcomes),
            "makespan": self.makespan,
            "timeline": [
                {"replica": load.replica, **attrs.asdict(load.interval)} for load in self.timeline
            ],
            "replicas": {
                r: report.to_dict(requests=requests) for r, report in self.replicas.items()
            },
        }
        if requests:
            data["routes"] = list(self.routes)
            data["requests"] = [attrs.asdict(r) for r in self.requests]
        return data


def build_cluster_report(
    arrivals: Sequence[Arrival],
    routes: Sequence[str | None],
    replicas: Mapping[str, SimReport],
    *,
    policy: str,
) -> ClusterReport:
    """Assemble a :class:`ClusterReport` from each arrival's route and the replicas' reports.

    ``routes[i]`` is the replica ``arrivals[i]`` went to (None: refused);
    each replica's report lists its requests in the order they were routed.
    """
    positions = dict.fromkeys(replicas, 0)
    records: list[RequestRecord] = []
    counts = dict.fromkeys(CLUSTER_OUTCOMES, 0)
    waits: list[float] = []
    makespan = max((report.makespan for report in replicas.values()), default=0.0)
    for index, (arrival, route) in enumerate(zip(arrivals, routes, strict=True)):
        if route is None:
            record = RequestRecord(
                index,
                arrival.model,
                arrival.at,
                arrival.service,
                None,
                arrival.at,
                0.0,
                REFUSED,
                f"no replica serves model {arrival.model!r}",
            )
            makespan = max(makespan, arrival.at)
        else:
            record = attrs.evolve(replicas[route].requests[positions[route]], id=index)
            positions[route] += 1
            if record.outcome == SERVED:
                waits.append(record.wait)
        counts[record.outcome] += 1
        records.append(record)
    timeline = [
        ReplicaLoad(replica, interval)
        for replica, report in replicas.items()
        for interval in report.timeline
    ]
    order = {replica: rank for rank, replica in enumerate(replicas)}
    timeline.sort(key=lambda load: (load.interval.start, order[load.replica]))
    return ClusterReport(
        policy=policy,
        replicas=replicas,
        routes=routes,
        requests=records,
        waits=WaitStats.of(waits),
        outcomes=counts,
        timeline=timeline,
        makespan=makespan,
    )


def format_cluster_report(report: ClusterReport, *, detail: bool = False) -> str:
    """The report as plain text: a header, one row per replica and a total row, then placements.

    Replica columns: requests routed, served, cold loads, wakes, stops,
    wait p50/p95/p99/max over its served requests and its makespan. The
    placements list, per model, the replicas it was loaded or woken on with
    the count of each. ``detail`` appends each replica's own
    :func:`~swapcore.sim.format_report` table.
    """
    outcomes = [f"{n:,} {name.replace('_', ' ')}" for name, n in report.outcomes.items() if n]
    lines = [
        f"cluster: {len(report.replicas)} replica{'' if len(report.replicas) == 1 else 's'}, "
        f"policy {report.policy}",
        f"requests: {len(report.requests):,} ({', '.join(outcomes) or 'none'})   "
        f"cold loads: {report.total_loads:,}   wakes: {report.total_wakes:,}   "
        f"makespan: {_num(report.makespan)} s",
    ]
    header = ["replica", "requests", "served", "loads", "wakes", "stops"]
    header += ["wait p50", "p95", "p99", "max", "makespan"]
    rows = []
    for replica, sim in report.replicas.items():
        stats = sim.waits
        rows.append(
            [
                replica,
                _count(len(sim.requests)),
                _count(sim.served),
                _count(sim.total_loads),
                _count(sim.total_wakes),
                _count(sim.total_stops),
                *(_num(v) for v in (stats.p50, stats.p95, stats.p99, stats.max)),
                _num(sim.makespan),
            ]
        )
    total = report.waits
    rows.append(
        [
            "(all)",
            _count(len(report.requests)),
            _count(report.served),
            _count(report.total_loads),
            _count(report.total_wakes),
            _count(sum(sim.total_stops for sim in report.replicas.values())),
            *(_num(v) for v in (total.p50, total.p95, total.p99, total.max)),
            _num(report.makespan),
        ]
    )
    lines.append(_table(header, rows))
    placed: dict[str, dict[str, int]] = {}
    for load in report.timeline:
        where = placed.setdefault(load.interval.model, {})
        where[load.replica] = where.get(load.replica, 0) + 1
    if placed:
        lines.append("loaded on:")
        width = max(len(model) for model in placed)
        for model in sorted(placed):
            spots = ", ".join(f"{r} x{n}" for r, n in placed[model].items())
            lines.append(f"  {model.ljust(width)}  {spots}")
    if detail:
        for replica, sim in report.replicas.items():
            lines += ["", f"replica {replica}:", format_report(sim)]
    return "\n".join(lines)
