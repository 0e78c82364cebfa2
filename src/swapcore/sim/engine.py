"""The discrete-event engine: the real scheduler and planner on a virtual clock.

:func:`simulate` replays a trace of :class:`~swapcore.sim.traces.Arrival`
against a planner and a scheduler. The engine is the scheduler's driver: it
implements :class:`~swapcore.scheduling.effects.Effects` with virtual
processes (STOPPED, STARTING, READY, STOPPING) whose stops and loads take the
seconds their :class:`ModelProfile` says, and a heap of timed events. Nothing
of the scheduler's or the planner's logic is copied here: every decision is
theirs, the engine only makes time pass.

Events at equal times run in this order: process transitions (a stop or a
load finishing), then serve completions, then ``max_wait`` ticks, then
arrivals; events of one kind in the order they were scheduled (arrivals in
trace order). So a model that frees up at ``t`` is free for a request that
arrives at ``t``. The same inputs always give the same report.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import importlib
import inspect
import math
import types
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from swapcore.errors import (
    ConcurrencyLimitExceeded,
    ConfigError,
    ModelNotFound,
    RoutingError,
)
from swapcore.planners.base import SwapPlanner
from swapcore.process import ProcessState
from swapcore.scheduling.effects import Effects, Scheduler
from swapcore.scheduling.requests import Request
from swapcore.sim.report import (
    FAILED,
    NOT_FOUND,
    REJECTED,
    SERVED,
    UNFINISHED,
    LoadInterval,
    SimReport,
    build_report,
)
from swapcore.sim.traces import Arrival

__all__ = [
    "ModelProfile",
    "SimScheduler",
    "arrival_order",
    "cost_aware",
    "fifo",
    "simulate",
]

_STOPPED = ProcessState.STOPPED
_STARTING = ProcessState.STARTING
_READY = ProcessState.READY
_STOPPING = ProcessState.STOPPING

# Event kinds double as their order among events at equal times.
_PROCESS = 0  # a stop or a load finished
_SERVE = 1  # a granted request finished
_TICK = 2  # the scheduler's next_deadline() came
# Arrivals come last (order 3); they are merged from the sorted trace, not heaped.


def _seconds(name: str, value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number) and number >= 0:
            return number + 0.0
    raise ConfigError(f"ModelProfile.{name} must be a finite number of seconds >= 0, got {value!r}")


def _load(value: object) -> float:
    return _seconds("load", value)


def _stop(value: object) -> float:
    return _seconds("stop", value)


def _size(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number) and number > 0:
            return number
    raise ConfigError(f"ModelProfile.size must be None or a finite number > 0, got {value!r}")


@attrs.frozen
class ModelProfile:
    """How one model behaves in the simulator.

    ``load`` is the seconds from start to ready, ``stop`` the seconds from
    the stop request to stopped (evicted models stop in parallel; the target
    loads once they all have). ``size`` (e.g. GiB) is optional; when every
    model has one the report includes the peak memory in use. Invalid
    values raise :class:`~swapcore.ConfigError` naming the field.
    """

    load: float = attrs.field(converter=_load)
    stop: float = attrs.field(default=0.0, converter=_stop)
    size: float | None = attrs.field(default=None, converter=_size)


# --------------------------------------------------------------------------- schedulers

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


# --------------------------------------------------------------------------- the engine


@attrs.define(eq=False, slots=True)
class _SwapRun:
    target: str
    pending_stops: int


def simulate(
    trace: Iterable[Arrival],
    *,
    planner: SwapPlanner | Callable[[], SwapPlanner],
    models: Mapping[str, ModelProfile | float],
    scheduler: SimScheduler | SimSchedulerFactory | None = None,
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
    request for any other model is recorded as ``not_found``.

    ``scheduler`` is None (:class:`~swapcore.FIFOScheduler` with its
    defaults), a :class:`SimScheduler` recipe such as ``fifo(max_wait=30)``,
    or any callable accepting ``(planner, effects, clock=...)`` that returns
    a :class:`~swapcore.Scheduler` (a scheduler class, a
    ``functools.partial`` of one). ``clock`` is the virtual clock: a
    scheduler reading ``time.monotonic`` would mix two clocks. When the
    scheduler has ``next_deadline()`` and ``on_tick()`` (``max_wait``), the
    engine calls ``on_tick`` at each deadline.

    The scheduler calls ``planner.on_serve`` itself on each grant
    (:class:`~swapcore.FIFOScheduler` does), so the engine does not. Every
    arrival yields exactly one :class:`~swapcore.sim.report.RequestRecord`,
    in trace order (sorted by time, stable). The engine checks the
    scheduler as it goes and raises ``RuntimeError`` when it grants a model
    that is not ready, stops a model with requests in flight, starts a
    second swap to the same model, or resolves a request twice.
    Deterministic: the same inputs give the same report.
    """
    profiles = _profiles(models)
    arrivals = list(trace)
    for index, arrival in enumerate(arrivals):
        if not isinstance(arrival, Arrival):
            raise ConfigError(f"trace[{index}] must be an Arrival, got {type(arrival).__name__}")
    if any(arrivals[i].at > arrivals[i + 1].at for i in range(len(arrivals) - 1)):
        arrivals.sort(key=lambda a: a.at)
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
    engine = _Engine(profiles, arrivals)
    if scheduler is None:
        scheduler = fifo()
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
    engine.run(built)
    return engine.report(_scheduler_label(scheduler, built), repr(plan))


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


