"""The discrete-event engine: the real scheduler and planner on a virtual clock.

:func:`simulate` replays a trace of :class:`~swapcore.sim.traces.Arrival`
against a planner and a scheduler. The engine is the scheduler's driver: it
implements :class:`~swapcore.scheduling.effects.Effects` with virtual
processes (STOPPED, STARTING, READY, STOPPING, SLEEPING) whose stops, loads,
sleeps and wakes take the seconds their :class:`ModelProfile` says, and a
heap of timed events. Nothing of the scheduler's or the planner's logic is
copied here: every decision is theirs, the engine only makes time pass. A model with an idle TTL
(``ModelProfile.ttl``) is unloaded as the router's ``idle_ttl`` unloads it:
through the scheduler's ``on_unload`` and ``on_unload_done``. A request with
a patience (``Arrival.patience``, or ``simulate``'s default) that is still
waiting ``patience`` seconds after its arrival gives up: the engine calls
the scheduler's ``on_cancel``, as the router does for a cancelled caller.

Events at equal times run in this order: give-ups, then process transitions
(a stop or a load finishing), then serve completions, then ``max_wait``
ticks, then idle TTL timers, then arrivals; events of one kind in the order
they were scheduled (arrivals in trace order, give-ups in the order of their
arrivals). So a model that frees up at ``t`` is free for a request that
arrives at ``t``, and a model whose TTL ends at ``t`` is unloaded before a
request arriving at ``t``.

Give-ups come first because the router puts a cancelled caller first: its
``Ticket.cancel`` posts ``_on_cancel_event`` ahead of the events already
waiting (``swapcore.router._parts.Ticket.cancel``, ``_post(..., first=True)``), so a
serve or swap completion at the same instant cannot grant it, and a grant
the router makes anyway finds the caller gone (``BaseRouter._grant_serve``:
``if ticket.done()``) or is given back (``_Acquisition.__aenter__``). So at
``t = arrived + patience`` the caller gives up even if its model becomes
ready at ``t``: a served request started strictly before ``arrived +
patience``. A timer that no longer applies (an idle TTL timer cancelled by a
request or a swap, the give-up of a request granted before) is no event: it
is not counted and does not move the clock, so it cannot stretch the end of
the run. The same inputs always give the same report.

The pieces live in their own modules and are importable from here as well:
:class:`ModelProfile` (:mod:`swapcore.sim.profiles`), the scheduler recipes
:class:`SimScheduler`, :func:`fifo`, :func:`arrival_order` and
:func:`cost_aware` (:mod:`swapcore.sim.schedulers`) and the virtual server
(``swapcore.sim._server``, over ``_callers`` and ``_processes``).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Mapping

from swapcore.errors import ConfigError
from swapcore.planners.base import SwapPlanner
from swapcore.scheduling.effects import Scheduler
from swapcore.sim._devices import check_devices
from swapcore.sim._server import VirtualServer
from swapcore.sim.profiles import ModelProfile
from swapcore.sim.report import SimReport
from swapcore.sim.schedulers import (
    SimScheduler,
    SimSchedulerFactory,
    _accepts_clock,
    _scheduler_label,
    arrival_order,
    cost_aware,
    fifo,
)
from swapcore.sim.traces import Arrival, _positive_or_none

__all__ = [
    "ModelProfile",
    "SimScheduler",
    "arrival_order",
    "cost_aware",
    "fifo",
    "simulate",
]


def simulate(
    trace: Iterable[Arrival],
    *,
    planner: SwapPlanner | Callable[[], SwapPlanner],
    models: Mapping[str, ModelProfile | float],
    scheduler: SimScheduler | SimSchedulerFactory | None = None,
    patience: float | None = None,
    host_budget: float | None = None,
    devices: Mapping[str, float] | None = None,
) -> SimReport:
    """Replay ``trace`` with the real scheduler and planner on a virtual clock.

    ``planner`` is a :class:`~swapcore.SwapPlanner` or a zero-argument
    callable returning a fresh one. A planner that records serves
    (``on_serve``: :class:`~swapcore.MaxLoadedPlanner`,
    :class:`~swapcore.MemoryBudgetPlanner`) carries its recency from one run
    into the next, so such an instance runs one simulation only; a second
    run raises :class:`~swapcore.ConfigError` (pass a factory, e.g.
    ``planner=lambda: MaxLoadedPlanner(2)``, to compare several runs).
    ``models`` maps every model the simulated server handles to its
    :class:`ModelProfile` (a bare number is the load seconds); a trace
    request for any other model is recorded as ``not_found``. A profile's
    ``ttl`` unloads its model after that many idle seconds (nothing in
    flight or waiting), exactly when :class:`~swapcore.BaseRouter` with
    ``idle_ttl`` would; the run goes on until the last such unload.

    Sleep: a model whose profile has a ``wake`` time can sleep. When a swap
    evicts models, ``planner.residency_for`` decides which sleep and which
    stop, as in :class:`~swapcore.BaseRouter`; a planner without
    ``sleep_rules`` gets the profiles' levels and host sizes with
    ``host_budget`` (None: no bound; the unit of ``host_size``). A sleeping
    target wakes in its ``wake`` seconds. The report counts cold loads,
    wakes, stops and sleeps, the total swap seconds and the peak host memory.

    Devices: ``devices`` maps each device (GPU) to its budget, in the unit
    of the profiles' ``size`` (every model then needs one, and none may be
    larger than all devices together, else :class:`~swapcore.ConfigError`).
    The report then gives each device's peak use (``peak_devices``), the
    loads that took a device over its budget (``overcommits``) and those
    spread over several (``split_loads``). A planner with ``placement_of``
    (:class:`~swapcore.PlacementPlanner`) says where each swap's target
    goes; any other leaves it to the server, which puts the model whole on
    the device with the most room (see ``swapcore.sim._devices``).

    ``scheduler`` is None (:class:`~swapcore.FIFOScheduler` with its
    defaults), a :class:`SimScheduler` recipe such as ``fifo(max_wait=30)``,
    or any callable accepting ``(planner, effects, clock=...)`` that returns
    a :class:`~swapcore.Scheduler` (a scheduler class, a
    ``functools.partial`` of one). ``clock`` is the virtual clock: a
    scheduler reading ``time.monotonic`` would mix two clocks. When the
    scheduler has ``next_deadline()`` and ``on_tick()`` (``max_wait``), the
    engine calls ``on_tick`` at each deadline.

    ``patience`` is the seconds a caller waits for its grant, for every
    arrival without its own ``Arrival.patience`` (None: they wait forever;
    otherwise a finite number > 0, else :class:`~swapcore.ConfigError`). A
    request not granted (nor failed) within its patience gives up at
    ``arrived + patience``: the engine calls the scheduler's ``on_cancel``,
    as :class:`~swapcore.BaseRouter` does for a caller cancelled while
    waiting. It leaves the queue, or the swap it waits on (the swap goes
    on, its load counted), never causes a load, and is recorded as
    ``abandoned`` with ``wait`` = its patience; waits are reported over the
    served requests only. At ``arrived + patience`` exactly, the give-up
    comes before any grant (see the module's order of events).

    The scheduler calls ``planner.on_serve`` itself on each grant
    (:class:`~swapcore.FIFOScheduler` does), so the engine does not. Every
    arrival yields exactly one :class:`~swapcore.sim.report.RequestRecord`,
    in trace order (sorted by time, stable). The engine checks the
    scheduler as it goes and raises ``RuntimeError`` when it grants a model
    that is not ready, stops a model with requests in flight, starts a
    second swap to the same model, or resolves a request twice.
    Deterministic: the same inputs give the same report.
    """
    arrivals = checked_arrivals(trace)
    engine, built, label = build_server(
        arrivals,
        planner=planner,
        models=models,
        scheduler=scheduler,
        patience=patience,
        host_budget=host_budget,
        devices=devices,
    )
    engine.run(built)
    return engine.report(label, repr(engine.planner))


def checked_arrivals(trace: Iterable[Arrival]) -> list[Arrival]:
    """The trace as a list sorted by time (stable); ConfigError for an item not an Arrival."""
    arrivals = list(trace)
    for index, arrival in enumerate(arrivals):
        if not isinstance(arrival, Arrival):
            raise ConfigError(f"trace[{index}] must be an Arrival, got {type(arrival).__name__}")
    if any(arrivals[i].at > arrivals[i + 1].at for i in range(len(arrivals) - 1)):
        arrivals.sort(key=lambda a: a.at)
    return arrivals


def build_server(
    arrivals: list[Arrival],
    *,
    planner: SwapPlanner | Callable[[], SwapPlanner],
    models: Mapping[str, ModelProfile | float],
    scheduler: SimScheduler | SimSchedulerFactory | None,
    patience: float | None,
    host_budget: float | None,
    devices: Mapping[str, float] | None,
) -> tuple[VirtualServer, Scheduler, str]:
    """One virtual server with its planner and scheduler, ready to run; :func:`simulate`'s checks.

    Returns the server, the scheduler built over it and the scheduler's
    label for the report. A recency-aware planner instance is claimed here
    (it cannot run a second simulation). The cluster simulator builds each
    replica's server here too, with an empty list it admits arrivals into.
    """
    profiles = _profiles(models)
    budgets = None if devices is None else check_devices(devices, profiles)
    default_patience = _positive_or_none("patience", patience)
    claim = False
    if isinstance(planner, SwapPlanner):
        claim = _check_unused(planner)
        plan = planner
    elif callable(planner):
        plan = planner()
        if not isinstance(plan, SwapPlanner):
            raise ConfigError(f"planner factory returned {type(plan).__name__}, not a SwapPlanner")
    else:
        raise ConfigError(
            f"planner must be a SwapPlanner or a factory, got {type(planner).__name__}"
        )
    if host_budget is not None and (
        isinstance(host_budget, bool)
        or not isinstance(host_budget, (int, float))
        or not host_budget >= 0
    ):
        raise ConfigError(f"host_budget must be a number >= 0 or None, got {host_budget!r}")
    engine = VirtualServer(profiles, arrivals, default_patience)
    engine.use_planner(plan, host_budget, budgets)
    if scheduler is None:
        scheduler = fifo()
    built: Scheduler
    if isinstance(scheduler, SimScheduler):
        built = scheduler.build(plan, engine, clock=engine.clock, models=profiles)
    elif callable(scheduler):
        if not _accepts_clock(scheduler):
            raise TypeError(
                "the scheduler factory must accept a clock= keyword (the virtual clock), e.g. "
                "lambda planner, effects, clock: MyScheduler(planner, effects, clock=clock)"
            )
        built = scheduler(plan, engine, clock=engine.clock)
    else:
        raise TypeError(f"scheduler must be a SimScheduler or a factory, got {scheduler!r}")
    if claim:
        _claim(plan)
    return engine, built, _scheduler_label(scheduler, built)


# Recency-aware planners that already ran a simulation, by identity (see _claim).
_USED: weakref.WeakValueDictionary[int, SwapPlanner] = weakref.WeakValueDictionary()


def _check_unused(planner: SwapPlanner) -> bool:
    """Refuse a recency-aware planner that already ran; True when it must be claimed."""
    if getattr(type(planner), "on_serve", None) is SwapPlanner.on_serve:
        return False  # records no serves: nothing carries over from one run to the next
    if _USED.get(id(planner)) is planner:
        raise ConfigError(
            f"planner {planner!r} already ran a simulation and remembers its recency; "
            "pass a fresh planner or a factory (planner=lambda: ...) for each run"
        )
    return True


def _claim(planner: SwapPlanner) -> None:
    # A planner that is not weak-referenceable (__slots__) cannot be told apart: trust the caller.
    with contextlib.suppress(TypeError):
        _USED[id(planner)] = planner


def _profiles(models: Mapping[str, ModelProfile | float]) -> dict[str, ModelProfile]:
    if not isinstance(models, Mapping):
        raise ConfigError(f"models must be a mapping of model -> ModelProfile, got {models!r}")
    profiles: dict[str, ModelProfile] = {}
    for name, profile in models.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"models: model names must be non-empty strings, got {name!r}")
        if isinstance(profile, ModelProfile):
            profiles[name] = profile
        elif isinstance(profile, (int, float)) and not isinstance(profile, bool):
            try:
                profiles[name] = ModelProfile(profile)
            except ConfigError as exc:
                raise ConfigError(f"models[{name!r}]: {exc}") from None
        else:
            raise ConfigError(
                f"models[{name!r}] must be a ModelProfile or load seconds, got {profile!r}"
            )
    return profiles
