"""The simulator's virtual server: virtual processes, a heap of timed events, the records.

:class:`VirtualServer` implements :class:`~swapcore.scheduling.effects.Effects`
for the scheduler under simulation: its processes (STOPPED, STARTING, READY,
STOPPING) stop and load in the seconds their
:class:`~swapcore.sim.profiles.ModelProfile` says, and :meth:`VirtualServer.run`
makes time pass until nothing is left to happen (see
:mod:`swapcore.sim.engine` for the order of events at equal times).
"""

from __future__ import annotations

import heapq
import types
from collections.abc import Mapping, Sequence

import attrs

from swapcore.errors import ConcurrencyLimitExceeded, ModelNotFound, RoutingError
from swapcore.process import ProcessState
from swapcore.scheduling.effects import Scheduler
from swapcore.scheduling.requests import Request
from swapcore.sim.profiles import ModelProfile
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

__all__ = ["VirtualServer"]


_STOPPED = ProcessState.STOPPED
_STARTING = ProcessState.STARTING
_READY = ProcessState.READY
_STOPPING = ProcessState.STOPPING

# Event kinds double as their order among events at equal times.
_PROCESS = 0  # a stop or a load finished
_SERVE = 1  # a granted request finished
_TICK = 2  # the scheduler's next_deadline() came
# Arrivals come last (order 3); they are merged from the sorted trace, not heaped.


@attrs.define(eq=False, slots=True)
class _SwapRun:
    target: str
    pending_stops: int


class VirtualServer:
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