class _Engine:
    """The virtual server: implements Effects, owns the event heap and the records."""

    def __init__(self, profiles: Mapping[str, ModelProfile], arrivals: Sequence[Arrival]) -> None:
        self.now = 0.0
        self.events = 0
        self._profiles = profiles
        self._arrivals = arrivals
        self._states: dict[str, ProcessState] = dict.fromkeys(profiles, _STOPPED)
        self._running: dict[str, ProcessState] = {}
        self._running_view = types.MappingProxyType(self._running)
        self._heap: list[tuple[float, int, int, str, _SwapRun | None]] = []
        self._seq = 0
        self._swaps: dict[str, _SwapRun] = {}
        self._in_flight: dict[str, int] = {}
        # Per-request outcome, indexed by Request.id (= position in the trace).
        count = len(arrivals)
        self._started: list[float | None] = [None] * count
        self._finished: list[float | None] = [None] * count
        self._outcome: list[str] = [UNFINISHED] * count
        self._errors: dict[int, str] = {}
        # Per-model accounting.
        self._loads: dict[str, int] = dict.fromkeys(profiles, 0)
        self._busy: dict[str, float] = dict.fromkeys(profiles, 0.0)
        self._busy_since: dict[str, float] = {}
        self._open: dict[str, list[float | None]] = {}  # model -> [start, ready, stop_began]
        self._timeline: list[LoadInterval] = []
        sizes = [p.size for p in profiles.values()]
        self._sized = bool(sizes) and all(size is not None for size in sizes)
        self._memory = 0.0
        self._peak_memory = 0.0

    def clock(self) -> float:
        """The virtual clock handed to the scheduler."""
        return self.now

    # -- Effects ---------------------------------------------------------------

    def model_state(self, model: str) -> ProcessState | None:
        """The virtual process state, None for a model without a profile."""
        return self._states.get(model)

    def running_models(self) -> Mapping[str, ProcessState]:
        """A live read-only view of the models that are starting, ready or stopping."""
        return self._running_view

    def start_swap(self, model: str, evict: Sequence[str]) -> None:
        """Stop ``evict`` in parallel, then load ``model``; the load's end is the swap's."""
        if model in self._swaps:
            raise RuntimeError(f"the scheduler started a second swap to {model!r}")
        if model not in self._states:
            raise RuntimeError(f"the scheduler started a swap to unknown model {model!r}")
        swap = _SwapRun(model, 0)
        self._swaps[model] = swap
        for victim in evict:
            state = self._states.get(victim)
            if self._in_flight.get(victim):
                raise RuntimeError(
                    f"the swap to {model!r} evicts {victim!r}, which has requests in flight"
                )
            if state is _READY:
                self._states[victim] = _STOPPING
                self._running[victim] = _STOPPING
                opened = self._open.get(victim)
                if opened is not None:
                    opened[2] = self.now
                swap.pending_stops += 1
                self._push(self.now + self._profiles[victim].stop, _PROCESS, victim, swap)
            elif state is not _STOPPED:
                raise RuntimeError(
                    f"the swap to {model!r} evicts {victim!r}, which is "
                    f"{state.value if state else 'unknown'}"
                )
        if not swap.pending_stops:
            self._begin_load(swap)

    def grant_serve(self, request: Request, model: str) -> bool:
        """Serve the request on ``model`` for its service seconds; always taken."""
        index = request.id
        if self._outcome[index] is not UNFINISHED:
            raise RuntimeError(f"request {index} for {request.model!r} was resolved twice")
        if self._states.get(model) is not _READY or model != request.model:
            state = self._states.get(model)
            raise RuntimeError(
                f"the scheduler granted request {index} for {request.model!r} on {model!r}, "
                f"which is {state.value if state else 'unknown'}"
            )
        now = self.now
        self._started[index] = now
        end = now + self._arrivals[index].service
        self._finished[index] = end
        self._outcome[index] = SERVED
        count = self._in_flight.get(model, 0)
        if not count:
            self._busy_since[model] = now
        self._in_flight[model] = count + 1
        self._push(end, _SERVE, model, None)
        return True

    def grant_error(self, request: Request, error: RoutingError) -> None:
        """Record the request's failure and its reason."""
        index = request.id
        if self._outcome[index] is not UNFINISHED:
            raise RuntimeError(f"request {index} for {request.model!r} was resolved twice")
        if isinstance(error, ConcurrencyLimitExceeded):
            outcome = REJECTED
        elif isinstance(error, ModelNotFound):
            outcome = NOT_FOUND
        else:
            outcome = FAILED
        self._outcome[index] = outcome
        self._finished[index] = self.now
        self._errors[index] = f"{type(error).__name__}: {error}"

    def report_position(self, request: Request, position: int) -> None:
        """Queue positions are not simulated; ignored."""

    # -- processes -------------------------------------------------------------

    def _push(self, at: float, kind: int, model: str, swap: _SwapRun | None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, kind, self._seq, model, swap))

    def _begin_load(self, swap: _SwapRun) -> None:
        model = swap.target
        state = self._states[model]
        if state is _READY:  # nothing to load: the swap only stopped models
            self._push(self.now, _PROCESS, model, None)
            return
        if state is not _STOPPED:
            raise RuntimeError(f"the swap to {model!r} found it {state.value}")
        self._states[model] = _STARTING
        self._running[model] = _STARTING
        self._loads[model] += 1
        self._open[model] = [self.now, None, None]
        if self._sized:
            self._memory += self._profiles[model].size or 0.0
            self._peak_memory = max(self._peak_memory, self._memory)
        self._push(self.now + self._profiles[model].load, _PROCESS, model, None)

    def _stopped(self, model: str, swap: _SwapRun) -> None:
        self._states[model] = _STOPPED
        del self._running[model]
        self._close(model, self.now)
        if self._sized:
            self._memory -= self._profiles[model].size or 0.0
        swap.pending_stops -= 1
        if not swap.pending_stops:
            self._begin_load(swap)

    def _close(self, model: str, end: float) -> None:
        opened = self._open.pop(model, None)
        if opened is None:
            return
        start, ready, stop_began = opened
        assert start is not None
        self._timeline.append(LoadInterval(model, start, ready, end, stop_began))

    # -- the event loop --------------------------------------------------------

    def run(self, scheduler: Scheduler) -> None:
        """Process every event until nothing is left to happen."""
        heap = self._heap
        arrivals = self._arrivals
        pop = heapq.heappop
        on_request = scheduler.on_request
        on_swap_done = scheduler.on_swap_done
        on_serve_done = scheduler.on_serve_done
        next_deadline = getattr(scheduler, "next_deadline", None)
        on_tick = getattr(scheduler, "on_tick", None)
        ticking = callable(next_deadline) and callable(on_tick)
        ticks: set[float] = set()
        states = self._states
        running = self._running
        in_flight = self._in_flight
        count = len(arrivals)
        position = 0
        events = 0
        while True:
            if heap and (position >= count or heap[0][0] <= arrivals[position].at):
                at, kind, _, model, swap = pop(heap)
                self.now = at
                if kind == _SERVE:
                    left = in_flight[model] - 1
                    if left:
                        in_flight[model] = left
                    else:
                        del in_flight[model]
                        self._busy[model] += at - self._busy_since.pop(model)
                    on_serve_done(model)
                elif kind == _PROCESS:
                    if swap is not None:
                        self._stopped(model, swap)
                    else:
                        if states[model] is _STARTING:
                            states[model] = _READY
                            running[model] = _READY
                            opened = self._open.get(model)
                            if opened is not None:
                                opened[1] = at
                        del self._swaps[model]
                        on_swap_done(model, None)
                else:
                    ticks.discard(at)
                    assert on_tick is not None
                    on_tick()
            elif position < count:
                arrival = arrivals[position]
                self.now = arrival.at
                on_request(
                    Request(
                        arrival.model, id=position, arrived=arrival.at, priority=arrival.priority
                    )
                )
                position += 1
            else:
                break
            events += 1
            if ticking:
                assert next_deadline is not None
                deadline = next_deadline()
                if deadline is not None and deadline > self.now and deadline not in ticks:
                    ticks.add(deadline)
                    self._push(deadline, _TICK, "", None)
        self.events = events

    # -- the report ------------------------------------------------------------

    def report(self, scheduler: str, planner: str) -> SimReport:
        """Close the open intervals at the end of the simulation and build the report."""
        end = self.now
        for model in list(self._open):
            self._close(model, end)
        for model, since in self._busy_since.items():
            self._busy[model] += end - since
        self._timeline.sort(key=lambda interval: (interval.start, interval.model))
        return build_report(
            arrivals=self._arrivals,
            started=self._started,
            finished=self._finished,
            outcomes=self._outcome,
            errors=self._errors,
            end=end,
            loads=self._loads,
            busy=self._busy,
            timeline=self._timeline,
            peak_memory=self._peak_memory if self._sized else None,
            scheduler=scheduler,
            planner=planner,
            events=self.events,
        )
