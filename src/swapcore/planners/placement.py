"""The placement planner: models on several devices, each within its own budget.

Beyond one budget: the machine has devices (GPUs), each with its memory,
and a model runs on a set of them. Loading a model chooses, in this order,
(1) the cheapest set of running models to evict, by evict cost; among
equally cheap sets, one that lets the model fit on one device wins, then
the one sparing the most recently used (as
:class:`~swapcore.MemoryBudgetPlanner`); then (2) where it goes: on one
device if any has room (the one with the least room that fits, keeping
big gaps for big models), and spread over several only when it must (the
devices with the most room first), as Ollama places models. A model is
never split when it fits whole, and no device ever holds more than its
budget.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction

from swapcore.costs import SwapCosts
from swapcore.errors import ConfigError
from swapcore.planners._recency import Recency
from swapcore.planners.base import SwapPlanner
from swapcore.planners.memory import _exact
from swapcore.planners.residency import Eviction

__all__ = ["Placement", "PlacementPlanner"]

Placement = Mapping[str, Fraction]
"""Where one model is: device name -> the share of its size on that device."""

_MAX_EXACT = 16  # running models beyond which eviction sets are searched greedily
_log = logging.getLogger("swapcore.memory")


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
    first device where it fits. An evicted model keeps its placement while
    it is in ``running`` (stopping, it still holds that memory). A model
    evicted to sleep (see :meth:`residency_for`) holds no device memory
    asleep, but its server keeps its devices: it wakes where it was,
    evicting there if it must.
    Sizes and budgets compare exactly, as the decimals they print as.

    ``costs`` (learned costs, e.g. the router's) lets measurements replace
    the given sizes: a model with a measured ``memory`` (bytes, recorded by
    :class:`~swapcore.memory.MemoryWatcher`) is sized by its median
    measurement from then on, capped at what the devices can hold. Sizes
    and budgets must then be bytes. ``show_size`` renders a size in the
    reasons :meth:`explain` gives (default: the plain number).
    """

    def __init__(
        self,
        sizes: Mapping[str, float],
        devices: Mapping[str, float],
        *,
        evict_costs: Mapping[str, int] | None = None,
        split: bool = True,
        costs: SwapCosts | None = None,
        show_size: Callable[[float], str] = "{:g}".format,
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
        self._room = Fraction(total if split else largest)
        self._learned = costs
        self._show = show_size
        self._placed: dict[str, dict[str, Fraction]] = {}
        self._reasons: dict[str, str] = {}
        self._pinned: dict[str, dict[str, Fraction]] = {}  # asleep: wakes where it slept
        self._recency = Recency()

    def __repr__(self) -> str:
        devices = ", ".join(f"{d}: {float(b):g}" for d, b in self._devices.items())
        return f"PlacementPlanner({len(self._sizes)} models, devices {{{devices}}})"

    @property
    def devices(self) -> Mapping[str, Fraction]:
        """Each device's budget."""
        return dict(self._devices)

    @property
    def split(self) -> bool:
        """Whether a model may spread over several devices."""
        return self._split

    @property
    def sizes(self) -> dict[str, Fraction]:
        """Every model's size now (measured, where measurements replace the given size)."""
        return {model: self._size(model) for model in self._sizes}

    def placement_of(self, model: str) -> dict[str, float]:
        """Where ``model`` was last placed: device -> its share (empty: never placed)."""
        return {d: float(share) for d, share in self._placed.get(model, {}).items()}

    def free(self, running: Iterable[str]) -> dict[str, Fraction]:
        """Each device's room with ``running`` loaded where they are."""
        return self._room_beside(self._locate(running))

    def _locate(self, running: Iterable[str]) -> dict[str, Mapping[str, Fraction]]:
        """Where each running model is: as placed, or, never placed, where it would fit.

        A model loaded behind the planner's back is assumed on the first
        device with room for it beside those located before it (else on the
        device with the most room), once per call, so every use agrees.
        """
        free = dict(self._devices)
        where: dict[str, Mapping[str, Fraction]] = {}
        for model in dict.fromkeys(running):
            placed = self._placed.get(model)
            if placed is None:
                size = self._size(model)
                fit = next((d for d, room in free.items() if room >= size), None)
                placed = {fit if fit is not None else max(free, key=lambda d: free[d]): size}
            where[model] = placed
            for device, share in placed.items():
                free[device] -= share
        return where

    def _room_beside(self, where: Mapping[str, Mapping[str, Fraction]]) -> dict[str, Fraction]:
        free = dict(self._devices)
        for placed in where.values():
            for device, share in placed.items():
                free[device] -= share
        return free

    # -- the SwapPlanner seam -------------------------------------------------------

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        """The cheapest set of running models whose eviction makes room for ``target``."""
        return self._plan(target, running)[0]

    def on_swap_start(self, target: str, running: Sequence[str]) -> None:
        """Record where ``target`` goes (beside the running models it does not evict), and why."""
        plan = self._plan(target, running)  # the search runs once per swap
        self._reasons[target] = self._explain(target, running, plan)
        # An evicted model keeps its placement: it holds that memory until it
        # has stopped (it stays in ``running`` while stopping), and a model
        # put to sleep wakes there.
        placement = plan[1]
        self._pinned.pop(target, None)
        if placement is not None:
            self._placed[target] = placement
        self._recency.touch(target)
        _log.info("%s: %s", target, self._reasons[target])

    def residency_for(self, target: str, evict: Sequence[str], sleeping: Sequence[str]) -> Eviction:
        """Sleep or stop (the sleep rules); a model put to sleep will wake on its devices."""
        eviction = super().residency_for(target, evict, sleeping)
        for model in eviction.sleep:
            placed = self._placed.get(model)
            if placed is not None:
                self._pinned[model] = placed
        for model in eviction.stop:
            self._pinned.pop(model, None)
        return eviction

    def swap_reason(self, target: str) -> str:
        """Why the last swap to ``target`` went where it did and evicted what it did."""
        return self._reasons.get(target, "")

    def explain(self, target: str, running: Sequence[str]) -> str:
        """One line: what ``target`` needs, the room on each device, what is evicted and why.

        For example ``needs 14 GiB on one device; GPU 0 has 4 GiB free after
        keeping embed, GPU 1 has 6 GiB free after keeping chat; evicting chat
        makes room on GPU 1``.
        """
        if target in running:
            return "already running"
        return self._explain(target, running, self._plan(target, running))

    def _explain(
        self,
        target: str,
        running: Sequence[str],
        plan: tuple[tuple[str, ...], dict[str, Fraction] | None],
    ) -> str:
        if target in running:
            return "already running"
        show = self._show
        size = self._size(target)
        others = [m for m in dict.fromkeys(running) if m != target]
        evict, placement = plan
        where = " + ".join(
            f"{show(float(share))} on GPU {device}" for device, share in (placement or {}).items()
        )
        if not evict:
            beside = " beside the running models" if others else ""
            return f"needs {show(float(size))}; fits{beside}: {where}"
        located = self._locate(others)
        free = self._room_beside(located)
        kept: dict[str, list[str]] = {device: [] for device in free}
        for model, placed in located.items():
            for device in placed:
                kept[device].append(model)
        rooms = ", ".join(
            f"GPU {device} has {show(float(max(room, Fraction(0))))} free"
            + (f" after keeping {', '.join(kept[device])}" if kept[device] else "")
            for device, room in free.items()
        )
        needs = "on one device" if not self._split else "on one device, or over several"
        return (
            f"needs {show(float(size))} {needs}; {rooms}; evicting {', '.join(evict)} "
            f"makes room: {where}"
        )

    def on_serve(self, model: str, now: float) -> None:
        """Record a use of ``model`` (recency breaks ties between equally cheap evictions)."""
        self._recency.serve(model, now)

    # -- the search -----------------------------------------------------------------

    def _size(self, model: str) -> Fraction:
        size = self._sizes.get(model)
        if size is None:
            raise ConfigError(f"PlacementPlanner: model {model!r} has no size")
        learned = self._learned
        if learned is not None and learned.measured(model, "memory"):
            measured = learned.estimate(model, "memory")
            if measured is not None and measured > 0:
                return min(Fraction(round(measured)), self._room)
        return size

    def _place(
        self, size: Fraction, free: Mapping[str, Fraction], pinned: Mapping[str, Fraction] | None
    ) -> dict[str, Fraction] | None:
        """Where a model of ``size`` goes in ``free``: one device if it can, else spread.

        A ``pinned`` model (asleep: its server holds its devices) goes back
        where it was, or nowhere.
        """
        if pinned is not None:
            if all(free.get(device, Fraction(0)) >= share for device, share in pinned.items()):
                return dict(pinned)
            return None
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
        pinned = self._pinned.get(target)
        located = self._locate(others)
        free = self._room_beside(located)
        placement = self._place(size, free, pinned)
        if placement is not None:
            return (), placement
        found: tuple[tuple[str, ...], dict[str, Fraction]] | None = None
        found_cost = 0
        for evict, cost in self._eviction_sets(others):
            if found is not None and cost > found_cost:
                break  # nothing as cheap fits it whole: spread it
            room = dict(free)
            for model in evict:
                for device, share in located[model].items():
                    room[device] += share
            placement = self._place(size, room, pinned)
            if placement is None:
                continue
            if len(others) > _MAX_EXACT:  # greedy: keep back what need not go
                evict, placement = self._prune(evict, placement, size, free, located, pinned)
            if len(placement) == 1:
                return evict, placement
            if found is None:
                found, found_cost = (evict, placement), cost
        if found is not None:
            return found
        raise ConfigError(  # the constructor made sure a lone model always fits
            f"PlacementPlanner: {target!r} cannot be placed even with every model evicted"
        )

    def _prune(
        self,
        evict: tuple[str, ...],
        placement: dict[str, Fraction],
        size: Fraction,
        free: Mapping[str, Fraction],
        located: Mapping[str, Mapping[str, Fraction]],
        pinned: Mapping[str, Fraction] | None,
    ) -> tuple[tuple[str, ...], dict[str, Fraction]]:
        """``evict`` without each model whose staying still leaves room (newest kept first)."""
        kept = list(evict)
        for model in reversed(evict):  # the greedy order is oldest first
            trial = [m for m in kept if m != model]
            room = dict(free)
            for other in trial:
                for device, share in located[other].items():
                    room[device] += share
            fits = self._place(size, room, pinned)
            if fits is not None:
                kept, placement = trial, fits
        return tuple(kept), placement

    def _eviction_sets(self, running: list[str]) -> Iterable[tuple[tuple[str, ...], int]]:
        """Subsets of ``running`` with their cost, cheapest first; the least recently used first."""
        order = self._recency.oldest_first(running)  # rank 0 = least recently used
        rank = {m: i for i, m in enumerate(order)}
        costs = self._costs
        if len(order) > _MAX_EXACT:  # greedily: the oldest first, one more each time
            for count in range(1, len(order) + 1):
                yield tuple(order[:count]), count
            return
        subsets = [
            combo
            for count in range(1, len(order) + 1)
            for combo in itertools.combinations(order, count)
        ]
        priced = [(combo, sum(costs.get(m, 1) for m in combo)) for combo in subsets]
        priced.sort(key=lambda item: (item[1], sum(2 ** rank[m] for m in item[0])))
        yield from priced
