"""The simulator's virtual server: the Effects and the event loop.

:class:`VirtualServer` implements :class:`~swapcore.scheduling.effects.Effects`
for the scheduler under simulation: its processes (STOPPED, STARTING, READY,
STOPPING, SLEEPING, see ``swapcore.sim._processes``) stop, sleep, wake and
load in the seconds their
:class:`~swapcore.sim.profiles.ModelProfile` says and unload after their idle
TTL, and :meth:`VirtualServer.run` makes time pass until nothing is left to
happen (see :mod:`swapcore.sim.engine` for the order of events at equal times).
The per-request records, failures, give-ups (a caller whose patience ran
out, withdrawn with ``on_cancel`` as the router withdraws a cancelled caller)
and the report are ``swapcore.sim._callers``'s.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence

import attrs

from swapcore.cluster._report import ReplicaReport, build_replica_report
from swapcore.planners.base import SwapPlanner
from swapcore.planners.residency import SleepRules, plan_residency
from swapcore.process import ProcessState
from swapcore.scheduling.effects import Scheduler
from swapcore.scheduling.requests import Request
from swapcore.sim._callers import VirtualCallers
from swapcore.sim._devices import DeviceUse
from swapcore.sim._processes import (
    _PROCESS,
    _READY,
    _SERVE,
    _SLEEPING,
    _STARTING,
    _STOPPED,
    _TICK,
    _TTL,
    _UNLOAD,
    _SwapRun,
)
from swapcore.sim.report import SERVED, UNFINISHED
from swapcore.sim.traces import Arrival

__all__ = ["VirtualServer"]


@attrs.define(eq=False, slots=True)
class _Cursor:
    """Where a resumable run stopped: the next arrival's index and the ticks scheduled."""

    position: int = 0
    ticks: set[float] = attrs.Factory(set)
    pending: list[int] = attrs.Factory(list)  # requests admitted and maybe not yet resolved


