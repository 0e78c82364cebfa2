"""PlacementPlanner: models on several devices, never over any device's budget."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swapcore import ConfigError
from swapcore.costs import SwapCosts
from swapcore.planners.placement import PlacementPlanner
from swapcore.planners.residency import Eviction, SleepRules
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
        assert_within_budgets(planner, running, table, devices)


def assert_within_budgets(
    planner: PlacementPlanner, running: list[str], sizes: dict[str, int], devices: dict[str, int]
) -> None:
    """Every running model placed in full, and no device over its budget."""
    used = dict.fromkeys(devices, Fraction(0))
    for model in running:
        placement = planner.placement_of(model)
        assert sum(placement.values()) == pytest.approx(sizes[model])
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


def test_equally_cheap_evictions_prefer_a_whole_device_to_recency() -> None:
    planner = PlacementPlanner({"a": 14, "b": 10, "c": 20}, {"0": 24, "1": 16})
    running: list[str] = []
    load(planner, running, "a")  # the tightest fit: device 1
    load(planner, running, "b")  # device 0
    # Evicting a (older) would leave c split 16 + 4; evicting b lets it fit device 0 whole.
    assert load(planner, running, "c") == ["b"]
    assert planner.placement_of("c") == {"0": 20.0}


def test_the_reason_names_the_need_the_room_and_the_choice() -> None:
    planner = PlacementPlanner(
        {"embed": 2, "chat": 10, "big": 14}, {"0": 16, "1": 12}, show_size="{:g} GiB".format
    )
    running: list[str] = []
    load(planner, running, "chat")  # device 1, the tightest fit
    assert planner.swap_reason("chat") == "needs 10 GiB; fits: 10 GiB on GPU 1"
    load(planner, running, "embed")
    assert planner.swap_reason("embed") == (
        "needs 2 GiB; fits beside the running models: 2 GiB on GPU 1"
    )
    load(planner, running, "big")  # 16 free on 0: no eviction
    assert planner.swap_reason("big") == (
        "needs 14 GiB; fits beside the running models: 14 GiB on GPU 0"
    )
    planner = PlacementPlanner({"embed": 6, "chat": 10, "big": 14}, {"0": 16, "1": 12}, split=False)
    running = []
    for model in ("chat", "embed"):
        load(planner, running, model)
    planner.on_serve("chat", 1.0)
    planner.on_serve("embed", 2.0)
    assert planner.explain("big", running) == (
        "needs 14 on one device; GPU 0 has 10 free after keeping embed, "
        "GPU 1 has 2 free after keeping chat; evicting embed makes room: 14 on GPU 0"
    )
    assert planner.explain("chat", running) == "already running"
    assert planner.swap_reason("never") == ""


def test_a_model_put_to_sleep_wakes_on_its_own_devices() -> None:
    planner = PlacementPlanner({"a": 8, "b": 8, "c": 8}, {"0": 8, "1": 8}, split=False)
    planner.sleep_rules = SleepRules(levels={"a": 1})
    running: list[str] = []
    load(planner, running, "a")
    load(planner, running, "b")
    assert planner.placement_of("a") == {"0": 8.0}
    evict = planner.eviction_for("c", running)
    assert evict == ("a",)
    planner.on_swap_start("c", running)
    assert planner.residency_for("c", evict, ()) == Eviction(sleep=("a",))
    running = ["b", "c"]  # c took device 0, where a sleeps
    assert planner.placement_of("c") == {"0": 8.0}
    # Device 1 would be as good for a fresh start, but a's server holds device 0.
    planner.on_serve("b", 1.0)
    planner.on_serve("c", 2.0)
    assert planner.eviction_for("a", running) == ("c",)
    load(planner, running, "a")
    assert planner.placement_of("a") == {"0": 8.0}


def test_measured_memory_replaces_the_given_size() -> None:
    costs = SwapCosts()
    planner = PlacementPlanner({"a": 10, "b": 10}, {"0": 24}, costs=costs)
    assert planner.eviction_for("b", ["a"]) == ()
    costs.record("a", "memory", 15)  # a really uses 15: a and b no longer fit together
    assert planner.sizes["a"] == 15
    assert planner.eviction_for("b", ["a"]) == ("a",)
    costs.record("b", "memory", 99)  # never beyond what the devices hold
    assert planner.sizes["b"] == 24


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 16), min_size=3, max_size=6),
    budgets=st.lists(st.integers(4, 16), min_size=1, max_size=3),
    split=st.booleans(),
    levels=st.lists(st.sampled_from([None, 1, 2]), min_size=6, max_size=6),
    host=st.lists(st.integers(0, 10), min_size=6, max_size=6),
    host_budget=st.integers(0, 20),
    requests=st.lists(st.integers(0, 5), min_size=50, max_size=50),
)
def test_with_sleepers_no_device_and_no_host_over_budget(
    sizes: list[int],
    budgets: list[int],
    split: bool,
    levels: list[int | None],
    host: list[int],
    host_budget: int,
    requests: list[int],
) -> None:
    """At least 10,000 generated steps (200 examples of 50 requests), sleeping models included.

    A model put to sleep holds host memory (the host budget bounds all
    sleepers) and no device memory; it wakes on the devices it slept on.
    """
    devices = {str(i): b for i, b in enumerate(budgets)}
    room = sum(budgets) if split else max(budgets)
    names = MODELS[: len(sizes)]
    table = {m: min(s, room) for m, s in zip(names, sizes, strict=False)}
    planner = PlacementPlanner(table, devices, split=split)
    rules = SleepRules(
        levels={m: lv for m, lv in zip(names, levels, strict=False) if lv is not None},
        host_memory=dict(zip(names, host, strict=False)),
        host_budget=host_budget,
    )
    planner.sleep_rules = rules
    running: list[str] = []
    sleeping: list[str] = []
    slept_on: dict[str, dict[str, float]] = {}
    for step, pick in enumerate(requests):
        target = names[pick % len(names)]
        if target in running:
            planner.on_serve(target, float(step))
            continue
        evict = list(planner.eviction_for(target, running))  # never raises
        before = {m: planner.placement_of(m) for m in evict}
        planner.on_swap_start(target, running)
        eviction = planner.residency_for(target, evict, sleeping)
        assert sorted(eviction.models) == sorted(evict)
        if target in sleeping:  # it wakes where it slept
            sleeping.remove(target)
            assert planner.placement_of(target) == slept_on.pop(target)
        for model in eviction.sleep:
            slept_on[model] = before[model]
        sleeping += eviction.sleep
        for model in evict:
            running.remove(model)
        running.append(target)
        planner.on_serve(target, float(step))
        assert_within_budgets(planner, running, table, devices)
        assert rules.held_by(sleeping) <= host_budget


def test_many_running_models_are_evicted_no_more_than_needed() -> None:
    """Past 16 running models the search is greedy, oldest first, then pruned."""
    sizes = {f"s{i}": 1 for i in range(17)} | {"big": 10, "new": 10}
    planner = PlacementPlanner(sizes, {"0": 27})
    running: list[str] = []
    for step, model in enumerate(["s0", "big", *(f"s{i}" for i in range(1, 17))]):
        load(planner, running, model)
        planner.on_serve(model, float(step))
    assert len(running) == 18  # 17 small ones and big: 27 of 27
    # Oldest first: s0 (1), then big (10) makes room; s0 need not go after all.
    assert load(planner, running, "new") == ["big"]
    assert_within_budgets(planner, running, sizes, {"0": 27})
