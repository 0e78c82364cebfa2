"""The max-loaded planner: keep any ``n`` models loaded, evict the least recently used.

Beyond llama-swap, whose users ask for it (llama-swap issues #346, #1118):
instead of declaring which models may run together, say how many may.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from swapcore.errors import ConfigError
from swapcore.planners._recency import Recency
from swapcore.planners.base import SwapPlanner

__all__ = ["MaxLoadedPlanner"]

_log = logging.getLogger("swapcore.lru")


class MaxLoadedPlanner(SwapPlanner):
    """Keeps at most ``n`` models loaded; loading one more evicts the least recently used.

    For a target T and the running models R (duplicates and T itself
    ignored): if T is already running, or fewer than ``n`` other models run,
    nothing is evicted; otherwise the ``len(R) - n + 1`` least recently used
    models of R are, so that T plus the survivors make exactly ``n``.

    Recency: a model is used when the router grants it a request
    (:meth:`on_serve` with the clock value) and when a swap to it starts
    (:meth:`on_swap_start`, counted at the latest clock value seen, so a
    model being loaded is never the first to go). A model never used is
    older than any used one; equal recency keeps ``running``'s order.

    ``eviction_for`` is pure given the recorded uses; the state is one entry
    per model ever used. Raises :class:`~swapcore.ConfigError` for ``n`` that
    is not an int >= 1 (the message names ``n``).
    """

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"MaxLoadedPlanner: n must be an int >= 1, got {n!r}")
        self._n = n
        self._recency = Recency()

    @property
    def n(self) -> int:
        """The most models loaded at once."""
        return self._n

    def last_used(self, model: str) -> float | None:
        """The clock value of ``model``'s latest recorded use, or None if never used."""
        return self._recency.last_used(model)

    def eviction_for(self, target: str, running: Sequence[str]) -> tuple[str, ...]:
        """Return the least recently used running models that must stop for ``target``.

        Pure and silent. The result keeps ``running``'s order, holds each
        model once, never contains ``target`` and is empty when ``target``
        runs already.
        """
        others = list(dict.fromkeys(running))
        if target in others:
            return ()
        excess = len(others) - self._n + 1
        if excess <= 0:
            return ()
        victims = set(self._recency.oldest_first(others)[:excess])
        return tuple(m for m in others if m in victims)

    def on_swap_start(self, target: str, running: Sequence[str]) -> None:
        """Record ``target`` as the most recently used model; log one DEBUG line."""
        if _log.isEnabledFor(logging.DEBUG):
            evict = self.eviction_for(target, running)
            _log.debug(
                "swap to %r (max %d loaded): evict %s",
                target,
                self._n,
                ", ".join(map(repr, evict)) if evict else "nothing",
            )
        self._recency.touch(target)

    def on_serve(self, model: str, now: float) -> None:
        """Record that ``model`` was granted a request at clock value ``now``.

        Raises ``ValueError`` when ``now`` is not a finite number.
        """
        self._recency.serve(model, now)

    def __repr__(self) -> str:
        return f"MaxLoadedPlanner({self._n})"