class VirtualServer(VirtualCallers):
    """The virtual server: implements Effects and runs the events (records: VirtualCallers)."""

    # Set only on a cluster's servers (resumable); a class default otherwise, as
    # VirtualCallers._patience, to keep the instance attributes few.
    _cursor: _Cursor | None = None

    @property
    def planner(self) -> SwapPlanner:
        """The planner :meth:`use_planner` gave the server."""
        planner = self._tiers.planner
        assert planner is not None, "use_planner has not run"
        return planner

    def resumable(self) -> None:
        """Let :meth:`run` stop at a time and resume (a cluster drives it between arrivals)."""
        self._cursor = _Cursor()

    def due(self, at: float) -> bool:
        """True when an event (timer, completion) is due at or before ``at``."""
        heap = self._heap
        return bool(heap) and heap[0][0] <= at

    def admit(self, arrival: Arrival) -> int:
        """Add ``arrival`` to a resumable server (see ``VirtualCallers.admit``); its index."""
        assert self._cursor is not None, "admit needs a resumable server"
        index = super().admit(arrival)
        self._cursor.pending.append(index)
        return index

    def replica_report(self, replica: str) -> ReplicaReport:
        """What this resumable server would report to a cluster policy now, as ``replica``.

        The rules are :func:`swapcore.cluster.report_from_router`'s (see
        ``build_replica_report``); ``queued`` counts the requests admitted
        and neither granted, failed nor given up.
        """
        cursor = self._cursor
        assert cursor is not None, "replica_report needs a resumable server"
        outcome = self._outcome
        cursor.pending = [i for i in cursor.pending if outcome[i] is UNFINISHED]
        states = self._states
        return build_replica_report(
            replica,
            models=self._profiles,
            running=self._running,
            swapping=self._swaps,
            sleeping=[m for m, state in states.items() if state is _SLEEPING],
            busy=self._in_flight,
            planner=self.planner,
            queued=len(cursor.pending),
            in_flight=sum(self._in_flight.values()),
        )

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
        swap = _SwapRun(model, tuple(evict), 0)
        self._swaps[model] = swap
        if self._devices is not None:  # the planner placed the target in on_swap_start
            self._devices.swap_started(model)
        if self._ttl_armed:  # as the router, a swap cancels its models' idle timers
            for name in (model, *swap.evict):
                self._ttl_armed.pop(name, None)
        asleep = self._sleepers_for(model, swap.evict)
        for victim in swap.evict:
            state = self._states.get(victim)
            if self._in_flight.get(victim):
                raise RuntimeError(
                    f"the swap to {model!r} evicts {victim!r}, which has requests in flight"
                )
            if state is _READY:
                profile = self._profiles[victim]
                if victim in asleep:
                    self._begin_sleep(victim)
                    seconds = profile.sleep
                else:
                    self._begin_stop(victim)
                    seconds = profile.stop
                swap.pending_stops += 1
                self._push(self.now + seconds, _PROCESS, victim, swap)
            elif state is not _STOPPED:
                raise RuntimeError(
                    f"the swap to {model!r} evicts {victim!r}, which is "
                    f"{state.value if state else 'unknown'}"
                )
        if not swap.pending_stops:
            self._begin_load(swap)

    def _sleepers_for(self, model: str, evict: tuple[str, ...]) -> tuple[str, ...]:
        """The evicted models that go to sleep: the planner's choice, as the router makes it."""
        tiers = self._tiers
        planner = tiers.planner
        if not evict or planner is None or planner.sleep_rules is None:
            return ()
        profiles, states = self._profiles, self._states
        eviction = plan_residency(
            planner,
            model,
            evict,
            self._sleeping_now(),
            lambda m: states[m] is _READY and profiles[m].sleeps,
        )
        return eviction.sleep

    def use_planner(
        self,
        planner: SwapPlanner,
        host_budget: float | None,
        devices: dict[str, float] | None = None,
    ) -> None:
        """Let ``planner`` decide sleep or stop, filling in its rules as the router does.

        When the planner has no ``sleep_rules`` and some profiles can sleep,
        it gets their levels and host sizes, with ``host_budget``. With
        ``devices`` (checked budgets), the server tracks each device's use,
        reading the planner's ``placement_of`` when it has one.
        """
        if devices is not None:
            placement_of = getattr(planner, "placement_of", None)
            self._devices = DeviceUse(
                devices, placement_of=placement_of if callable(placement_of) else None
            )
        tiers = self._tiers
        tiers.planner = planner
        sleepers = {m: p for m, p in self._profiles.items() if p.sleeps}
        if planner.sleep_rules is None and sleepers:
            planner.sleep_rules = SleepRules(
                levels={m: p.sleep_level for m, p in sleepers.items()},
                host_memory={m: p.host_size for m, p in sleepers.items() if p.host_size},
                host_budget=host_budget,
            )
        tiers.rules = planner.sleep_rules

    def grant_serve(self, request: Request, model: str) -> bool:
        """Serve the request on ``model`` for its service seconds; always taken."""
        index = request.id
        if self._outcome[index] is not UNFINISHED:
            raise RuntimeError(self._resolved_twice(request, "granted"))
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
        if self._ttl and model in self._ttl:
            self._resolved(model)
        count = self._in_flight.get(model, 0)
        if not count:
            self._busy_since[model] = now
        self._in_flight[model] = count + 1
        self._push(end, _SERVE, model, None)
        return True

    def report_position(self, request: Request, position: int) -> None:
        """Queue positions are not simulated; ignored."""

    # -- the event loop --------------------------------------------------------

    def run(self, scheduler: Scheduler, until: float | None = None) -> None:
        """Process every event until nothing is left to happen (or, with ``until``, up to it).

        With ``until`` (the cluster's driver), the events due at or before
        ``until`` run, arrivals included, and the next call resumes where
        this one stopped; the server must be :meth:`resumable` (its arrivals
        come one by one through :meth:`admit`).
        """
        heap = self._heap
        arrivals = self._arrivals
        pop = heapq.heappop
        # With patience, each arrival's give-up is scheduled after its on_request;
        # without, the loop runs exactly as before (no per-arrival check).
        on_request = self._patient(scheduler.on_request)
        on_swap_done = scheduler.on_swap_done
        on_serve_done = scheduler.on_serve_done
        next_deadline = getattr(scheduler, "next_deadline", None)
        on_tick = getattr(scheduler, "on_tick", None)
        ticking = callable(next_deadline) and callable(on_tick)
        cursor = self._cursor
        ticks: set[float] = set() if cursor is None else cursor.ticks
        limit = math.inf if until is None else until
        states = self._states
        running = self._running
        in_flight = self._in_flight
        ttl = self._ttl
        count = len(arrivals)
        position = 0 if cursor is None else cursor.position
        events = self.events
        while True:
            if heap and (position >= count or heap[0][0] <= arrivals[position].at):
                if heap[0][0] > limit:
                    break
                at, kind, seq, model, swap = pop(heap)
                if kind == _SERVE:
                    self.now = at
                    left = in_flight[model] - 1
                    if left:
                        in_flight[model] = left
                    else:
                        del in_flight[model]
                        self._busy[model] += at - self._busy_since.pop(model)
                    on_serve_done(model)
                    if not left and ttl:
                        self._arm_ttl(model)
                elif kind == _PROCESS:
                    self.now = at
                    if swap is _UNLOAD:
                        self._unloaded(model, scheduler)
                    elif swap is not None:
                        self._stopped(model, swap)
                    else:
                        if states[model] is _STARTING:
                            states[model] = _READY
                            running[model] = _READY
                            opened = self._open.get(model)
                            if opened is not None:
                                opened[1] = at
                            if model in self._tiers.waking:
                                self._woken(model)
                        del self._swaps[model]
                        on_swap_done(model, None)
                        if ttl:
                            self._arm_ttl(model)
                elif kind == _TICK:
                    self.now = at
                    ticks.discard(at)
                    assert on_tick is not None
                    on_tick()
                elif kind == _TTL:
                    if not self._ttl_fired(model, seq, at, scheduler):
                        continue  # a cancelled timer is no event
                elif not self._give_up(seq, at, scheduler):
                    continue  # the request was granted or failed before: no event
            elif position < count and arrivals[position].at <= limit:
                arrival = arrivals[position]
                self.now = arrival.at
                if ttl and arrival.model in ttl:  # as the router: count it, cancel the timer
                    self._waiting[arrival.model] = self._waiting.get(arrival.model, 0) + 1
                    self._ttl_armed.pop(arrival.model, None)
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
        if cursor is not None:
            cursor.position = position
