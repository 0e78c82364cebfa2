"""``FaultyPlanner``: wrap a planner so that its hooks fail on cue.

Use it to check that a scheduler, a router or your gateway contains planner
faults: the request a failing hook was called for must fail with
:class:`~swapcore.PolicyError`, and everything else must carry on::

    planner = FaultyPlanner(GroupPlanner({}, models=["a", "b"]))
    planner.arm("eviction_for", target="a")     # the next call for 'a' raises
    planner.arm("on_serve", times=2)            # the next two on_serve calls raise
    planner.arm("eviction_for", invalid=True)   # the next answer is not a running model
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs

from swapcore.planners.base import SwapPlanner
from swapcore.planners.residency import Eviction, SleepRules

__all__ = ["INVALID_ANSWER", "FaultyPlanner", "Hook", "InjectedFault"]

Hook = Literal["eviction_for", "on_swap_start", "on_serve", "residency_for"]
"""The planner hooks a :class:`FaultyPlanner` can make fail."""

HOOKS: tuple[Hook, ...] = ("eviction_for", "on_swap_start", "on_serve", "residency_for")

INVALID_ANSWER = "<injected-invalid-answer>"
"""The model an armed ``eviction_for(..., invalid=True)`` answers with (never running)."""


class InjectedFault(RuntimeError):
    """The exception an armed :class:`FaultyPlanner` hook raises."""


@attrs.define
class _Armed:
    hook: Hook
    target: str | None
    times: int
    invalid: bool


class FaultyPlanner(SwapPlanner):
    """A planner that delegates to ``planner`` except when a fault is armed.

    :meth:`arm` makes the next ``times`` calls of one hook (for one target
    model, or any) raise :class:`InjectedFault`, or, for ``eviction_for``
    with ``invalid=True``, answer ``[INVALID_ANSWER]``, a model that is not
    running. Armed faults are consumed in the order they were armed;
    ``injected`` counts the faults delivered so far. ``on_serve`` is always
    overridden here, so a scheduler calls it on every grant and the inner
    planner's own ``on_serve`` (the default does nothing) runs behind it.
    ``sleep_rules`` is the inner planner's (reading and setting it reach
    through), and ``residency_for`` delegates like the other hooks.
    """

    def __init__(self, planner: SwapPlanner) -> None:
        self.planner = planner
        self.injected = 0
        self._armed: list[_Armed] = []

    def arm(
        self,
        hook: Hook,
        *,
        target: str | None = None,
        times: int = 1,
        invalid: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``hook`` (for ``target``, or any model) fail."""
        if hook not in HOOKS:
            raise ValueError(f"hook must be one of {', '.join(HOOKS)}, got {hook!r}")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be an int >= 1, got {times!r}")
        if invalid and hook != "eviction_for":
            raise ValueError("invalid=True applies to eviction_for only")
        self._armed.append(_Armed(hook, target, times, invalid))

    @property
    def armed(self) -> int:
        """How many faults are still armed (calls that will fail)."""
        return sum(armed.times for armed in self._armed)

    def disarm(self) -> None:
        """Forget every armed fault."""
        self._armed.clear()

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        """The inner planner's answer, unless a fault is armed for this call."""
        fault = self._take("eviction_for", target)
        if fault is not None:
            if fault.invalid:
                return [INVALID_ANSWER]
            raise InjectedFault(f"injected fault in eviction_for({target!r})")
        return self.planner.eviction_for(target, running)

    @property
    def sleep_rules(self) -> SleepRules | None:
        """The inner planner's sleep rules."""
        return self.planner.sleep_rules

    @sleep_rules.setter
    def sleep_rules(self, rules: SleepRules | None) -> None:
        self.planner.sleep_rules = rules

    def residency_for(self, target: str, evict: Sequence[str], sleeping: Sequence[str]) -> Eviction:
        """The inner planner's answer, unless a fault is armed for this call."""
        if self._take("residency_for", target) is not None:
            raise InjectedFault(f"injected fault in residency_for({target!r})")
        return self.planner.residency_for(target, evict, sleeping)

    def on_swap_start(self, target: str, running: Sequence[str]) -> None:
        """The inner planner's hook, unless a fault is armed for this call."""
        if self._take("on_swap_start", target) is not None:
            raise InjectedFault(f"injected fault in on_swap_start({target!r})")
        self.planner.on_swap_start(target, running)

    def on_serve(self, model: str, now: float) -> None:
        """The inner planner's hook, unless a fault is armed for this call."""
        if self._take("on_serve", model) is not None:
            raise InjectedFault(f"injected fault in on_serve({model!r})")
        self.planner.on_serve(model, now)

    def _take(self, hook: Hook, target: str) -> _Armed | None:
        for armed in self._armed:
            if armed.hook == hook and (armed.target is None or armed.target == target):
                armed.times -= 1
                if not armed.times:
                    self._armed.remove(armed)
                self.injected += 1
                return armed
        return None
