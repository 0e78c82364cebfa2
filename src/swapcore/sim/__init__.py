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
imported only when a picture is drawn).
"""

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
    "LoadInterval",
    "ModelProfile",
    "ModelUsage",
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
    "format_comparison",
    "format_report",
    "plot_timeline",
    "poisson_mix",
    "read_trace",
    "round_robin",
    "simulate",
    "write_trace",
]
