"""The cluster simulator: several replicas, each a simulated server, on one virtual clock.

:func:`simulate_cluster` replays a trace against N replicas (hosts), each
running the real scheduler and planner over its own models exactly as
:func:`~swapcore.sim.simulate` runs one server, and routes every arrival,
at its arrival time, with a :class:`~swapcore.cluster.ClusterPolicy` (by
default :class:`~swapcore.cluster.AffinityPolicy`) over the replicas'
reports (:class:`~swapcore.cluster.ReplicaReport`). :class:`Replica`
describes one replica of a heterogeneous cluster; the result is a
:class:`~swapcore.sim.cluster_report.ClusterReport`.

The replicas share nothing but the clock and the routing: before an
arrival at ``t`` is routed, every replica has run its events due at or
before ``t`` (in the single-server order: events at ``t`` before arrivals
at ``t``), so the policy reads each replica's state exactly as it is at
``t``. Reports are exact and instantaneous here; in Ray Serve they reach
the router seconds late, and the adapter makes up for it by remembering
where it sent each model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from swapcore.cluster import AffinityPolicy, ClusterPolicy, ReplicaReport
from swapcore.errors import ConfigError
from swapcore.planners.base import SwapPlanner
from swapcore.scheduling.effects import Scheduler
from swapcore.sim._server import VirtualServer
from swapcore.sim.cluster_report import ClusterReport, build_cluster_report
from swapcore.sim.engine import build_server, checked_arrivals
from swapcore.sim.profiles import ModelProfile
from swapcore.sim.schedulers import SimScheduler, SimSchedulerFactory
from swapcore.sim.traces import Arrival, _positive_or_none

__all__ = ["Replica", "simulate_cluster"]


@attrs.frozen(kw_only=True)
class Replica:
    """One replica (host) of a simulated cluster: what :func:`~swapcore.sim.simulate` takes.

    ``id`` names it in the policy's reports and in the
    :class:`~swapcore.sim.cluster_report.ClusterReport` (unique in the
    cluster). ``planner``, ``models``, ``scheduler``, ``host_budget`` and
    ``devices`` mean what they mean for :func:`~swapcore.sim.simulate`; a
    planner instance serves one replica only (give each its own, or a
    factory).
    """

    id: str
    planner: SwapPlanner | Callable[[], SwapPlanner]
    models: Mapping[str, ModelProfile | float]
    scheduler: SimScheduler | SimSchedulerFactory | None = None
    host_budget: float | None = None
    devices: Mapping[str, float] | None = None


@attrs.define(eq=False, slots=True)
class _Node:
    """One replica under simulation: its server, its scheduler and its last report."""

    id: str
    server: VirtualServer
    scheduler: Scheduler
    label: str
    models: frozenset[str]
    report: ReplicaReport | None = None
    seen: int = -1  # the server's event count when ``report`` was taken


def simulate_cluster(
    trace: Iterable[Arrival],
    *,
    replicas: int | Sequence[Replica],
    planner: SwapPlanner | Callable[[], SwapPlanner] | None = None,
    models: Mapping[str, ModelProfile | float] | None = None,
    scheduler: SimScheduler | SimSchedulerFactory | None = None,
    policy: ClusterPolicy | None = None,
    patience: float | None = None,
    host_budget: float | None = None,
    devices: Mapping[str, float] | None = None,
) -> ClusterReport:
    """Replay ``trace`` on a cluster of simulated servers, routing each arrival with ``policy``.

    ``replicas`` is either a count N, every replica then running ``planner``
    (a factory, called once per replica; an instance only when N is 1),
    ``models``, ``scheduler``, ``host_budget`` and ``devices`` as
    :func:`~swapcore.sim.simulate` takes them, with ids ``r0`` ... ``rN-1``;
    or a sequence of :class:`Replica` (heterogeneous replicas), and then
    those keywords must be left out. ``patience`` applies to every replica.

    Each arrival is routed at its arrival time: the replicas run their
    events up to that instant, ``policy.rank(model, reports)`` ranks them
    from their :class:`~swapcore.cluster.ReplicaReport` (exact, taken right
    then), and the request goes to the first replica of the ranking;
    the simulated replicas never refuse a request for a full queue. An
    empty ranking (no replica serves the model) refuses the request: it is
    recorded with the outcome ``refused`` and belongs to no replica.
    ``policy`` defaults to :class:`~swapcore.cluster.AffinityPolicy()
    <swapcore.cluster.AffinityPolicy>`. A ranking that names a replica
    which does not exist or does not serve the model raises
    ``RuntimeError``, as the simulator's other checks of the code under
    test do.

    Every replica's :class:`~swapcore.sim.SimReport` holds the requests
    routed to it, in trace order, with the ids of their positions there;
    run alone on the same requests, :func:`~swapcore.sim.simulate` gives
    the same report. Deterministic: the same inputs give the same report.
    """
    arrivals = checked_arrivals(trace)
    patience = _positive_or_none("patience", patience)
    nodes = _nodes(replicas, planner, models, scheduler, host_budget, devices, patience)
    if policy is None:
        policy = AffinityPolicy()
    elif not isinstance(policy, ClusterPolicy):
        raise ConfigError(f"policy must be a ClusterPolicy, got {type(policy).__name__}")
    by_id = {node.id: node for node in nodes}
    routes: list[str | None] = []
    for arrival in arrivals:
        at = arrival.at
        for node in nodes:
            if node.server.due(at):
                node.server.run(node.scheduler, until=at)
        ranking = policy.rank(arrival.model, [_report(node) for node in nodes])
        if not ranking:
            routes.append(None)
            continue
        chosen = by_id.get(ranking[0])
        if chosen is None or arrival.model not in chosen.models:
            raise RuntimeError(
                f"{policy!r} ranked {ranking[0]!r} first for {arrival.model!r}, which is "
                + ("no replica" if chosen is None else "not a model of that replica")
            )
        chosen.server.admit(arrival)
        chosen.server.run(chosen.scheduler, until=at)
        routes.append(chosen.id)
    reports = {}
    for node in nodes:
        node.server.run(node.scheduler)
        reports[node.id] = node.server.report(node.label, repr(node.server.planner))
    return build_cluster_report(arrivals, routes, reports, policy=repr(policy))


def _report(node: _Node) -> ReplicaReport:
    """The node's report now; reused while the server has processed no event since."""
    events = node.server.events
    if node.report is None or node.seen != events:
        node.report = node.server.replica_report(node.id)
        node.seen = events
    return node.report


