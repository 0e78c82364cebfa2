"""The memory-budget planner: keep the loaded models' total size within a budget.

Beyond llama-swap: instead of declaring which models may run together, give
each model a size (e.g. GiB of VRAM) and the machine a budget. Loading a
model evicts the cheapest set of running models that makes it fit, sparing
the most recently used ones among equally cheap choices.
"""

from __future__ import annotations

import bisect
import logging
import math
import types
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction

from swapcore.errors import ConfigError
from swapcore.planners._recency import Recency
from swapcore.planners.base import SwapPlanner

__all__ = ["MemoryBudgetPlanner"]

_log = logging.getLogger("swapcore.memory")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _exact(value: float) -> Fraction:
    """``value`` as the exact decimal number it prints as (``0.1`` is 1/10)."""
    # Comparing binary floats would make 0.1 + 0.2 > 0.3, so a budget of 0.3
    # could not hold models of 0.1 and 0.2; the shortest repr is what the user wrote.
    return Fraction(value) if isinstance(value, int) else Fraction(repr(value))


class MemoryBudgetPlanner(SwapPlanner):
    """Keeps the running models' total size within ``budget``, evicting as cheaply as possible.

    ``sizes`` maps every model the planner may see to its size, a finite
    number > 0 and <= ``budget`` (a model larger than the budget could never
    load). ``budget`` is a number >= 0, or ``math.inf`` for no limit.
    ``evict_costs`` maps models of ``sizes`` to positive int costs (default 1
    each). Sizes and budget are compared exactly, as the decimal numbers they
    print as, so ``0.1 + 0.2`` fits a budget of ``0.3`` and the running
    order never changes the outcome. Every invalid value raises
    :class:`~swapcore.ConfigError` naming the model or the key.

    For a target T and the running models R (duplicates and T ignored):

    1. T is already running: evict nothing.
    2. size(R) + size(T) <= budget: evict nothing.
    3. Otherwise evict the subset E of R whose removal makes T fit with the
       smallest total evict cost. Among equally cheap subsets, the one that
       spares the most recently used model of R wins; if both spare it, the
       next most recently used decides, and so on. Formally, with R ranked
       from least (rank 0) to most recently used, E minimises
       ``(cost(E), sum(2 ** rank(m) for m in E))``: a total order, so the
       answer is unique. With unit sizes and costs this is exactly LRU.

    A solution always exists (evicting all of R frees room, since T fits the
    budget alone), and no model is evicted without need: no proper subset
    of E would make T fit. The search is exact, meet-in-the-middle over R:
    O(2^(n/2) * n) time and O(2^(n/2)) memory for n running models (about
    2,000 subset sums for n = 20). When T fits without eviction the answer
    costs one sum.

    Recency is recorded as for :class:`~swapcore.planners.lru.MaxLoadedPlanner`:
    :meth:`on_serve` with the clock value, and :meth:`on_swap_start` as a
    use of the target at the latest clock value seen; a model never used is
    older than any used one; equal recency keeps ``running``'s order.

    A target or running model without a size raises
    :class:`~swapcore.ConfigError` naming it, from ``eviction_for``: guessing
    a size could overcommit the memory the budget protects. Call
    :meth:`check_models` with the router's models at start-up to find the
    mistake before the first request.
    """

    def __init__(
        self,
        sizes: Mapping[str, float],
        budget: float,
        *,
        evict_costs: Mapping[str, int] | None = None,
    ) -> None:
        if not _is_number(budget) or math.isnan(budget) or budget < 0:
            raise ConfigError(
                f"MemoryBudgetPlanner: budget must be a number >= 0 (or inf), got {budget!r}"
            )
        if not isinstance(sizes, Mapping):
            raise ConfigError(
                f"MemoryBudgetPlanner: sizes must be a mapping of models to sizes, "
                f"got {type(sizes).__name__}"
            )
        exact_budget = None if math.isinf(budget) else _exact(budget)
        exact: dict[str, Fraction] = {}
        for model, size in sizes.items():
            if not isinstance(model, str) or not model:
                raise ConfigError(
                    f"MemoryBudgetPlanner: sizes keys must be non-empty model names, got {model!r}"
                )
            if not _is_number(size) or not math.isfinite(size) or size <= 0:
                raise ConfigError(
                    f"MemoryBudgetPlanner: sizes[{model!r}] must be a finite number > 0, "
                    f"got {size!r}"
                )
            exact[model] = _exact(size)
            if exact_budget is not None and exact[model] > exact_budget:
                raise ConfigError(
                    f"MemoryBudgetPlanner: sizes[{model!r}] = {size!r} exceeds the budget "
                    f"{budget!r}; the model could never load"
                )

        costs: dict[str, int] = dict.fromkeys(exact, 1)
        if evict_costs is not None:
            if not isinstance(evict_costs, Mapping):
                raise ConfigError(
                    f"MemoryBudgetPlanner: evict_costs must be a mapping of models to ints, "
                    f"got {type(evict_costs).__name__}"
                )
            for model, cost in evict_costs.items():
                if model not in exact:
                    raise ConfigError(
                        f"MemoryBudgetPlanner: evict_costs[{model!r}]: unknown model (not in sizes)"
                    )
                if isinstance(cost, bool) or not isinstance(cost, int) or cost <= 0:
                    raise ConfigError(
                        f"MemoryBudgetPlanner: evict_costs[{model!r}] must be an int > 0, "
                        f"got {cost!r}"
                    )
                costs[model] = cost

        # Scale every size and the budget by one common denominator: the search
        # then adds plain ints, exactly and fast.
        scale = math.lcm(*(f.denominator for f in exact.values()), 1)
        if exact_budget is not None:
            scale = math.lcm(scale, exact_budget.denominator)
        self._units = {m: int(f * scale) for m, f in exact.items()}
        self._budget_units = None if exact_budget is None else int(exact_budget * scale)
        self._scale = scale
        self._sizes: Mapping[str, float] = types.MappingProxyType(dict(sizes))
        self._costs: Mapping[str, int] = types.MappingProxyType(costs)
        self._budget = budget
        self._recency = Recency()

    @property
    def sizes(self) -> Mapping[str, float]:
        """Every model's size, as given (read-only)."""
        return self._sizes

    @property
    def budget(self) -> float:
        """The most the running models may add up to."""
        return self._budget

    @property
    def evict_costs(self) -> Mapping[str, int]:
        """Every model's evict cost, defaults (1) included (read-only)."""
        return self._costs

    def check_models(self, models: Iterable[str]) -> None:
        """Raise :class:`~swapcore.ConfigError` naming the first of ``models`` without a size."""
        for model in models:
            self._size_units(model)

    def last_used(self, model: str) -> float | None:
        """The clock value of ``model``'s latest recorded use, or None if never used."""
        return self._recency.last_used(model)

    def _size_units(self, model: str) -> int:
        try:
            return self._units[model]
        except KeyError:
            raise ConfigError(
                f"MemoryBudgetPlanner: no size for model {model!r}; add it to sizes"
            ) from None

    def eviction_for(self, target: str, running: Sequence[str]) -> tuple[str, ...]:
        """Return the cheapest set of running models whose eviction makes ``target`` fit.

        Pure and silent. The result keeps ``running``'s order, holds each
        model once and never contains ``target``; see the class docstring for
        the cost and recency order. Raises :class:`~swapcore.ConfigError`
        when ``target`` or a running model has no size.
        """
        others = list(dict.fromkeys(running))
        target_units = self._size_units(target)
        units = [self._size_units(m) for m in others]
        if target in others or self._budget_units is None:
            return ()
        need = sum(units) + target_units - self._budget_units
        if need <= 0:
            return ()
        size_of = dict(zip(others, units, strict=True))
        by_age = self._recency.oldest_first(others)
        evicted_ranks = _cheapest_cover(
            [size_of[m] for m in by_age], [self._costs[m] for m in by_age], need
        )
        victims = {m for rank, m in enumerate(by_age) if evicted_ranks >> rank & 1}
        return tuple(m for m in others if m in victims)

    def on_swap_start(self, target: str, running: Sequence[str]) -> None:
        """Log one INFO line on ``swapcore.memory``, then record ``target`` as just used.

        The line names the target and its size, the evict set and its cost,
        and the loaded total before and after the swap against the budget.
        """
        if _log.isEnabledFor(logging.INFO):
            others = [m for m in dict.fromkeys(running) if m != target]
            evict = self.eviction_for(target, running)
            before = self._total(others)
            after = self._total([*(m for m in others if m not in evict), target])
            _log.info(
                "swap to %r (size %g): evict %s (cost %d); loaded %g -> %g of budget %g",
                target,
                self._sizes[target],
                ", ".join(map(repr, evict)) if evict else "nothing",
                sum(self._costs[m] for m in evict),
                before,
                after,
                self._budget,
            )
        self._recency.touch(target)

    def on_serve(self, model: str, now: float) -> None:
        """Record that ``model`` was granted a request at clock value ``now``.

        Raises ``ValueError`` when ``now`` is not a finite number.
        """
        self._recency.serve(model, now)

    def _total(self, models: Iterable[str]) -> float:
        return float(Fraction(sum(self._units.get(m, 0) for m in models), self._scale))

    def __repr__(self) -> str:
        return f"MemoryBudgetPlanner({len(self._sizes)} models, budget={self._budget!r})"


