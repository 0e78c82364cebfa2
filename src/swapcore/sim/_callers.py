"""The virtual server's callers: what became of each arrival, give-ups, the report.

:class:`VirtualCallers` sits between
:class:`~swapcore.sim._processes.VirtualProcesses` and
:class:`~swapcore.sim._server.VirtualServer`. It keeps one record per
arrival (start, finish, outcome, error) and the per-model busy time, records
failures (``grant_error``), withdraws a request whose caller's patience ran
out as the router's cancel path does (``BaseRouter._on_cancel_event``:
forget the request, ``scheduler.on_cancel``, re-arm the idle TTL), and
builds the report.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence

import attrs

from swapcore.errors import ConcurrencyLimitExceeded, ModelNotFound, RoutingError
from swapcore.scheduling.effects import Scheduler
from swapcore.scheduling.requests import Request
from swapcore.sim._processes import _GIVE_UP, VirtualProcesses
from swapcore.sim.profiles import ModelProfile
from swapcore.sim.report import (
    ABANDONED,
    FAILED,
    NOT_FOUND,
    REJECTED,
    UNFINISHED,
    SimReport,
    TierCounts,
    build_report,
)
from swapcore.sim.traces import Arrival

__all__ = ["VirtualCallers"]

_patience_of = operator.attrgetter("patience")


@attrs.define(eq=False, slots=True)
class _Patience:
    """Each arrival's patience (its own, else simulate's; None: forever) and pending give-ups."""

    seconds: list[float | None]
    give_ups: dict[int, Request] = attrs.Factory(dict)  # heap seq -> the request giving up then
    default: float | None = None  # for the arrivals admitted later (a cluster's)


class VirtualCallers(VirtualProcesses):
    """The per-request records and the callers' patience, over the virtual processes."""

    # Set only when some caller has a patience (then the event loop schedules
    # give-ups); a class default otherwise, because one instance attribute more
    # costs the whole event loop: 30 instance attributes measured 2-3% slower
    # than 28 or 29 on CPython 3.11 (bench_sim.py). Mind the count.
    _patience: _Patience | None = None

    def __init__(
        self,
        profiles: Mapping[str, ModelProfile],
        arrivals: Sequence[Arrival],
        patience: float | None = None,
    ) -> None:
        super().__init__(profiles)
        self.events = 0
        self._arrivals = arrivals
        # Per-request outcome, indexed by Request.id (= position in the trace).
        count = len(arrivals)
        self._started: list[float | None] = [None] * count
        self._finished: list[float | None] = [None] * count
        self._outcome: list[str] = [UNFINISHED] * count
        self._errors: dict[int, str] = {}
        self._busy: dict[str, float] = dict.fromkeys(profiles, 0.0)
        self._busy_since: dict[str, float] = {}
        if patience is not None or any(map(_patience_of, arrivals)):
            seconds = [a.patience if a.patience is not None else patience for a in arrivals]
            self._patience = _Patience(seconds, default=patience)

    def admit(self, arrival: Arrival) -> int:
        """Add ``arrival`` after the others (a cluster routed it here); its index (Request.id).

        The server must have been built with a list of arrivals, all at or
        before ``arrival.at``; its patience is its own, else the default.
        """
        arrivals = self._arrivals
        assert isinstance(arrivals, list), "admit needs a server built with a list"
        index = len(arrivals)
        arrivals.append(arrival)
        self._started.append(None)
        self._finished.append(None)
        self._outcome.append(UNFINISHED)
        patience = self._patience
        if patience is not None:
            own = arrival.patience
            patience.seconds.append(own if own is not None else patience.default)
        elif arrival.patience is not None:
            self._patience = _Patience([*([None] * index), arrival.patience])
        return index

    def grant_error(self, request: Request, error: RoutingError) -> None:
        """Record the request's failure and its reason."""
        index = request.id
        if self._outcome[index] is not UNFINISHED:
            raise RuntimeError(self._resolved_twice(request, "failed"))
        if isinstance(error, ConcurrencyLimitExceeded):
            outcome = REJECTED
        elif isinstance(error, ModelNotFound):
            outcome = NOT_FOUND
        else:
            outcome = FAILED
        self._outcome[index] = outcome
        self._finished[index] = self.now
        self._errors[index] = f"{type(error).__name__}: {error}"
        model = request.model
        if self._ttl and model in self._ttl:
            self._resolved(model)
            self._arm_ttl(model)

    def _resolved_twice(self, request: Request, verb: str) -> str:
        if self._outcome[request.id] is ABANDONED:
            return (
                f"the scheduler {verb} request {request.id} for {request.model!r} after its "
                "caller gave up (on_cancel must forget it)"
            )
        return f"request {request.id} for {request.model!r} was resolved twice"

    # -- patience (the router's _on_cancel_event) ------------------------------

    def _patient(self, on_request: Callable[[Request], None]) -> Callable[[Request], None]:
        """``on_request``, followed by scheduling the give-up when callers have a patience."""
        if self._patience is None:
            return on_request
        patience = self._patience.seconds
        give_ups = self._patience.give_ups
        outcome = self._outcome
        push = self._push

        def submit(request: Request) -> None:
            on_request(request)
            index = request.id
            seconds = patience[index]
            if seconds is not None and outcome[index] is UNFINISHED:  # still waiting
                give_ups[push(request.arrived + seconds, _GIVE_UP, request.model, None)] = request

        return submit

    def _give_up(self, seq: int, at: float, scheduler: Scheduler) -> bool:
        """The patience of give-up ``seq`` ran out at ``at``: withdraw the request if it waits.

        As the router's cancel path: the request leaves the TTL bookkeeping,
        the scheduler forgets it (``on_cancel``: it leaves the queue or its
        swap, which goes on), then the model's idle timer is armed if it is
        idle now. False (the clock unmoved) when the request was granted or
        failed before: a stale give-up is no event.
        """
        assert self._patience is not None  # give-ups are scheduled only with a patience
        request = self._patience.give_ups.pop(seq)
        index = request.id
        if self._outcome[index] is not UNFINISHED:
            return False
        self.now = at
        self._outcome[index] = ABANDONED
        self._finished[index] = at
        model = request.model
        timed = model in self._ttl
        if timed:
            self._resolved(model)
        scheduler.on_cancel(request)
        if timed:
            self._arm_ttl(model)
        return True

    # -- the report ------------------------------------------------------------

    def report(self, scheduler: str, planner: str) -> SimReport:
        """Close the open intervals at the end of the simulation and build the report."""
        end = self.now
        for model in list(self._open):
            self._close(model, end)
        for model, since in self._busy_since.items():
            self._busy[model] += end - since
        self._timeline.sort(key=lambda interval: (interval.start, interval.model))
        devices = self._devices
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
            tiers=TierCounts(
                wakes=self._tiers.wakes,
                sleeps=self._tiers.sleeps,
                stops=self._tiers.stops,
                swap_seconds=self._tiers.swap_seconds,
                peak_host_memory=(
                    self._tiers.peak_host
                    if self._tiers.rules is not None and self._tiers.rules.host_memory
                    else None
                ),
            ),
            ttl_unloads=self._ttl_unloads,
            patience=self._patience.seconds if self._patience is not None else None,
            scheduler=scheduler,
            planner=planner,
            events=self.events,
            devices=None if devices is None else devices.budgets,
            peak_devices=None if devices is None else devices.peak,
            overcommits=0 if devices is None else devices.overcommits,
            split_loads=0 if devices is None else devices.splits,
        )
