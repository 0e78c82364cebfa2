"""ArrivalOrderScheduler: the pre-collation baseline (llama-swap before #790), for comparisons."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from swapcore.planners.base import SwapPlanner
from swapcore.scheduling._base import _BaseScheduler, _stays
from swapcore.scheduling.effects import Effects
from swapcore.scheduling.requests import Request

__all__ = ["ArrivalOrderScheduler"]


class ArrivalOrderScheduler(_BaseScheduler):
    """Strict arrival order with head-of-line blocking: no collation, a baseline to compare with.

    ``ArrivalOrderScheduler(planner, effects, *, concurrency_limits=None,
    default_concurrency_limit=10, clock=time.monotonic)``.

    Requests are served in pure arrival order: there are no priorities (a
    request's ``priority`` is ignored and the constructor takes no priority
    map) and nothing passes a queued request. A new request runs FIFO's
    decision tree (join a swap in flight, fast path, start a swap) only when
    the queue is empty; otherwise it queues at the tail, even when its model
    is ready and idle. When room frees up, the queue is examined from the
    head and stops at the first request that is still blocked. With a
    one-model-at-a-time planner every change of model in the arrival stream
    costs a load: arrivals ``A B C`` repeated 4 times cause 12 loads where
    :class:`~swapcore.FIFOScheduler` needs 3.

    Everything else is FIFO's contract: unknown models and admission limits
    (``concurrency_limits``, ``default_concurrency_limit``) are answered at
    once, a model with requests in flight is never evicted, a grant counts
    only when taken, a cancelled request never causes a load (cancelling the
    head lets those behind it move), swap errors reach every waiter, unload
    and shutdown fail waiters and queued requests, and positions (1-based)
    are reported when they change. There is no ``max_wait``: the head is
    always the oldest queued request and only work already under way (swaps
    in flight, requests already granted) can delay it, so every wait is
    finite. ``clock`` is read only when the planner
    records serves (``on_serve``).
    """

    _head_of_line = True

    def __init__(
        self,
        planner: SwapPlanner,
        effects: Effects,
        *,
        concurrency_limits: Mapping[str, int] | None = None,
        default_concurrency_limit: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            planner,
            effects,
            concurrency_limits=concurrency_limits,
            default_concurrency_limit=default_concurrency_limit,
            clock=clock,
        )

    def _drain(self) -> None:
        """Run steps 3-8 from the head of the queue; stop at the first blocked request."""
        queue = self._queue
        if not queue:
            return
        self._evictions.reset()
        moved = False
        for request in queue:
            if not self._advance(request, None):
                break
            queue.detach(request)  # safe while iterating: the queue's list is unchanged
            moved = True
        if moved:
            queue.sweep(_stays)  # drop the detached, report the positions that moved

    def _holds_back(self, request: Request) -> bool:
        """Only the head blocks the others: cancelling it lets the queue move."""
        return next(iter(self._queue), None) is request

    def _priority_of(self, request: Request) -> int:
        """Every request has the same priority: the queue is in arrival order."""
        return 0
