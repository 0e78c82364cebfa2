"""The memory rules of check_planner: the shipped planners pass, broken ones are named."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import pytest

from swapcore import MemoryBudgetPlanner, SwapPlanner
from swapcore.errors import ConfigError
from swapcore.planners.placement import PlacementPlanner
from swapcore.planners.residency import SleepRules
from swapcore.testing.memory_checks import (
    BudgetedPlanner,
    PlacingPlanner,
    budget_violations,
    memory_violations,
)
from swapcore.testing.planner_checks import check_planner

SIZES = {"a": 4, "b": 4, "c": 6, "d": 2, "e": 0.1, "f": 0.2}
MODELS = list(SIZES)
DEVICES = {"0": 8, "1": 6}
P = TypeVar("P", bound=SwapPlanner)


def one_budget() -> MemoryBudgetPlanner:
    return MemoryBudgetPlanner(SIZES, budget=10, evict_costs={"c": 2})


def placement(split: bool = True) -> PlacementPlanner:
    return PlacementPlanner({**SIZES, "c": 5}, DEVICES, split=split)


# ------------------------------------------------------------ honest planners


def test_the_shipped_planners_have_the_shape() -> None:
    assert isinstance(one_budget(), BudgetedPlanner)
    assert not isinstance(one_budget(), PlacingPlanner)
    assert isinstance(placement(), PlacingPlanner)


@pytest.mark.parametrize(
    "make",
    [one_budget, placement, lambda: placement(split=False)],
    ids=["one budget", "devices", "devices without split"],
)
def test_check_planner_passes_the_shipped_planners(make: Callable[[], SwapPlanner]) -> None:
    check_planner(make, MODELS, max_examples=80)


def test_check_planner_passes_the_shipped_planners_with_sleep_rules() -> None:
    # A sleeper of the placement planner wakes on the devices it slept on.
    rules = SleepRules(levels=dict.fromkeys("abc", 1), host_memory=SIZES, host_budget=8)

    def make() -> PlacementPlanner:
        planner = placement()
        planner.sleep_rules = rules
        return planner

    check_planner(make, MODELS, max_examples=80)


def test_a_fixed_instance_is_checked_too() -> None:
    check_planner(placement(), MODELS, max_examples=40)


def test_decimals_compare_exactly() -> None:
    planner = MemoryBudgetPlanner({"x": 0.1, "y": 0.2, "z": 0.3}, budget=0.3)
    assert memory_violations(planner, "y", ["x"]) == []
    assert budget_violations(planner, ["x", "y"]) == []
    check_planner(planner, ["x", "y", "z"], max_examples=30)


# ------------------------------------------------------------ broken planners


class OverCommits(MemoryBudgetPlanner):
    """Never evicts."""

    def eviction_for(self, target: str, running: Sequence[str]) -> tuple[str, ...]:
        return ()


class PilesOnOne(SwapPlanner):
    """Counts the room of both devices together, but puts every model on device 0."""

    def __init__(self) -> None:
        self.sizes = {"a": 4, "b": 4, "c": 4}
        self.devices = {"0": 6, "1": 6}
        self._placed: dict[str, dict[str, float]] = {}

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return ()  # the three models add up to the 12 of both devices

    def on_swap_start(self, target: str, running: Sequence[str]) -> None:
        self._placed[target] = {"0": self.sizes[target]}

    def placement_of(self, model: str) -> Mapping[str, float]:
        return dict(self._placed.get(model, {}))

    def free(self, running: Iterable[str]) -> Mapping[str, float]:
        free: dict[str, float] = dict(self.devices)
        for model in running:
            for device, share in self.placement_of(model).items():
                free[device] -= share
        return free


def refusing(base: type[P]) -> type[P]:
    class Refuses(base):  # type: ignore[valid-type,misc]
        """Raises instead of evicting."""

        def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
            evict: Sequence[str] = super().eviction_for(target, running)
            if evict:
                raise ConfigError(f"no room for {target!r}")
            return evict

    return Refuses


def greedy(base: type[P]) -> type[P]:
    class EvictsOneTooMany(base):  # type: ignore[valid-type,misc]
        """Evicts one more running model than it needs to, when it evicts."""

        def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
            evict = tuple(super().eviction_for(target, running))
            spare = [m for m in dict.fromkeys(running) if m != target and m not in evict]
            return evict + tuple(spare[:1]) if evict else evict

    return EvictsOneTooMany


def test_an_over_committing_planner_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"memory: within budget: running .* over the budget"):
        check_planner(lambda: OverCommits(SIZES, budget=10), MODELS, max_examples=100)


def test_a_planner_over_one_device_is_caught() -> None:
    with pytest.raises(AssertionError, match="memory: within budget: device '0' holds 8"):
        check_planner(PilesOnOne, ["a", "b", "c"], max_examples=100)


@pytest.mark.parametrize(
    "make",
    [
        lambda: refusing(MemoryBudgetPlanner)(SIZES, budget=10),
        lambda: refusing(PlacementPlanner)(SIZES, DEVICES),
    ],
    ids=["one budget", "devices"],
)
def test_a_planner_refusing_a_fitting_model_is_caught(make: Callable[[], SwapPlanner]) -> None:
    with pytest.raises(AssertionError, match="memory: never refuses a fitting model: raised"):
        check_planner(make, MODELS, max_examples=100)


@pytest.mark.parametrize(
    "make",
    [
        lambda: greedy(MemoryBudgetPlanner)(SIZES, budget=10),
        lambda: greedy(PlacementPlanner)(SIZES, DEVICES),
        lambda: greedy(PlacementPlanner)(SIZES, DEVICES, split=False),
    ],
    ids=["one budget", "devices", "devices without split"],
)
def test_a_planner_evicting_one_too_many_is_caught(make: Callable[[], SwapPlanner]) -> None:
    with pytest.raises(AssertionError, match="memory: minimal eviction: evicts"):
        check_planner(make, MODELS, max_examples=100)


# ------------------------------------------------------------ one state


def test_memory_violations_name_each_rule() -> None:
    # c (6) beside a and b (8) needs 4 more of the budget 10: evicting a or b is enough.
    greedy_planner = greedy(MemoryBudgetPlanner)(SIZES, budget=10)
    assert memory_violations(one_budget(), "c", ["a", "b"]) == []
    assert memory_violations(greedy_planner, "c", ["a", "b"]) == [
        "memory: minimal eviction: evicts ['a', 'b'] for 'c' (size 6), but "
        "'a' could stay (4 + 6 of budget 10); 'b' could stay (4 + 6 of budget 10)"
    ]
    assert memory_violations(greedy_planner, "d", ["a", "b", "d"]) == []
    refuser = refusing(MemoryBudgetPlanner)(SIZES, budget=10)
    assert memory_violations(refuser, "c", ["a", "b"]) == [
        "memory: never refuses a fitting model: raised ConfigError: no room for 'c', "
        "yet 'c' (size 6) fits the budget 10"
    ]

    class EvictsAlways(MemoryBudgetPlanner):
        def eviction_for(self, target: str, running: Sequence[str]) -> tuple[str, ...]:
            return tuple(m for m in running if m != target)

    assert memory_violations(EvictsAlways(SIZES, budget=10), "d", ["a"]) == [
        "memory: minimal eviction: evicts ['a'], but 'd' (size 2) fits beside every "
        "running model: 4 + 2 of budget 10"
    ]
    assert memory_violations(EvictsAlways(SIZES, budget=10), "a", ["a", "d"]) == [
        "memory: minimal eviction: evicts ['d'], but 'a' runs"
    ]


def test_memory_violations_on_devices_use_the_planners_free_room() -> None:
    planner = placement()
    planner.on_swap_start("a", [])  # on device 1, the least room that fits: 2 left
    planner.on_swap_start("c", ["a"])  # on device 0: 3 left
    assert (planner.placement_of("a"), planner.placement_of("c")) == ({"1": 4.0}, {"0": 5.0})
    assert memory_violations(planner, "b", ["a", "c"]) == []  # b (4) spreads over both
    extra = greedy(PlacementPlanner)({**SIZES, "c": 5}, DEVICES, split=False)
    extra.on_swap_start("a", [])
    extra.on_swap_start("c", ["a"])
    # Unsplit, b (4) must evict a (the older) or c, not both.
    assert memory_violations(extra, "b", ["a", "c"]) == [
        "memory: minimal eviction: evicts ['a', 'c'] for 'b' (size 4), but "
        "'a' could stay (free room beside ['a'] is {'0': 8, '1': 2}); "
        "'c' could stay (free room beside ['c'] is {'0': 3, '1': 6})"
    ]


def test_budget_violations_on_devices_name_the_device_and_the_model() -> None:
    planner = PilesOnOne()
    for target in ("a", "b"):
        planner.on_swap_start(target, [])
    assert budget_violations(planner, ["a"]) == []
    assert budget_violations(planner, ["a", "b"]) == [
        "memory: within budget: device '0' holds 8 ('a', 'b'), over its budget 6"
    ]

    class Misplaced(PilesOnOne):
        def placement_of(self, model: str) -> Mapping[str, float]:
            return {"0": 1.0, "9": 1.0}

    assert budget_violations(Misplaced(), ["a"]) == [
        "memory: within budget: 'a' is placed on {'0': 1, '9': 1}, not its size 4 on known devices"
    ]


def test_planners_without_sizes_are_outside_the_memory_rules() -> None:
    class NoSizes(SwapPlanner):
        def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
            return [m for m in running if m != target]

    assert memory_violations(NoSizes(), "a", ["b"]) == []
    assert budget_violations(NoSizes(), ["a", "b"]) == []
    # A model without a size is left to the contract's "no exception" rule.
    assert memory_violations(one_budget(), "zz", ["a"]) == []
