"""The ``RouterStateMachine``'s fault rules: crashing starts and failing planner hooks.

:class:`FaultRules` holds the rules that make things fail on purpose: a
model's next start crashes (retryable: the router starts it again, up to its
``start_retries``), and, when the machine sets ``planner_faults``, the
planner's hooks raise or answer invalidly on cue (through a
:class:`~swapcore.testing.FaultyPlanner` wrapped around the planner under
test). The invariants stay the machine's own: every request resolves
exactly once (a planner fault is a ``PolicyError`` outcome), no count
leaks, nothing deadlocks.
"""

from __future__ import annotations

from typing import ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from swapcore.planners.base import SwapPlanner
from swapcore.testing._wind_down import WindDown
from swapcore.testing.faults import HOOKS, FaultyPlanner, Hook

_HOOKS = st.sampled_from(HOOKS)
_TIMES = st.integers(1, 3)


class FaultRules(WindDown):
    """The fault rules (a base of ``RouterStateMachine``)."""

    planner_faults: ClassVar[bool]
    _model: st.SearchStrategy[str]  # drawn from the machine's models (set at start)

    def __init__(self) -> None:
        super().__init__()
        self.faulty: FaultyPlanner | None = None

    def _router_planner(self, planner: SwapPlanner) -> SwapPlanner:
        """The planner the router gets: ``planner``, wrapped when faults are on."""
        if not self.planner_faults:
            return planner
        self.faulty = FaultyPlanner(planner)
        return self.faulty

    @rule(data=st.data())
    def crash_start(self, data: st.DataObject) -> None:
        """The model's next start crashes (a retryable error: the router restarts it)."""
        self.processes[data.draw(self._model)].crash_start += 1

    @precondition(lambda self: self.faulty is not None)
    @rule(data=st.data())
    def planner_fault(self, data: st.DataObject) -> None:
        """The next 1-3 calls of a planner hook (for one model, or any) fail.

        ``eviction_for`` may also answer invalidly (a model that is not running).
        """
        assert self.faulty is not None
        hook: Hook = data.draw(_HOOKS, label="hook")
        target = data.draw(st.none() | self._model, label="for model")
        times = data.draw(_TIMES, label="times")
        invalid = hook == "eviction_for" and data.draw(st.booleans(), label="invalid answer")
        self.faulty.arm(hook, target=target, times=times, invalid=invalid)
