"""A kit for testing swap policies, processes and routers (needs the ``testing`` extra).

- :class:`FakeProcess`: a scripted :class:`~swapcore.Process` (start delays and
  failures, manual readiness, crashes, counters).
- :class:`RecordingEffects`: a recording fake :class:`~swapcore.Effects` for
  driving any scheduler as a pure state machine.
- :func:`check_planner` / :func:`planner_violations`: check a custom
  :class:`~swapcore.SwapPlanner` against the planner contract.
- :func:`memory_violations` / :func:`budget_violations`: the memory rules
  for a planner that declares sizes (:class:`BudgetedPlanner`,
  :class:`PlacingPlanner`), which :func:`check_planner` also checks.
- :func:`check_process`: check a custom :class:`~swapcore.Process`.
- :func:`check_cluster_policy` / :func:`cluster_policy_violations`: check a
  custom :class:`~swapcore.ClusterPolicy` (which replica serves a model).
- :class:`FaultyPlanner`: wrap a planner so its hooks fail on cue (planner
  faults must fail only their request, with :class:`~swapcore.PolicyError`).
- :class:`RouterStateMachine`: a hypothesis state machine you subclass with your
  own planner (and scheduler) to check the router's invariants on a virtual
  clock; :func:`mutual_evictions` helps write co-residency checks.
- :mod:`swapcore.testing.strategies`: hypothesis strategies for DSL
  expressions, matrix and group configurations, request traces and
  replica reports.

Nothing here is imported by ``import swapcore``. The fakes, the recording
effects, the faulty planner, the memory rules, :func:`check_process` and
:func:`cluster_policy_violations` need nothing more (nor does
:func:`check_cluster_policy` until it is called);
:func:`check_planner`, :func:`planner_violations`, :class:`RouterStateMachine`,
:func:`mutual_evictions` and the strategies need hypothesis (the
``testing`` extra) and import it when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from swapcore.testing.cluster_checks import (
    CLUSTER_RULES,
    DEFAULT_CLUSTER_RULES,
    check_cluster_policy,
    cluster_policy_violations,
)
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
from swapcore.testing.memory_checks import (
    BudgetedPlanner,
    PlacingPlanner,
    budget_violations,
    memory_violations,
)
from swapcore.testing.process_checks import check_process

if TYPE_CHECKING:
    from swapcore.testing.planner_checks import check_planner, planner_violations
    from swapcore.testing.stateful import RouterStateMachine, mutual_evictions

_NEED_HYPOTHESIS = {
    "check_planner": "swapcore.testing.planner_checks",
    "planner_violations": "swapcore.testing.planner_checks",
    "RouterStateMachine": "swapcore.testing.stateful",
    "mutual_evictions": "swapcore.testing.stateful",
}


def __getattr__(name: str) -> Any:
    """Import the hypothesis-based names on first use, with a clear error without it."""
    module = _NEED_HYPOTHESIS.get(name)
    if module is None:
        raise AttributeError(f"module 'swapcore.testing' has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name != "hypothesis" and not (exc.name or "").startswith("hypothesis."):
            raise
        raise ImportError(
            f"swapcore.testing.{name} needs hypothesis: pip install 'swapcore[testing]'"
        ) from exc
    globals()[name] = value
    return value


__all__ = [
    "CLUSTER_RULES",
    "DEFAULT_CLUSTER_RULES",
    "BudgetedPlanner",
    "EffectCall",
    "FakeGPUProbe",
    "FakeProcess",
    "FakeProcessError",
    "FaultyPlanner",
    "GrantErrorCall",
    "GrantServeCall",
    "InjectedFault",
    "PlacingPlanner",
    "RecordingEffects",
    "ReportPositionCall",
    "RouterStateMachine",
    "StartSwapCall",
    "budget_violations",
    "check_cluster_policy",
    "check_planner",
    "check_process",
    "cluster_policy_violations",
    "memory_violations",
    "mutual_evictions",
    "planner_violations",
]
