"""The discrete-event simulator: run the real scheduler and planner on a virtual clock.

Traces (what arrives when) live in :mod:`swapcore.sim.traces`: the
:class:`Arrival` record, the JSON Lines reader and writer, and seeded
generators for the classic workloads (round robin, Poisson mix, bursts,
one dominant model). The format is described in ``docs/traces.md``.
"""

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
    "bursts",
    "dominant",
    "poisson_mix",
    "read_trace",
    "round_robin",
    "write_trace",
]
