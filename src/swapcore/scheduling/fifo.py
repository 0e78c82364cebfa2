"""FIFOScheduler: llama-swap's FIFO decision tree as a sans-IO state machine."""

from __future__ import annotations

from swapcore.scheduling._base import _BaseScheduler

__all__ = ["FIFOScheduler"]


class FIFOScheduler(_BaseScheduler):
    """llama-swap's FIFO scheduler, sans-IO, plus a starvation bound.

    ``FIFOScheduler(planner, effects, *, priority=None, concurrency_limits=None,
    default_concurrency_limit=10, max_wait=None, clock=time.monotonic)``.

    A ready model's requests are served at once while other models' requests
    wait for it to drain, so arrivals ``A B C A B C`` are served ``A A B B C C``
    with three loads instead of six (*collation*). Waiting requests queue in
    priority order (``priority`` maps a model to an int, default 0, higher
    first; ``Request.priority`` overrides it per request); equal priorities keep
    arrival order. Each model admits at most ``concurrency_limits.get(model,
    default_concurrency_limit)`` unfinished requests (queued, waiting on a swap
    or serving); more are rejected at once. When room frees up the queue is
    walked in order and every request that can act (join, fast path, start a
    swap) does, so the first startable swap in queue order starts first.

    ``max_wait`` (seconds, None = unbounded as in llama-swap) bounds
    starvation: once the oldest queued request S has waited ``max_wait``, no
    other request may take an action that delays S (take the fast path on a
    model S must evict, or start a swap that collides with S's); drains
    examine S first. Joining a swap already in flight stays allowed: its
    waiters all start when it completes. S then waits at most ``max_wait`` +
    the remaining time of swaps it collides with + the longest service granted
    on models it must evict (including those swaps' waiters) + its own swap.
    ``clock`` is read only when ``max_wait`` is set or the planner overrides
    ``on_serve``.

    All methods are called by one driver, one at a time; calling back into the
    scheduler from inside an effect raises ``RuntimeError``. Effects must not
    raise. A planner hook that raises (or answers invalidly) fails only the
    request it was called for, with :class:`~swapcore.PolicyError` (see
    :meth:`on_request`). Configuration errors raise :class:`~swapcore.ConfigError` naming the key.
    """

    def _drain(self) -> None:
        """Walk the queue in order re-running steps 3-8; blocked requests keep their order."""
        queue = self._queue
        if not queue:
            return
        self._evictions.reset()
        guard = self._serve_starved() if self._max_wait is not None else None
        queue.sweep(lambda request: request is not guard and self._advance(request, guard))
