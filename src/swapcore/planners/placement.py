"""The placement planner: models on several devices, each within its own budget.

Beyond one budget: the machine has devices (GPUs), each with its memory,
and a model runs on a set of them. Loading a model chooses, in this order,
(1) the cheapest set of running models to evict, by evict cost, sparing
the most recently used among equally cheap sets (as
:class:`~swapcore.MemoryBudgetPlanner`), then (2) where it goes: on one
device if any has room (the one with the least room that fits, keeping
big gaps for big models), and spread over several only when it must (the
devices with the most room first), as Ollama places models. A model is
never split when it fits whole, and no device ever holds more than its
budget.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction

from swapcore.errors import ConfigError
from swapcore.planners._recency import Recency
from swapcore.planners.base import SwapPlanner
from swapcore.planners.memory import _exact

__all__ = ["Placement", "PlacementPlanner"]

Placement = Mapping[str, Fraction]
"""Where one model is: device name -> the share of its size on that device."""

_MAX_EXACT = 16  # running models beyond which eviction sets are searched greedily


def _positive(where: str, value: object) -> Fraction:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"PlacementPlanner: {where} must be a finite number > 0, got {value!r}")
    return _exact(value)


class PlacementPlanner(SwapPlanner):
    """Keeps every device within its budget, placing each model it loads on devices.

    ``sizes`` maps every model to its size (any unit, the budgets'),
    ``devices`` each device (a name, e.g. ``"0"`` for GPU 0) to its budget,
    ``evict_costs`` models to positive int costs (default 1). ``split``
    False forbids spreading a model over several devices. A model larger
    than what the devices can hold together (or than the largest device,
    without ``split``) is a :class:`~swapcore.ConfigError` at construction:
    it could never load.

    ``eviction_for`` is pure: it reads the placements recorded so far (each
    running model's devices) and answers with the models to evict.
    ``on_swap_start`` records where the target goes (:meth:`placement_of`).
    A running model the planner never placed (loaded behind its back) is
    assumed on the devices of its last placement, or, never placed, on the
    first device where it fits. Sizes and budgets compare exactly, as the
    decimals they print as.
    """

    def __init__(
        self,
        sizes: Mapping[str, float],
        devices: Mapping[str, float],
        *,
        evict_costs: Mapping[str, int] | None = None,
        split: bool = True,
    ) -> None:
        if not isinstance(devices, Mapping) or not devices:
            raise ConfigError("PlacementPlanner: devices must map at least one device to a budget")
        self._devices = {
            str(name): _positive(f"devices[{name!r}]", budget) for name, budget in devices.items()
        }
        if not isinstance(sizes, Mapping):
            raise ConfigError("PlacementPlanner: sizes must be a mapping of models to sizes")
        self._sizes = {m: _positive(f"sizes[{m!r}]", s) for m, s in sizes.items()}
        largest, total = max(self._devices.values()), sum(self._devices.values())
        for model, size in self._sizes.items():
            room = total if split else largest
            if size > room:
                where = "all devices together" if split else "any one device"
                raise ConfigError(
                    f"PlacementPlanner: sizes[{model!r}] = {float(size):g} exceeds what "
                    f"{where} can hold ({float(room):g}); the model could never load"
                )
        self._costs = dict.fromkeys(self._sizes, 1)
        for model, cost in (evict_costs or {}).items():
            if model not in self._sizes:
                raise ConfigError(f"PlacementPlanner: evict_costs[{model!r}]: unknown model")
            if isinstance(cost, bool) or not isinstance(cost, int) or cost <= 0:
                raise ConfigError(
                    f"PlacementPlanner: evict_costs[{model!r}] must be an int > 0, got {cost!r}"
                )
            self._costs[model] = cost
        self._split = split
        self._placed: dict[str, dict[str, Fraction]] = {}
        self._recency = Recency()

    def __repr__(self) -> str:
        devices = ", ".join(f"{d}: {float(b):g}" for d, b in self._devices.items())
        return f"PlacementPlanner({len(self._sizes)} models, devices {{{devices}}})"

    @property
    def devices(self) -> Mapping[str, Fraction]:
        """Each device's budget."""
        return dict(self._devices)

    def placement_of(self, model: str) -> dict[str, float]:
        """Where ``model`` was last placed: device -> its share (empty: never placed)."""
        return {d: float(share) for d, share in self._placed.get(model, {}).items()}

    def free(self, running: Iterable[str]) -> dict[str, Fraction]:
        """Each device's room with ``running`` loaded where they are."""
        free = dict(self._devices)
        for model in dict.fromkeys(running):
            for device, share in self._where(model, free).items():
                free[device] -= share
        return free

    # -- the SwapPlanner seam -------------------------------------------------------

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        """The cheapest set of running models whose eviction makes room for ``target``."""
        return self._plan(target, running)[0]

    def on_swap_start(self, target: str, running: Sequence[str]) -> None:
        """Record where ``target`` goes (beside the running models it does not evict)."""
        evict, placement = self._plan(target, running)
        for model in evict:
            self._placed.pop(model, None)
        if placement is not None:
            self._placed[target] = placement
        self._recency.touch(target)

    def on_serve(self, model: str, now: float) -> None:
        """Record a use of ``model`` (recency breaks ties between equally cheap evictions)."""
        self._recency.serve(model, now)

    # -- the search -----------------------------------------------------------------

    def _size(self, model: str) -> Fraction:
        size = self._sizes.get(model)
        if size is None:
            raise ConfigError(f"PlacementPlanner: model {model!r} has no size")
        return size

    def _where(self, model: str, free: Mapping[str, Fraction]) -> Mapping[str, Fraction]:
        placed = self._placed.get(model)
        if placed is not None:
            return placed
        size = self._size(model)
        fit = next((d for d, room in free.items() if room >= size), None)
        return {fit if fit is not None else next(iter(free)): size}

    def _place(self, size: Fraction, free: Mapping[str, Fraction]) -> dict[str, Fraction] | None:
        """Where a model of ``size`` goes in ``free``: one device if it can, else spread."""
        whole = [d for d, room in free.items() if room >= size]
        if whole:
            best = min(whole, key=lambda d: (free[d], list(free).index(d)))
            return {best: size}
        if not self._split or sum((r for r in free.values() if r > 0), Fraction(0)) < size:
            return None
        placement: dict[str, Fraction] = {}
        left = size
        for device in sorted(free, key=lambda d: (-free[d], list(free).index(d))):
            if left <= 0 or free[device] <= 0:
                break
            share = min(free[device], left)
            placement[device] = share
            left -= share
        return placement

    def _plan(
        self, target: str, running: Sequence[str]
    ) -> tuple[tuple[str, ...], dict[str, Fraction] | None]:
        size = self._size(target)
        others = [m for m in dict.fromkeys(running) if m != target]
        if target in running:
            return (), self._placed.get(target)
        free = self.free(others)
        placement = self._place(size, free)
        if placement is not None:
            return (), placement
        for evict in self._eviction_sets(others):
            room = dict(free)
            for model in evict:
                for device, share in self._where(model, self.free(others)).items():
                    room[device] += share
            placement = self._place(size, room)
            if placement is not None:
                return evict, placement
        raise ConfigError(  # the constructor made sure a lone model always fits
            f"PlacementPlanner: {target!r} cannot be placed even with every model evicted"
        )

    def _eviction_sets(self, running: list[str]) -> Iterable[tuple[str, ...]]:
        """Subsets of ``running`` from cheapest to dearest; the least recently used first."""
        order = self._recency.oldest_first(running)  # rank 0 = least recently used
        rank = {m: i for i, m in enumerate(order)}
        if len(order) > _MAX_EXACT:  # greedily: the oldest first, one more each time
            for count in range(1, len(order) + 1):
                yield tuple(order[:count])
            return
        subsets = [
            combo
            for count in range(1, len(order) + 1)
            for combo in itertools.combinations(order, count)
        ]
        subsets.sort(
            key=lambda combo: (
                sum(self._costs.get(m, 1) for m in combo),
                sum(2 ** rank[m] for m in combo),
            )
        )
        yield from subsets
