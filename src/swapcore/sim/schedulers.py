"""Scheduler recipes for the simulator: a scheduler class plus its options, built per run.

:class:`SimScheduler` names a scheduler class (or factory) and its keyword
options; the simulator builds a fresh scheduler from it for every run.
:func:`fifo`, :func:`arrival_order` and :func:`cost_aware` make the recipes
of swapcore's own schedulers.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import types
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from swapcore.errors import ConfigError
from swapcore.planners.base import SwapPlanner
from swapcore.scheduling.effects import Effects, Scheduler
from swapcore.sim.profiles import ModelProfile

__all__ = ["SimScheduler", "SimSchedulerFactory", "arrival_order", "cost_aware", "fifo"]

SimSchedulerFactory = Callable[..., Scheduler]
"""A scheduler factory for the simulator: called as ``factory(planner, effects, clock=clock)``."""


def _option_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_option_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _options(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


@attrs.frozen
class SimScheduler:
    """A named scheduler recipe: a scheduler class (or factory) plus its keyword options.

    The simulator builds a fresh scheduler for every run with
    ``factory(planner, effects, clock=<virtual clock>, **options)``; when
    ``load_times`` is true it also passes ``load_times`` (each model's load
    seconds from the run's profiles) unless ``options`` has them. ``name``
    labels reports; ``label`` is ``title`` when set, else the name with the
    scalar options: ``fifo(max_wait=30)``.
    Build them with :func:`fifo`, :func:`arrival_order` and :func:`cost_aware`,
    or directly for your own scheduler class.
    """

    name: str
    factory: SimSchedulerFactory
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=_options)
    load_times: bool = False
    title: str | None = None

    @property
    def label(self) -> str:
        """``title``, or ``name`` with its scalar options not None: ``fifo(max_wait=30)``."""
        if self.title is not None:
            return self.title
        shown = [
            f"{k}={_option_text(v)}"
            for k, v in self.options.items()
            if v is not None and not isinstance(v, Mapping)
        ]
        return f"{self.name}({', '.join(shown)})" if shown else self.name

    def accepts(self, option: str) -> bool:
        """Whether ``factory`` takes ``option`` as a keyword (any, for ``**kwargs``)."""
        try:
            parameters = inspect.signature(self.factory).parameters
        except (TypeError, ValueError):  # no signature to read: trust the caller
            return True
        found = parameters.get(option)
        if found is not None:
            return found.kind in (
                inspect.Parameter.KEYWORD_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            )
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())

    def with_options(self, **options: Any) -> SimScheduler:
        """A copy with ``options`` added (a None value sets None: the scheduler's default)."""
        return attrs.evolve(self, options={**self.options, **options})

    def build(
        self,
        planner: SwapPlanner,
        effects: Effects,
        *,
        clock: Callable[[], float],
        models: Mapping[str, ModelProfile],
    ) -> Scheduler:
        """Build the scheduler for one run."""
        options = dict(self.options)
        if self.load_times and "load_times" not in options:
            # Load times must be > 0 for a cost ratio: an instant load costs "almost nothing".
            options["load_times"] = {
                name: max(profile.load, 1e-6) for name, profile in models.items()
            }
            if "costs" not in options and any(p.sleeps for p in models.values()):
                # The profiles' prices: a sleeping model's wake, a stopped one's load.
                from swapcore.costs import SwapCosts

                options["costs"] = SwapCosts(
                    {
                        name: {"load": profile.load}
                        | ({"wake": profile.wake} if profile.wake is not None else {})
                        for name, profile in models.items()
                    }
                )
        return self.factory(planner, effects, clock=clock, **options)


def fifo(**options: Any) -> SimScheduler:
    """:class:`~swapcore.FIFOScheduler` with ``options`` (``max_wait``, ``priority``, ...)."""
    from swapcore.scheduling.fifo import FIFOScheduler

    return SimScheduler("fifo", FIFOScheduler, options)


def arrival_order(**options: Any) -> SimScheduler:
    """``ArrivalOrderScheduler`` (strict arrival order, the pre-collation baseline).

    Raises :class:`~swapcore.ConfigError` when this swapcore has no such scheduler.
    """
    factory = _optional_scheduler("arrival", "ArrivalOrderScheduler")
    return SimScheduler("arrival", factory, options)


def cost_aware(**options: Any) -> SimScheduler:
    """``CostAwareScheduler``; its ``load_times`` default to the run's model profiles.

    When some profile can sleep, its ``costs`` default to the profiles' load
    and wake seconds too, so a sleeping model is priced by its wake.

    Raises :class:`~swapcore.ConfigError` when this swapcore has no such scheduler.
    """
    factory = _optional_scheduler("costaware", "CostAwareScheduler")
    return SimScheduler("cost-aware", factory, options, load_times=True)


def _optional_scheduler(module: str, name: str) -> SimSchedulerFactory:
    try:
        factory: SimSchedulerFactory = getattr(
            importlib.import_module(f"swapcore.scheduling.{module}"), name
        )
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{name} is not available in this swapcore") from exc
    return factory


def _accepts_clock(factory: Callable[..., object]) -> bool:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: trust the caller
        return True
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return True
        if parameter.name == "clock" and parameter.kind is not inspect.Parameter.POSITIONAL_ONLY:
            return True
    return False


def _scheduler_label(factory: object, scheduler: object) -> str:
    if isinstance(factory, SimScheduler):
        return factory.label
    name = type(scheduler).__name__
    if isinstance(factory, functools.partial) and factory.keywords:
        shown = ", ".join(f"{k}={_option_text(v)}" for k, v in factory.keywords.items())
        return f"{name}({shown})"
    return name
