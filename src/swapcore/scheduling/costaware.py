"""CostAwareScheduler: FIFO's decision tree, but a drain loads the model worth loading most."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from swapcore.errors import ConfigError
from swapcore.planners.base import SwapPlanner
from swapcore.process import ProcessState
from swapcore.scheduling._base import _BaseScheduler, _stays
from swapcore.scheduling.effects import Effects
from swapcore.scheduling.requests import Request

__all__ = ["CostAwareScheduler"]

_READY = ProcessState.READY
DEFAULT_LOAD_TIME = 1.0
"""Seconds assumed to load a model absent from ``load_times``."""


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


def _exponent(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= 16
    ):
        raise ConfigError(f"age_exponent must be a number from 0 to 16, got {value!r}")
    return float(value)


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
    load_times=None, wait_offset=1.0, age_exponent=3.0)``.

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
        self._wait_offset = _seconds("wait_offset", wait_offset)
        self._age_exponent = _exponent(age_exponent)

    def load_time(self, model: str) -> float:
        """The load time in seconds the score assumes for ``model``."""
        return self._load_times.get(model, DEFAULT_LOAD_TIME)

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
        return [entry[-1] for entry in keyed]
