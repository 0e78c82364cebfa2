"""CostAwareScheduler: FIFO's decision tree, but a drain loads the model worth loading most."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping

from swapcore.costs import CostSource
from swapcore.errors import ConfigError, PolicyError
from swapcore.planners.base import SwapPlanner
from swapcore.process import ProcessState
from swapcore.scheduling._base import _BaseScheduler, _stays
from swapcore.scheduling.effects import Effects
from swapcore.scheduling.requests import Request

__all__ = ["CostAwareScheduler"]

_READY = ProcessState.READY
_SLEEPING = ProcessState.SLEEPING
_MIN_COST = 1e-3  # seconds: a measured cost of 0 must not divide the score by zero
DEFAULT_LOAD_TIME = 1.0
"""Seconds assumed to load a model absent from ``load_times``."""
_GAP_WEIGHT = 0.2
"""Weight of the newest arrival in a model's moving average arrival rate."""
_MIN_GAP = 1e-3
"""Seconds: the shortest inter-arrival gap a rate is computed from."""
_FRESH_GAPS = 3.0
"""A model is hot only if it saw an arrival within this many mean gaps."""


def _seconds(name: str, value: object) -> float:
    """``value`` as a finite number of seconds > 0, else ConfigError naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


AUTO = "auto"
"""``hold="auto"``: hold each hot model up to its own load time (rent-or-buy)."""


def _hold(value: object) -> float | None:
    """``hold`` as seconds >= 0, or None for ``"auto"``; else ConfigError."""
    if value == AUTO:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f"hold must be a finite number of seconds >= 0 or 'auto', got {value!r}")
    return float(value)


def _exponent(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= 16
    ):
        raise ConfigError(f"age_exponent must be a number from 0 to 16, got {value!r}")
    return float(value)


def _arrival(request: Request) -> float:
    return request.arrived


def _check_load_times(load_times: Mapping[str, float] | None) -> dict[str, float]:
    if load_times is None:
        return {}
    if not isinstance(load_times, Mapping):
        raise ConfigError(
            f"load_times must be a mapping of model -> seconds, got {type(load_times).__name__}"
        )
    out: dict[str, float] = {}
    for model, value in load_times.items():
        if not isinstance(model, str):
            raise ConfigError(f"load_times keys must be model ids (str), got {model!r}")
        out[model] = _seconds(f"load_times[{model!r}]", value)
    return out


class CostAwareScheduler(_BaseScheduler):
    """FIFO's guarantees, but when room frees up it loads the model worth loading most.

    ``CostAwareScheduler(planner, effects, *, priority=None, concurrency_limits=None,
    default_concurrency_limit=10, max_wait=None, clock=time.monotonic,
    load_times=None, wait_offset=1.0, age_exponent=3.0, hold=0.0, costs=None)``;
    ``hold`` may also be ``"auto"``.

    Everything :class:`~swapcore.FIFOScheduler` guarantees holds unchanged:
    admission and concurrency limits, joining a swap in flight, the fast path
    for new requests, the collision and busy-model rules (a model with
    requests in flight is never evicted), the grant contract, cancellation
    without wasted loads, swap errors to every waiter, unload, shutdown,
    1-based positions reported on change (positions are ranks in the
    priority-then-arrival queue, not a promise of service order), and the
    ``max_wait`` bound (starved requests are examined first, oldest first,
    and nothing may delay them).

    The difference is the *drain* (after a swap completes, a model's last
    serve ends, an unload ends, or a tick): FIFO walks the queue in order and
    starts the first startable swap, which is the swap of the oldest
    request's model; this scheduler groups the queued requests by model and
    examines the groups in decreasing order of

        (tier, free, score)

    where ``tier`` is the highest priority among the model's queued requests
    (priorities stay strict, as in FIFO's queue), ``free`` is true when the
    model needs no load (it is ready and nobody is stopping it, or a swap to
    it is in flight: its requests join), and

        score(M) = Σ over M's queued requests r of (age(r) + wait_offset) ** age_exponent
                   ÷ load_time(M)

    with ``age(r) = now - r.arrived`` in seconds (0 if negative, from a
    driver clock that disagrees). Ties keep queue order. In each group,
    requests run FIFO's steps 3-8 in queue order, so the best model whose
    swap is startable *now* starts and its other queued requests join it;
    groups that are blocked stay queued. Requests that can take the fast
    path or join a swap still do; starved requests (``max_wait``) still go
    first, oldest first, whatever the scores.

    Why this score: it is the generalised cμ rule (van Mieghem, 1995) applied
    to batches. If each request's waiting costs ``wait ** (age_exponent + 1)``,
    M's queued requests add cost at a rate proportional to
    ``Σ (age + wait_offset) ** age_exponent``, and one load of ``load_time(M)``
    seconds ends all of it; loading first the model that ends the most cost
    per second of loading is the greedy choice. ``age_exponent`` (0 to 16)
    picks the cost: 0 counts requests (Smith's rule, aiming at the mean wait:
    the biggest backlog per second of load goes first); 1 aims at the sum of
    squared waits; larger values weigh old requests more and approach FIFO's
    oldest-first order, which keeps the maximum wait lowest. The default 3.0
    keeps the tail near FIFO's while a model with a large backlog goes before
    one with a single request of similar age. ``wait_offset`` (seconds,
    default 1.0) is the age a request counts with as it arrives, so a fresh
    burst weighs its size. ``load_times`` maps a model to its expected load
    time in seconds (absent models: 1.0): for the same backlog, a cheap load
    goes before an expensive one.

    **The real price of a swap.** With ``costs`` (a
    :class:`~swapcore.costs.CostSource`, such as the router's learned
    :class:`~swapcore.costs.SwapCosts`), ``load_time(M)`` is what bringing M
    back costs now: its wake estimate when M is asleep, else its cold-load
    estimate; ``load_times`` is the fallback where ``costs`` knows nothing.
    So a sleeping model's backlog ranks far above a cold one's of the same
    age, and the tail budget and holds count wakes as wakes.

    Tail budget: with ``load_times``, the best model may go before the model
    of the oldest request (same priority) only while that request's age plus
    both load times stays within the sum of all ``load_times``; otherwise the
    oldest request's model goes first. Hold (``hold`` seconds, 0 = off, or
    ``"auto"``): when a hot model (mean arrival gap below its load time, last
    arrival within three gaps) serves its last request while others queue,
    swaps that would evict it wait until ``next_deadline()``: at most ``hold``
    seconds (``"auto"``: the model's own load time, the rent-or-buy break-even:
    idling longer than one reload costs the queue more than reloading later
    would), and never past the moment a queued model's turn would overrun the
    budget, assuming the queued models then load oldest request first, one
    after another (with ``max_wait`` below the budget, ``max_wait`` is the
    budget). A new request for the held model takes the fast path and ends the
    hold, as does a request reaching ``max_wait``. With a hold the driver must
    call :meth:`on_tick` at :meth:`next_deadline`. Use a hold together with
    ``max_wait``: the budget is absolute, so on light traffic, where FIFO's own
    waits are short, a hold alone can raise the maximum wait well above FIFO's
    (``docs/policies.md`` measures it).

    The clock is read once per drain that has two or more models to rank,
    and as in FIFO when ``max_wait`` is set or the planner records serves;
    ``arrived`` must be on the same clock. A drain costs one pass to group
    the queue and score it, a sort of the models, and steps 3-8 for the
    requests that act plus one blocked request per model. Configuration
    errors raise :class:`~swapcore.ConfigError` naming the key.
    """

    def __init__(
        self,
        planner: SwapPlanner,
        effects: Effects,
        *,
        priority: Mapping[str, int] | None = None,
        concurrency_limits: Mapping[str, int] | None = None,
        default_concurrency_limit: int = 10,
        max_wait: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        load_times: Mapping[str, float] | None = None,
        wait_offset: float = 1.0,
        age_exponent: float = 3.0,
        hold: float | str = 0.0,
        costs: CostSource | None = None,
    ) -> None:
        super().__init__(
            planner,
            effects,
            priority=priority,
            concurrency_limits=concurrency_limits,
            default_concurrency_limit=default_concurrency_limit,
            max_wait=max_wait,
            clock=clock,
        )
        self._load_times = _check_load_times(load_times)
        self._costs = costs
        self._wait_offset = _seconds("wait_offset", wait_offset)
        self._age_exponent = _exponent(age_exponent)
        hold_seconds = _hold(hold)
        self._auto = hold_seconds is None
        self._hold = 0.0 if hold_seconds is None else hold_seconds
        self._holds = self._auto or self._hold > 0.0
        # The tail budget: one turn of every model whose load time is known.
        self._fixed_cycle = sum(self._load_times.values())
        self._rate: dict[str, float] = {}  # model -> moving average of its arrival rate (1/s)
        self._last: dict[str, float] = {}  # model -> its latest arrival (clock)
        self._held: str | None = None  # the hot model kept loaded although others wait
        self._held_until = 0.0

    def load_time(self, model: str) -> float:
        """Seconds bringing ``model`` in costs now: a wake if it sleeps, else a cold load."""
        costs = self._costs
        if costs is not None:
            estimate = None
            if self._effects.model_state(model) is _SLEEPING:
                estimate = costs.estimate(model, "wake")
            if estimate is None:
                estimate = costs.estimate(model, "load")
            if estimate is not None:
                return estimate if estimate > _MIN_COST else _MIN_COST
        return self._load_times.get(model, DEFAULT_LOAD_TIME)

    @property
    def _cycle(self) -> float:
        """One turn of cold loads of the models of ``load_times`` (learned where known)."""
        costs = self._costs
        if costs is None:
            return self._fixed_cycle
        total = 0.0
        for model, configured in self._load_times.items():
            estimate = costs.estimate(model, "load")
            total += configured if estimate is None else estimate
        return total

    @property
    def held(self) -> str | None:
        """The model held loaded for its next request while others wait (None: no hold)."""
        return self._holding()

    def next_deadline(self) -> float | None:
        """The earlier of the ``max_wait`` deadline and the end of the current hold."""
        deadline = super().next_deadline()
        if self._holding() is not None:
            end = self._held_until
            deadline = end if deadline is None or end < deadline else deadline
        return deadline

    def on_request(self, request: Request) -> None:
        """FIFO's :meth:`on_request`; with ``hold`` on, first note the model's arrival rate."""
        if self._holds and not self._active:
            model = request.model
            now = self._clock()
            last = self._last.get(model)
            if last is not None:
                rate = 1.0 / max(now - last, _MIN_GAP)
                mean = self._rate.get(model)
                self._rate[model] = rate if mean is None else mean + _GAP_WEIGHT * (rate - mean)
            self._last[model] = now
        super().on_request(request)

    def on_serve_done(self, model: str) -> None:
        """FIFO's :meth:`on_serve_done`; a hot model's last serve may start a hold."""
        if (
            self._holds
            and not self._active
            and self._in_flight.get(model, 0) == 1
            and self._queue
            and model not in self._stopping
        ):
            self._start_hold(model)
        super().on_serve_done(model)

    def scores(self) -> dict[str, float]:
        """Each queued model's current score (the formula above), for inspection and tests."""
        groups = self._groups(None)
        now = self._clock() if groups else 0.0
        return {model: self._score(model, group, now) for model, group in groups.items()}

    def _drain(self) -> None:
        """Examine the queued models best first; in each, run steps 3-8 in queue order."""
        queue = self._queue
        if not queue:
            return
        before = len(queue)
        self._evictions.reset()
        guard = self._serve_starved() if self._max_wait is not None else None
        groups = self._groups(guard)
        advance = self._advance
        detach = queue.detach
        for group in self._rank(groups) if len(groups) > 1 else groups.values():
            for request in group:
                # Requests of one model act alike while nothing changes: the
                # first blocked one means the rest of the group is blocked too.
                if not advance(request, guard):
                    break
                detach(request)
        if len(queue) != before:
            queue.sweep(_stays)  # drop the detached, report the positions that moved

    # -- hold ----------------------------------------------------------------------

    def _start_hold(self, model: str) -> None:
        """Hold ``model`` (about to drain, others queued) if it is hot and the tail allows."""
        rate = self._rate.get(model)
        if rate is None:
            return
        now = self._clock()
        load = self.load_time(model)
        # Hot: at least one arrival expected while the model would reload, and
        # it is still arriving (its latest arrival is recent).
        if rate * load < 1.0 or (now - self._last[model]) * rate > _FRESH_GAPS:
            return
        # Auto: rent or buy. Idling up to one reload's worth of seconds costs the
        # queue at most what leaving now and reloading later would.
        until = min(now + (load if self._auto else self._hold), self._tail_limit(model))
        if until > now:
            self._held = model
            self._held_until = until

    def _tail_limit(self, held: str) -> float:
        """The latest end of a hold of ``held`` that keeps every queued model in budget.

        After the hold, the queued models (but ``held``) are assumed to load one
        after another, oldest request first, as FIFO would: model X's oldest
        request then waits the hold, plus the load times up to and including
        X's, past its age. The hold may last while each of those waits stays
        within the tail budget (one turn of loads).
        """
        oldest: dict[str, float] = {}
        for request in self._queue:
            model = request.model
            if model != held and (model not in oldest or request.arrived < oldest[model]):
                oldest[model] = request.arrived
        budget = self._budget(oldest)
        if self._max_wait is not None and self._max_wait < budget:
            budget = self._max_wait  # the bound the user asked for is tighter
        limit = math.inf
        loads = 0.0
        for model, arrived in sorted(oldest.items(), key=lambda item: item[1]):
            loads += self.load_time(model)
            limit = min(limit, arrived + budget - loads)
        return limit

    def _holding(self) -> str | None:
        """The held model, after ending a hold that expired, was used or meets starvation."""
        held = self._held
        if held is None:
            return None
        if (
            self._clock() >= self._held_until
            or held in self._in_flight
            or held in self._stopping
            or not self._queue
            or (self._max_wait is not None and self._starved() is not None)
        ):
            self._held = None
            return None
        return held

    def _advance(
        self, request: Request, guard: Request | None, state: ProcessState | None = None
    ) -> bool:
        held = self._held
        if held is not None and request.model != held and request.model not in self._swaps:
            try:
                evict = self._evictions.evict_for(request.model)
            except PolicyError as error:  # the planner failed for this request's model
                self._policy_failed(request, error)
                return True
            if held in evict and self._holding() is not None:
                return False  # the swap would evict the held model: wait for the hold to end
        return super()._advance(request, guard, state)

    def _budget(self, queued: Iterable[str]) -> float:
        """The tail budget: the load times of every model in ``load_times`` added up.

        That is one turn of loads, what FIFO's longest waits are made of. Without
        ``load_times``: the load times (1.0 each) of the ``queued`` models.
        """
        if self._cycle > 0.0:
            return self._cycle
        return DEFAULT_LOAD_TIME * len(set(queued))

    # -- ranking -------------------------------------------------------------------

    def _groups(self, guard: Request | None) -> dict[str, list[Request]]:
        """The queued requests (but ``guard``) by model, models in order of first appearance."""
        groups: dict[str, list[Request]] = {}
        for request in self._queue:
            if request is guard:
                continue
            group = groups.get(request.model)
            if group is None:
                groups[request.model] = [request]
            else:
                group.append(request)
        return groups

    def _score(self, model: str, group: list[Request], now: float) -> float:
        offset = self._wait_offset
        exponent = self._age_exponent
        total = 0.0
        for request in group:
            age = now - request.arrived
            total += ((age if age > 0.0 else 0.0) + offset) ** exponent
        if self._costs is not None:
            return total / self.load_time(model)
        return total / self._load_times.get(model, DEFAULT_LOAD_TIME)

    def _rank(self, groups: dict[str, list[Request]]) -> list[list[Request]]:
        """The groups by (tier, free, score), best first; ties keep queue order."""
        now = self._clock()
        state_of = self._effects.model_state
        swaps = self._swaps
        stopping = self._stopping
        keyed: list[tuple[int, bool, float, int, list[Request]]] = []
        for model, group in groups.items():
            free = model in swaps or (model not in stopping and state_of(model) is _READY)
            keyed.append(
                (
                    -self._priority_of(group[0]),  # the queue is in priority order
                    not free,
                    -self._score(model, group, now),
                    len(keyed),
                    group,
                )
            )
        keyed.sort()  # the unique index settles ties before the lists are compared
        ranked = [entry[-1] for entry in keyed]
        # The tail guard: the best may go before the oldest request's model only
        # while that request's turn still fits in the budget.
        best = keyed[0]
        if self._cycle <= 0.0:
            return ranked  # no load times, no budget
        oldest = min(
            (entry for entry in keyed if entry[0] == best[0]),
            key=lambda entry: entry[-1][0].arrived,
        )
        if oldest is not best:
            first = oldest[-1][0]
            turn = self.load_time(best[-1][0].model) + self.load_time(first.model)
            if now - first.arrived + turn > self._budget(groups):
                group = oldest[-1]
                ranked = [group, *(g for g in ranked if g is not group)]
        return ranked
