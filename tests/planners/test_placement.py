"""PlacementPlanner: models on several devices, never over any device's budget."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swapcore import ConfigError
from swapcore.planners.placement import PlacementPlanner
from swapcore.testing.planner_checks import check_planner


def load(planner: PlacementPlanner, running: list[str], target: str) -> list[str]:
    """What a router does: evict, record, run; returns the models evicted."""
    evict = list(planner.eviction_for(target, running))
    planner.on_swap_start(target, running)
    for model in evict:
        running.remove(model)
    if target not in running:
        running.append(target)
    return evict


def test_fit_on_one_device_first_then_spread() -> None:
    planner = PlacementPlanner({"a": 10, "b": 10, "c": 14}, {"0": 16, "1": 16})
    running: list[str] = []
    assert load(planner, running, "a") == []
    assert planner.placement_of("a") == {"0": 10.0}
    assert load(planner, running, "b") == []
    assert planner.placement_of("b") == {"1": 10.0}  # a whole device, not a split
    # c (14) fits nowhere whole; 6 + 6 free is not enough: evict the older, a.
    assert load(planner, running, "c") == ["a"]
    assert planner.placement_of("c") == {"0": 14.0}
    assert planner.free(running) == {"0": Fraction(2), "1": Fraction(6)}


def test_a_model_spreads_only_when_it_must() -> None:
    planner = PlacementPlanner({"big": 20, "small": 4}, {"0": 12, "1": 12})
    running: list[str] = []
    load(planner, running, "small")
    assert load(planner, running, "big") == []  # 8 + 12 free: spread, no eviction
    assert planner.placement_of("big") == {"1": 12.0, "0": 8.0}
    no_split = PlacementPlanner({"a": 8, "b": 8}, {"0": 12, "1": 12}, split=False)
    running = []
    load(no_split, running, "a")
    assert load(no_split, running, "b") == [] and no_split.placement_of("b") == {"1": 8.0}


def test_evictions_follow_cost_then_recency() -> None:
    planner = PlacementPlanner({"a": 6, "b": 6, "c": 6, "d": 6}, {"0": 12}, evict_costs={"a": 3})
    running: list[str] = []
    load(planner, running, "a")
    load(planner, running, "b")
    planner.on_serve("a", 1.0)
    planner.on_serve("b", 2.0)
    assert load(planner, running, "c") == ["b"]  # a costs 3: b goes although newer
    planner.on_serve("c", 3.0)
    assert load(planner, running, "d") == ["c"]


@pytest.mark.parametrize(
    ("sizes", "devices", "kwargs", "message"),
    [
        ({"a": 30}, {"0": 12, "1": 12}, {}, "exceeds what all devices together can hold"),
        ({"a": 13}, {"0": 12, "1": 12}, {"split": False}, "exceeds what any one device"),
        ({"a": 0}, {"0": 12}, {}, r"sizes\['a'\] must be a finite number > 0"),
        ({"a": 1}, {}, {}, "devices must map at least one device"),
        ({"a": 1}, {"0": 12}, {"evict_costs": {"b": 1}}, "unknown model"),
    ],
)
def test_bad_configurations_name_the_key(
    sizes: dict[str, float], devices: dict[str, float], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        PlacementPlanner(sizes, devices, **kwargs)  # type: ignore[arg-type]


def test_it_honours_the_planner_contract() -> None:
    check_planner(
        lambda: PlacementPlanner({"a": 5, "b": 7, "c": 4, "d": 9}, {"0": 10, "1": 8}),
        ["a", "b", "c", "d"],
        max_examples=100,
    )


MODELS = "abcdef"


@settings(max_examples=250, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 20), min_size=3, max_size=6),
    budgets=st.lists(st.integers(4, 24), min_size=1, max_size=3),
    split=st.booleans(),
    costs=st.lists(st.integers(1, 3), min_size=6, max_size=6),
    requests=st.lists(st.integers(0, 5), min_size=40, max_size=40),
)
def test_no_device_over_budget_nothing_refused_evictions_minimal(
    sizes: list[int], budgets: list[int], split: bool, costs: list[int], requests: list[int]
) -> None:
    """At least 10,000 generated steps (250 examples of 40 requests)."""
    devices = {str(i): b for i, b in enumerate(budgets)}
    room = sum(budgets) if split else max(budgets)
    names = MODELS[: len(sizes)]
    table = {m: min(s, room) for m, s in zip(names, sizes, strict=False)}
    planner = PlacementPlanner(
        table, devices, split=split, evict_costs=dict(zip(names, costs, strict=False))
    )
    running: list[str] = []
    for step, pick in enumerate(requests):
        target = names[pick % len(names)]
        planned = list(planner.eviction_for(target, running))  # never raises
        # Minimal: keeping any one of the evicted models leaves no room for the target.
        for keep in planned:
            rest = [m for m in running if m == keep or m not in planned]
            assert not fits(table[target], planner.free(m for m in rest if m != target), split)
        evict = load(planner, running, target)
        assert evict == planned
        planner.on_serve(target, float(step))
        # No device is ever over its budget.
        used = {d: Fraction(0) for d in devices}
        for model in running:
            placement = planner.placement_of(model)
            assert sum(placement.values()) == pytest.approx(table[model])
            for device, share in placement.items():
                used[device] += Fraction(share)
        assert all(used[d] <= devices[d] for d in devices), (used, devices)


def fits(size: int, free: dict[str, Fraction], split: bool) -> bool:
    """The documented rule: whole on one device, or spread when splitting is allowed."""
    if any(room >= size for room in free.values()):
        return True
    return split and sum(room for room in free.values() if room > 0) >= size


def test_the_minimality_check_sees_a_needless_eviction() -> None:
    """What the property test means by minimal, on a case worked by hand."""
    planner = PlacementPlanner({"a": 4, "b": 4, "c": 8}, {"0": 8, "1": 8})
    running: list[str] = []
    load(planner, running, "a")
    load(planner, running, "b")
    # a and b share... a on 0 (best fit), b on 0 too (4 left on 0 is the tightest fit)
    assert planner.free(running) == {"0": Fraction(0), "1": Fraction(8)}
    assert load(planner, running, "c") == []  # device 1 is empty: nothing to evict
