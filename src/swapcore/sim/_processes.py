"""The virtual server's processes: the event heap, stops, loads, idle TTL unloads, accounting.

:class:`VirtualProcesses` is the base of :class:`~swapcore.sim._server.VirtualServer`
(through ``swapcore.sim._callers.VirtualCallers``):
it holds the virtual process states (STOPPED, STARTING, READY, STOPPING,
SLEEPING),
the heap of timed events, the records of every load (the timeline, memory)
and the idle TTL timers. The TTL follows the router's own rules
(``swapcore.router._swaps``: ``_maybe_arm_ttl``, ``_on_ttl_event``,
``_begin_unload``) step for step, so the simulated unloads are the ones the
router would make.
"""

from __future__ import annotations

import heapq
import types
from collections.abc import Mapping

import attrs

from swapcore.planners.base import SwapPlanner
from swapcore.planners.residency import SleepRules
from swapcore.process import ProcessState
from swapcore.scheduling.effects import Scheduler
from swapcore.sim._devices import DeviceUse
from swapcore.sim.profiles import ModelProfile
from swapcore.sim.report import LoadInterval

__all__ = ["VirtualProcesses"]

_STOPPED = ProcessState.STOPPED
_STARTING = ProcessState.STARTING
_READY = ProcessState.READY
_STOPPING = ProcessState.STOPPING
_SLEEPING = ProcessState.SLEEPING
_RUNNING_STATES = frozenset({_STARTING, _READY, _STOPPING})

# Event kinds double as their order among events at equal times.
_GIVE_UP = 0  # a waiting request's patience ran out (first: the router's cancels jump the queue)
_PROCESS = 1  # a stop or a load finished
_SERVE = 2  # a granted request finished
_TICK = 3  # the scheduler's next_deadline() came
_TTL = 4  # an idle TTL timer came
# Arrivals come last (order 5); they are merged from the sorted trace, not heaped.


@attrs.define(eq=False, slots=True)
class _SwapRun:
    target: str
    evict: tuple[str, ...]
    pending_stops: int


# The "swap" of a _PROCESS event that ends an idle TTL unload.
_UNLOAD = _SwapRun("", (), 0)


@attrs.define(eq=False, slots=True)
class _Tiers:
    """Sleeping: the rules, who is falling asleep or waking, counts, seconds, host memory.

    One attribute of the engine holds it all (see VirtualCallers on why the
    engine's attribute count matters).
    """

    rules: SleepRules | None = None
    planner: SwapPlanner | None = None
    falling: set[str] = attrs.Factory(set)  # STOPPING on the way to sleep
    waking: set[str] = attrs.Factory(set)  # STARTING on the way back from sleep
    woken: set[str] = attrs.Factory(set)  # whose open load interval began with a wake
    wakes: dict[str, int] = attrs.Factory(dict)
    sleeps: dict[str, int] = attrs.Factory(dict)
    stops: dict[str, int] = attrs.Factory(dict)
    swap_seconds: float = 0.0
    host: float = 0.0
    peak_host: float = 0.0

    def held(self, model: str) -> float:
        return self.rules.held(model) if self.rules is not None else 0.0


_Event = tuple[float, int, int, str, _SwapRun | None]


