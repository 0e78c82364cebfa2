"""The discrete-event simulator: run the real scheduler and planner on a virtual clock.

:func:`simulate` replays a trace against a planner, model profiles and a
scheduler, and returns a :class:`SimReport` (loads, waits, usage, timeline);
see ``docs/simulator.md``. Traces (what arrives when) live in
:mod:`swapcore.sim.traces`: the :class:`Arrival` record, the JSON Lines
reader and writer, and seeded generators for the classic workloads (round
robin, Poisson mix, bursts, one dominant model); the format is described in
``docs/traces.md``. :class:`TraceRecorder` records a live router's traffic
as a trace. :mod:`swapcore.sim.config` reads simulator
configurations and the CLI's scheduler, planner and generator specs;
:func:`plot_timeline` draws timelines (needs matplotlib, the ``plot`` extra,
imported only when a picture is drawn). :func:`simulate_cluster` runs
several simulated servers (replicas) on one clock, routing each arrival
with a :class:`~swapcore.cluster.ClusterPolicy`, and returns a
:class:`ClusterReport`.
"""

from swapcore.sim.cluster import Replica, simulate_cluster
from swapcore.sim.cluster_report import ClusterReport, ReplicaLoad, format_cluster_report
from swapcore.sim.engine import (
    ModelProfile,
    SimScheduler,
    arrival_order,
    cost_aware,
    fifo,
    simulate,
)
from swapcore.sim.plot import plot_timeline
from swapcore.sim.record import TraceRecorder
from swapcore.sim.report import (
    LoadInterval,
    ModelUsage,
    RequestRecord,
    SimReport,
    WaitStats,
    format_comparison,
    format_report,
)
from swapcore.sim.traces import (
    Arrival,
    bursts,
    dominant,
    poisson_mix,
    read_trace,
    round_robin,
    write_trace,
)

__all__ = [
    "Arrival",
    "ClusterReport",
    "LoadInterval",
    "ModelProfile",
    "ModelUsage",
    "Replica",
    "ReplicaLoad",
    "RequestRecord",
    "SimReport",
    "SimScheduler",
    "TraceRecorder",
    "WaitStats",
    "arrival_order",
    "bursts",
    "cost_aware",
    "dominant",
    "fifo",
    "format_cluster_report",
    "format_comparison",
    "format_report",
    "plot_timeline",
    "poisson_mix",
    "read_trace",
    "round_robin",
    "simulate",
    "simulate_cluster",
    "write_trace",
]