def _nodes(
    replicas: int | Sequence[Replica],
    planner: SwapPlanner | Callable[[], SwapPlanner] | None,
    models: Mapping[str, ModelProfile | float] | None,
    scheduler: SimScheduler | SimSchedulerFactory | None,
    host_budget: float | None,
    devices: Mapping[str, float] | None,
    patience: float | None,
) -> list[_Node]:
    """The replicas' servers, built and checked; ConfigError naming the replica at fault."""
    if isinstance(replicas, (bool, str)) or not isinstance(replicas, (int, Sequence)):
        raise ConfigError(f"replicas must be a count or a list of Replica, got {replicas!r}")
    if isinstance(replicas, int):
        if replicas < 1:
            raise ConfigError(f"replicas must be at least 1, got {replicas}")
        if planner is None or models is None:
            raise ConfigError("replicas=N needs planner= and models= (every replica runs them)")
        if isinstance(planner, SwapPlanner) and replicas > 1:
            raise ConfigError(
                f"planner {planner!r} is one instance for {replicas} replicas; "
                "pass a factory (planner=lambda: ...) so each replica gets its own"
            )
        specs = [
            Replica(
                id=f"r{index}",
                planner=planner,
                models=models,
                scheduler=scheduler,
                host_budget=host_budget,
                devices=devices,
            )
            for index in range(replicas)
        ]
    else:
        given = {
            "planner": planner,
            "models": models,
            "scheduler": scheduler,
            "host_budget": host_budget,
            "devices": devices,
        }
        extra = [name for name, value in given.items() if value is not None]
        if extra:
            raise ConfigError(
                f"with a list of Replica, give {', '.join(extra)} in each Replica, not here"
            )
        if not replicas:
            raise ConfigError("replicas: the list is empty; give at least one Replica")
        specs = list(replicas)
    nodes: list[_Node] = []
    seen_ids: set[str] = set()
    planners: dict[int, str] = {}
    for index, spec in enumerate(specs):
        if not isinstance(spec, Replica):
            raise ConfigError(f"replicas[{index}] must be a Replica, got {type(spec).__name__}")
        if not isinstance(spec.id, str) or not spec.id:
            raise ConfigError(f"replicas[{index}].id must be a non-empty string, got {spec.id!r}")
        if spec.id in seen_ids:
            raise ConfigError(f"replicas[{index}].id: {spec.id!r} is given twice")
        seen_ids.add(spec.id)
        if isinstance(spec.planner, SwapPlanner):
            other = planners.setdefault(id(spec.planner), spec.id)
            if other != spec.id:
                raise ConfigError(
                    f"replicas[{index}] ({spec.id!r}) has the planner instance of {other!r}; "
                    "give each replica its own planner or a factory"
                )
        try:
            server, built, label = build_server(
                [],
                planner=spec.planner,
                models=spec.models,
                scheduler=spec.scheduler,
                patience=patience,
                host_budget=spec.host_budget,
                devices=spec.devices,
            )
        except ConfigError as exc:
            raise ConfigError(f"replica {spec.id!r}: {exc}") from None
        server.resumable()
        nodes.append(_Node(spec.id, server, built, label, frozenset(spec.models)))
    return nodes
