"""Sleep or stop: which evicted models go to sleep, within a host-memory budget.

A model whose server supports sleep (vLLM's sleep mode) can leave the
accelerator two ways: stopped (its process ends; the next use is a cold
start) or asleep (its process lives on and holds host memory: at level 1
its weights wait in host RAM, at level 2 they are dropped; the next use is
a wake, seconds instead of a minute). :class:`SleepRules` says which models
may sleep, at what level, how much host memory each holds asleep, and the
host budget all sleepers share. :class:`Eviction` is a planner's answer for
one swap: the models to put to sleep and the models to stop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

import attrs

from swapcore.errors import ConfigError

if TYPE_CHECKING:
    from swapcore.planners.base import SwapPlanner

__all__ = ["Eviction", "SleepRules", "plan_residency"]

_log = logging.getLogger("swapcore.planners")


def _exact(value: float) -> Fraction:
    # Sums of binary floats depend on their order; the decimal a user wrote does not.
    return Fraction(value) if isinstance(value, int) else Fraction(repr(value))


def _levels(value: Mapping[str, int]) -> Mapping[str, int]:
    for model, level in value.items():
        if isinstance(level, bool) or level not in (1, 2):
            raise ConfigError(f"sleep level of model {model!r} must be 1 or 2, got {level!r}")
    return dict(value)


def _host_memory(value: Mapping[str, float]) -> Mapping[str, float]:
    for model, size in value.items():
        if isinstance(size, bool) or not isinstance(size, (int, float)) or not size >= 0:
            raise ConfigError(f"host memory of model {model!r} must be a number >= 0, got {size!r}")
        if math.isinf(size):
            raise ConfigError(f"host memory of model {model!r} must be finite")
    return dict(value)


def _budget(value: float | None) -> float | None:
    if value is None or value == math.inf:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"host memory budget must be a number >= 0 or None, got {value!r}")
    return value


@attrs.frozen
class Eviction:
    """One swap's evictions: ``sleep`` goes to sleep, ``stop`` is stopped."""

    sleep: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()

    @property
    def models(self) -> tuple[str, ...]:
        """Every evicted model, sleepers first."""
        return self.sleep + self.stop


@attrs.frozen
class SleepRules:
    """Which models may sleep instead of stopping, and the host memory sleepers may hold.

    ``levels`` maps each model that may sleep to its sleep level (1 or 2);
    a model absent from it is always stopped. ``host_memory`` maps models to
    the host memory they hold asleep at level 1 (any unit, the budget's; a
    model absent holds 0); at level 2 a model holds none. ``host_budget``
    bounds the host memory all sleeping models hold together (None: no
    bound). Invalid values raise :class:`~swapcore.ConfigError` naming the
    model.
    """

    levels: Mapping[str, int] = attrs.field(factory=dict, converter=_levels)
    host_memory: Mapping[str, float] = attrs.field(factory=dict, converter=_host_memory)
    host_budget: float | None = attrs.field(default=None, converter=_budget)

    def level(self, model: str) -> int | None:
        """The level ``model`` sleeps at, or None when it must be stopped."""
        return self.levels.get(model)

    def held(self, model: str) -> float:
        """Host memory ``model`` holds while asleep (0 at level 2 or when unknown)."""
        if self.levels.get(model) != 1:
            return 0
        return self.host_memory.get(model, 0)

    def held_by(self, models: Iterable[str]) -> float:
        """Host memory the given sleeping models hold together."""
        return float(sum((_exact(self.held(m)) for m in models), Fraction(0)))

    def split(self, target: str, evict: Sequence[str], sleeping: Sequence[str]) -> Eviction:
        """Sleep what may sleep and fits the host budget, in ``evict``'s order; stop the rest.

        ``sleeping`` lists the models asleep (or falling asleep) now. The
        target counts among them even when it is the one to wake: it wakes
        only once the evicted models have left the accelerator, so while
        they fall asleep its weights are still in host memory beside theirs.
        A model already asleep keeps its place: a new sleeper that does not
        fit is stopped, never an older one displaced.
        """
        if not self.levels:
            return Eviction(stop=tuple(evict))
        budget = None if self.host_budget is None else _exact(self.host_budget)
        held = sum((_exact(self.held(m)) for m in set(sleeping)), Fraction(0))
        asleep: list[str] = []
        stopped: list[str] = []
        for model in evict:
            if model not in self.levels:
                stopped.append(model)
                continue
            need = _exact(self.held(model))
            if budget is not None and held + need > budget:
                stopped.append(model)
                continue
            held += need
            asleep.append(model)
        return Eviction(tuple(asleep), tuple(stopped))


def plan_residency(
    planner: SwapPlanner,
    target: str,
    evict: Sequence[str],
    sleeping: Sequence[str],
    sleepable: Callable[[str], bool],
) -> Eviction:
    """``planner.residency_for(target, evict, sleeping)``, checked, for a driver.

    Sleepers whose process cannot sleep (``sleepable(model)`` false) are
    stopped instead. A planner that raises, or answers without every model
    of ``evict`` exactly once (or with others), is logged once, naming its
    class and method, and every model of ``evict`` is stopped: stopping is
    always safe.
    """
    if not evict:
        return Eviction()
    name = f"{type(planner).__name__}.residency_for({target!r}, {list(evict)!r})"
    try:
        answer = planner.residency_for(target, evict, sleeping)
    except Exception as exc:
        _log.error("planner %s raised %r; stopping every evicted model", name, exc, exc_info=exc)
        return Eviction(stop=tuple(evict))
    models = answer.models if isinstance(answer, Eviction) else ()
    if len(models) != len(evict) or set(models) != set(evict):
        _log.error(
            "planner %s returned %r, which is not the evicted models once each; stopping them",
            name,
            answer,
        )
        return Eviction(stop=tuple(evict))
    asleep = tuple(m for m in answer.sleep if sleepable(m))
    if len(asleep) == len(answer.sleep):
        return answer
    return Eviction(asleep, tuple(m for m in evict if m not in asleep))