class VirtualProcesses:
    """Virtual processes on a heap of timed events, with idle TTL timers as the router's."""

    # Set only when the simulation has devices; a class default otherwise, as
    # VirtualCallers._patience, to keep the instance attributes few.
    _devices: DeviceUse | None = None

    def __init__(self, profiles: Mapping[str, ModelProfile]) -> None:
        self.now = 0.0
        self._profiles = profiles
        self._states: dict[str, ProcessState] = dict.fromkeys(profiles, _STOPPED)
        self._running: dict[str, ProcessState] = {}
        self._running_view = types.MappingProxyType(self._running)
        self._heap: list[_Event] = []
        self._seq = 0
        self._swaps: dict[str, _SwapRun] = {}
        self._in_flight: dict[str, int] = {}
        # Idle TTL, as the router keeps it: the models with a TTL, their requests
        # not yet resolved, the armed timer (the heap event's seq: arming again
        # or cancelling replaces or drops it, so an older event is stale) and
        # the models whose TTL stop is in progress.
        self._ttl = {m: p.ttl for m, p in profiles.items() if p.ttl is not None}
        self._waiting: dict[str, int] = {}
        self._ttl_armed: dict[str, int] = {}
        self._unloading: set[str] = set()
        self._ttl_unloads: dict[str, int] = dict.fromkeys(profiles, 0)
        # Per-model accounting.
        self._loads: dict[str, int] = dict.fromkeys(profiles, 0)
        self._open: dict[str, list[float | None]] = {}  # model -> [start, ready, stop_began]
        self._timeline: list[LoadInterval] = []
        sizes = [p.size for p in profiles.values()]
        self._sized = bool(sizes) and all(size is not None for size in sizes)
        self._memory = 0.0
        self._peak_memory = 0.0
        self._tiers = _Tiers()

    def _push(self, at: float, kind: int, model: str, swap: _SwapRun | None) -> int:
        self._seq += 1
        heapq.heappush(self._heap, (at, kind, self._seq, model, swap))
        return self._seq

    # -- stops and loads ---------------------------------------------------------

    def _begin_stop(self, model: str) -> None:
        """READY -> STOPPING: the model's load interval stops being ready now."""
        self._states[model] = _STOPPING
        self._running[model] = _STOPPING
        opened = self._open.get(model)
        if opened is not None:
            opened[2] = self.now

    def _leave(self, model: str) -> None:
        """STOPPING -> STOPPED: close the model's load interval and free its memory."""
        self._states[model] = _STOPPED
        del self._running[model]
        self._close(model, self.now)
        if self._sized:
            self._memory -= self._profiles[model].size or 0.0
        if self._devices is not None:
            self._devices.release(model)
        tiers = self._tiers
        tiers.stops[model] = tiers.stops.get(model, 0) + 1
        tiers.swap_seconds += self._profiles[model].stop

    def _begin_sleep(self, model: str) -> None:
        """READY -> STOPPING on the way to sleep: its host memory is held from now."""
        self._begin_stop(model)
        tiers = self._tiers
        tiers.falling.add(model)
        tiers.host += tiers.held(model)
        tiers.peak_host = max(tiers.peak_host, tiers.host)

    def _asleep(self, model: str) -> None:
        """STOPPING -> SLEEPING: the load interval closes and accelerator memory frees."""
        self._states[model] = _SLEEPING
        del self._running[model]
        self._close(model, self.now)
        if self._sized:
            self._memory -= self._profiles[model].size or 0.0
        if self._devices is not None:
            self._devices.release(model)
        tiers = self._tiers
        tiers.falling.discard(model)
        tiers.sleeps[model] = tiers.sleeps.get(model, 0) + 1
        tiers.swap_seconds += self._profiles[model].sleep

    def _sleeping_now(self) -> list[str]:
        """Models asleep or falling asleep (they hold host memory)."""
        states = self._states
        return [m for m in self._profiles if states[m] is _SLEEPING or m in self._tiers.falling]

    def _woken(self, model: str) -> None:
        """A wake finished: the model's host memory is free again."""
        tiers = self._tiers
        tiers.waking.discard(model)
        tiers.host -= tiers.held(model)

    def _begin_load(self, swap: _SwapRun) -> None:
        model = swap.target
        state = self._states[model]
        if state is _READY:  # nothing to load: the swap only stopped models
            if self._devices is not None:
                self._devices.forget(model)
            self._push(self.now, _PROCESS, model, None)
            return
        profile = self._profiles[model]
        tiers = self._tiers
        if state is _SLEEPING:
            assert profile.wake is not None  # only a model that sleeps is ever asleep
            seconds = profile.wake
            tiers.waking.add(model)
            tiers.woken.add(model)
            tiers.wakes[model] = tiers.wakes.get(model, 0) + 1
        elif state is _STOPPED:
            seconds = profile.load
            self._loads[model] += 1
        else:
            raise RuntimeError(f"the swap to {model!r} found it {state.value}")
        tiers.swap_seconds += seconds
        self._states[model] = _STARTING
        self._running[model] = _STARTING
        self._open[model] = [self.now, None, None]
        if self._sized:
            self._memory += profile.size or 0.0
            self._peak_memory = max(self._peak_memory, self._memory)
        if self._devices is not None:
            self._devices.load(model, profile.size or 0.0)
        self._push(self.now + seconds, _PROCESS, model, None)

    def _stopped(self, model: str, swap: _SwapRun) -> None:
        if model in self._tiers.falling:
            self._asleep(model)
        else:
            self._leave(model)
        swap.pending_stops -= 1
        if not swap.pending_stops:
            self._begin_load(swap)

    def _close(self, model: str, end: float) -> None:
        opened = self._open.pop(model, None)
        if opened is None:
            return
        start, ready, stop_began = opened
        assert start is not None
        woken = self._tiers.woken
        wake = model in woken
        if wake:
            woken.discard(model)
        self._timeline.append(LoadInterval(model, start, ready, end, stop_began, wake))

    # -- idle TTL (the router's _maybe_arm_ttl, _on_ttl_event, _begin_unload) --------

    def _resolved(self, model: str) -> None:
        """A request for ``model`` (which has a TTL) was granted or failed."""
        count = self._waiting[model] - 1
        if count:
            self._waiting[model] = count
        else:
            del self._waiting[model]

    def _idle(self, model: str) -> bool:
        """Running with nothing in flight or waiting, no swap to it and no TTL stop under way."""
        return not (
            model in self._in_flight
            or model in self._waiting
            or model in self._swaps
            or model in self._unloading
            or self._states[model] not in _RUNNING_STATES
        )

    def _arm_ttl(self, model: str) -> None:
        """Arm (or re-arm) the idle timer of an idle, running model with a TTL."""
        ttl = self._ttl.get(model)
        if ttl is not None and self._idle(model):
            self._ttl_armed[model] = self._push(self.now + ttl, _TTL, model, None)

    def _ttl_fired(self, model: str, seq: int, at: float, scheduler: Scheduler) -> bool:
        """The timer ``seq`` came at ``at``: unload the model if it is still idle.

        False when the timer is stale; the clock then stays where it was (a
        stale timer is no event: it must not stretch the end of the run).
        """
        if self._ttl_armed.get(model) != seq:
            return False  # cancelled by an arrival or a swap, or armed again since
        self.now = at
        del self._ttl_armed[model]
        if not self._idle(model) or any(model in swap.evict for swap in self._swaps.values()):
            return True
        state = self._states[model]
        if state is not _READY:  # a STARTING model is always a swap's target
            raise RuntimeError(f"the idle TTL of {model!r} found it {state.value}")
        # The router tells the scheduler first, then commits to the stop.
        scheduler.on_unload((model,))
        self._unloading.add(model)
        self._ttl_unloads[model] += 1
        self._begin_stop(model)
        self._push(self.now + self._profiles[model].stop, _PROCESS, model, _UNLOAD)
        return True

    def _unloaded(self, model: str, scheduler: Scheduler) -> None:
        """The TTL stop finished: the model is stopped; the scheduler re-examines its queue."""
        self._unloading.discard(model)
        self._leave(model)
        scheduler.on_unload_done((model,))
