"""Least-recently-used bookkeeping shared by the recency-aware planners.

One :class:`Recency` per planner records when each model was last used and
orders running models from least to most recently used. It is the only
mutable state of :class:`~swapcore.planners.lru.MaxLoadedPlanner` and
:class:`~swapcore.planners.memory.MemoryBudgetPlanner`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["Recency"]

_NEVER = (0, 0.0, 0)


class Recency:
    """When each model was last used, as a total order from oldest to newest.

    A model's recency key is ``(1, now, seq)``: ``now`` is the largest clock
    value it was used at and ``seq`` the position of that use among every
    recorded use (so equal clock values order by call order). A model never
    used has key ``(0, 0.0, 0)``, older than any used model. Models with equal
    keys (only never-used ones) keep the order of the sequence being sorted.

    State is one entry per model ever used; nothing else is kept.
    """

    __slots__ = ("_keys", "_latest", "_seq")

    def __init__(self) -> None:
        self._keys: dict[str, tuple[int, float, int]] = {}
        self._latest = -math.inf
        self._seq = 0

    def serve(self, model: str, now: float) -> None:
        """Record a use of ``model`` at clock value ``now``.

        A use at a clock value earlier than the model's recorded one changes
        nothing (recency is the *latest* use). Raises ``ValueError`` for a
        ``now`` that is not a finite number: such a clock cannot be ordered.
        """
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
            raise ValueError(f"on_serve: now must be a finite clock value, got {now!r}")
        self._seq += 1
        key = (1, float(now), self._seq)
        if key > self._keys.get(model, _NEVER):
            self._keys[model] = key
        self._latest = max(self._latest, float(now))

    def touch(self, model: str) -> None:
        """Record a use of ``model`` now, without a clock value.

        The use counts as happening at the latest clock value seen so far,
        after every use recorded before it: ``model`` becomes the most
        recently used model.
        """
        self._seq += 1
        self._keys[model] = (1, self._latest, self._seq)

    def key(self, model: str) -> tuple[int, float, int]:
        """Return ``model``'s recency key; larger means more recently used."""
        return self._keys.get(model, _NEVER)

    def last_used(self, model: str) -> float | None:
        """The clock value of ``model``'s latest use, or None if never used.

        ``-inf`` when its only uses were recorded by :meth:`touch` before any
        clock value was seen.
        """
        key = self._keys.get(model)
        return None if key is None else key[1]

    def oldest_first(self, models: Sequence[str]) -> list[str]:
        """Return ``models`` sorted from least to most recently used (stable)."""
        keys = self._keys
        return sorted(models, key=lambda m: keys.get(m, _NEVER))