def _cheapest_cover(sizes: Sequence[int], costs: Sequence[int], need: int) -> int:
    """Return the bitmask of items (by index) to evict: total size >= ``need``, least key.

    An item's key is ``cost << n | 1 << index``; a set's key is the sum of
    its items' keys, so sets compare by total cost first, then by the
    highest index where they differ (the set without it wins). Distinct sets
    have distinct keys, so the answer is unique. Meet in the middle: every
    subset of each half, the second half sorted by size with suffix minima
    of the key, one binary search per subset of the first half.
    ``need`` must be at most ``sum(sizes)``.
    """
    n = len(sizes)
    keys = [cost << n | 1 << index for index, cost in enumerate(costs)]
    half = n // 2
    first = _subset_sums(sizes[:half], keys[:half])
    second = sorted(_subset_sums(sizes[half:], keys[half:]))
    second_sizes = [size for size, _ in second]
    # best_from[i] = least key among second-half subsets of size >= second_sizes[i]
    best_from = [0] * len(second)
    best = -1
    for i in range(len(second) - 1, -1, -1):
        key = second[i][1]
        if best < 0 or key < best:
            best = key
        best_from[i] = best
    winner = -1
    for size, key in first:
        i = bisect.bisect_left(second_sizes, need - size)
        if i < len(second):
            total = key + best_from[i]
            if winner < 0 or total < winner:
                winner = total
    assert winner >= 0, "need exceeds the total size"
    # Item keys carry their global index bit, so the low n bits are the set.
    return winner & ((1 << n) - 1)


def _subset_sums(sizes: Sequence[int], keys: Sequence[int]) -> list[tuple[int, int]]:
    """Every subset's (total size, total key), the empty subset included."""
    sums = [(0, 0)]
    for size, key in zip(sizes, keys, strict=True):
        sums += [(s + size, k + key) for s, k in sums]
    return sums
