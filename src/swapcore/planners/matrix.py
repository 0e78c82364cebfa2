"""The swap-matrix planner: eviction decided by a compiled swap matrix."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence

from swapcore.matrix.solver import MatrixSolver, SolveResult
from swapcore.planners.base import SwapPlanner

__all__ = ["MatrixPlanner"]

logger = logging.getLogger("swapcore.matrix")

_CACHE_SIZE = 256


class MatrixPlanner(SwapPlanner):
    """Evicts what a :class:`~swapcore.matrix.MatrixSolver` says must go.

    :meth:`eviction_for` is pure and silent; :meth:`on_swap_start` logs one
    INFO line on the ``swapcore.matrix`` logger per real swap, naming the
    target, the chosen set and its DSL, the evicted models and the cost.
    Recent decisions are kept in a small LRU cache (the solver is pure, so
    a cached answer is the answer), which makes the scheduler's repeated
    queries on every queue drain cheap.
    """

    __slots__ = ("_cache", "_solver")

    def __init__(self, solver: MatrixSolver) -> None:
        """Plan with ``solver`` (its program and eviction costs)."""
        self._solver = solver
        self._cache: OrderedDict[tuple[str, tuple[str, ...]], SolveResult] = OrderedDict()

    def __repr__(self) -> str:
        return f"MatrixPlanner({self._solver!r})"

    @property
    def solver(self) -> MatrixSolver:
        """The solver this planner asks."""
        return self._solver

    def decide(self, target: str, running: Sequence[str]) -> SolveResult:
        """The full decision for a swap to ``target`` (cached; same as ``solver.solve``)."""
        key = (target, tuple(running))
        cache = self._cache
        result = cache.get(key)
        if result is None:
            result = self._solver.solve(target, key[1])
            cache[key] = result
            if len(cache) > _CACHE_SIZE:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return result

    def eviction_for(self, target: str, running: Sequence[str]) -> tuple[str, ...]:
        """The models of ``running`` to stop so ``target`` can load (never ``target``)."""
        return self.decide(target, running).evict

    def on_swap_start(self, target: str, running: Sequence[str]) -> None:
        """Log the decision for this swap: one INFO line on ``swapcore.matrix``."""
        if not logger.isEnabledFor(logging.INFO):
            return
        result = self.decide(target, running)
        if result.set_name:
            logger.info(
                "swap to %r: set %r dsl=%r evict=%r cost=%d",
                target,
                result.set_name,
                result.dsl,
                list(result.evict),
                result.total_cost,
            )
        else:
            logger.info(
                "swap to %r: %s evict=%r cost=%d",
                target,
                "no set holds them all" if target in running else "in no set, runs alone",
                list(result.evict),
                result.total_cost,
            )
