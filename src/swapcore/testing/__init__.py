"""A kit for testing swap policies, processes and routers (needs the ``testing`` extra).

- :class:`FakeProcess`: a scripted :class:`~swapcore.Process` (start delays and
  failures, manual readiness, crashes, counters).
- :class:`RecordingEffects`: a recording fake :class:`~swapcore.Effects` for
  driving any scheduler as a pure state machine.
- :func:`check_planner` / :func:`planner_violations`: check a custom
  :class:`~swapcore.SwapPlanner` against the planner contract.
- :func:`check_process`: check a custom :class:`~swapcore.Process`.
- :class:`FaultyPlanner`: wrap a planner so its hooks fail on cue (planner
  faults must fail only their request, with :class:`~swapcore.PolicyError`).
- :class:`RouterStateMachine`: a hypothesis state machine you subclass with your
  own planner (and scheduler) to check the router's invariants on a virtual
  clock; :func:`mutual_evictions` helps write co-residency checks.
- :mod:`swapcore.testing.strategies`: hypothesis strategies for DSL
  expressions, matrix and group configurations, and request traces.

Nothing here is imported by ``import swapcore``.
"""

from swapcore.testing.effects import (
    EffectCall,
    GrantErrorCall,
    GrantServeCall,
    RecordingEffects,
    ReportPositionCall,
    StartSwapCall,
)
from swapcore.testing.fakes import FakeGPUProbe, FakeProcess, FakeProcessError
from swapcore.testing.faults import FaultyPlanner, InjectedFault
from swapcore.testing.planner_checks import check_planner, planner_violations
from swapcore.testing.process_checks import check_process
from swapcore.testing.stateful import RouterStateMachine, mutual_evictions

__all__ = [
    "EffectCall",
    "FakeGPUProbe",
    "FakeProcess",
    "FakeProcessError",
    "FaultyPlanner",
    "GrantErrorCall",
    "GrantServeCall",
    "InjectedFault",
    "RecordingEffects",
    "ReportPositionCall",
    "RouterStateMachine",
    "StartSwapCall",
    "check_planner",
    "check_process",
    "mutual_evictions",
    "planner_violations",
]
