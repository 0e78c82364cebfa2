"""MemoryBudgetPlanner: budget semantics, the exact cheapest-evict search, its tie-break."""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Mapping, Sequence
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swapcore.errors import ConfigError
from swapcore.planners.lru import MaxLoadedPlanner
from swapcore.planners.memory import MemoryBudgetPlanner
from swapcore.testing.planner_checks import check_planner

# --------------------------------------------------------------------------- oracle


def exact(value: float) -> Fraction:
    return Fraction(value) if isinstance(value, int) else Fraction(repr(value))


def oracle(
    sizes: Mapping[str, float],
    budget: float,
    costs: Mapping[str, int],
    target: str,
    running: Sequence[str],
    recency: Mapping[str, tuple[float, int]],
) -> tuple[str, ...]:
    """Brute force over every subset of running, written from the documented rule.

    ``recency`` maps served models to (clock value, call position); others
    were never served. Among the cheapest feasible evict sets, walk the
    running models from most to least recently used: the first model on
    which two sets differ must be spared (the set without it wins).
    """
    others = [m for m in dict.fromkeys(running) if m != target]
    if target in running:
        return ()
    position = {m: i for i, m in enumerate(others)}

    def age(model: str) -> tuple[int, float, int]:
        if model in recency:
            return (1, *recency[model])
        return (0, 0.0, position[model])

    newest_first = sorted(others, key=age, reverse=True)
    best: tuple[int, tuple[bool, ...]] | None = None
    answer: frozenset[str] = frozenset()
    for r in range(len(others) + 1):
        for evict in itertools.combinations(others, r):
            kept = [m for m in others if m not in evict]
            if sum(exact(sizes[m]) for m in [*kept, target]) > exact(budget):
                continue
            key = (sum(costs.get(m, 1) for m in evict), tuple(m in evict for m in newest_first))
            if best is None or key < best:
                best, answer = key, frozenset(evict)
    assert best is not None
    return tuple(m for m in others if m in answer)


POOL = [f"m{i}" for i in range(8)]


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[dict[str, float], float, dict[str, int], str, list[str], list[tuple[str, float]]]:
    """Sizes in tenths, a budget >= every size, costs 1-3, a target, <= 7 running, serves."""
    sizes = {m: draw(st.integers(1, 60)) / 10 for m in POOL}
    budget = draw(st.integers(int(max(sizes.values()) * 10), 200)) / 10
    costs = {m: draw(st.integers(1, 3)) for m in POOL}
    target = draw(st.sampled_from(POOL))
    running = draw(st.lists(st.sampled_from(POOL), max_size=7, unique=True))
    if draw(st.booleans()):  # usually not already running
        running = [m for m in running if m != target]
    served = draw(st.lists(st.sampled_from(running), unique=True)) if running else []
    serves = [(m, float(draw(st.integers(0, 3)))) for m in served]  # equal clocks are likely
    return sizes, budget, costs, target, running, serves


# --------------------------------------------------------------------------- properties


@given(scenarios())
def test_matches_brute_force_oracle(
    scenario: tuple[
        dict[str, float], float, dict[str, int], str, list[str], list[tuple[str, float]]
    ],
) -> None:
    sizes, budget, costs, target, running, serves = scenario
    planner = MemoryBudgetPlanner(sizes, budget, evict_costs=costs)
    recency: dict[str, tuple[float, int]] = {}
    for position, (model, now) in enumerate(serves):
        planner.on_serve(model, now)
        recency[model] = (now, position)

    evict = planner.eviction_for(target, running)

    assert evict == oracle(sizes, budget, costs, target, running, recency)
    assert target not in evict
    assert list(evict) == [m for m in running if m in evict]  # running's order
    if target in running:
        assert evict == ()
        return
    kept = [m for m in running if m not in evict and m != target]
    assert sum(exact(sizes[m]) for m in [*kept, target]) <= exact(budget)
    # Minimal: sparing any one evicted model would overflow the budget.
    for spared in evict:
        total = sum(exact(sizes[m]) for m in [*kept, spared, target])
        assert total > exact(budget)


@given(
    n=st.integers(1, 5),
    target=st.sampled_from(POOL),
    running=st.lists(st.sampled_from(POOL), max_size=8, unique=True),
    serves=st.lists(st.tuples(st.sampled_from(POOL), st.integers(0, 4)), max_size=12),
)
def test_unit_sizes_are_exactly_max_loaded(
    n: int, target: str, running: list[str], serves: list[tuple[str, int]]
) -> None:
    """With size 1 and cost 1 everywhere, a budget of n is MaxLoadedPlanner(n)."""
    memory = MemoryBudgetPlanner(dict.fromkeys(POOL, 1), n)
    lru = MaxLoadedPlanner(n)
    for model, now in serves:
        memory.on_serve(model, now)
        lru.on_serve(model, now)
    assert memory.eviction_for(target, running) == lru.eviction_for(target, running)


def test_matches_oracle_on_larger_running_sets() -> None:
    rng = random.Random(7)
    models = [f"m{i}" for i in range(14)]
    for _ in range(5):
        sizes = {m: rng.randint(1, 40) / 4 for m in models}
        costs = {m: rng.randint(1, 4) for m in models}
        budget = 30.0
        planner = MemoryBudgetPlanner(sizes, budget, evict_costs=costs)
        running = models[1:13]
        recency: dict[str, tuple[float, int]] = {}
        for position, model in enumerate(rng.sample(running, 8)):
            now = float(rng.randint(0, 5))
            planner.on_serve(model, now)
            recency[model] = (now, position)
        expected = oracle(sizes, budget, costs, models[0], running, recency)
        assert planner.eviction_for(models[0], running) == expected


def test_twenty_running_models_solve_exactly() -> None:
    """Unit costs and equal sizes: the k least recently used go, whatever the order."""
    models = [f"m{i:02}" for i in range(21)]
    planner = MemoryBudgetPlanner(dict.fromkeys(models, 2.5), 30)
    running = models[1:]
    for now, model in enumerate(reversed(running)):  # m20 oldest ... m01 newest
        planner.on_serve(model, float(now))
    # 20 * 2.5 + 2.5 = 52.5 > 30: 9 must go (12 * 2.5 = 30 stay, target included).
    assert planner.eviction_for("m00", running) == tuple(models[12:])


def test_honours_the_planner_contract() -> None:
    sizes = {"a": 4, "b": 8, "c": 12, "d": 16, "e": 2.5}
    check_planner(lambda: MemoryBudgetPlanner(sizes, 24, evict_costs={"d": 3}), sizes)


# --------------------------------------------------------------------------- behaviour


def test_evicts_nothing_when_target_fits() -> None:
    planner = MemoryBudgetPlanner({"a": 8, "b": 8, "c": 8}, 24)
    assert planner.eviction_for("c", ["a", "b"]) == ()


def test_evicts_nothing_when_target_already_running() -> None:
    planner = MemoryBudgetPlanner({"a": 20, "b": 20}, 24)
    assert planner.eviction_for("a", ["a", "b"]) == ()


def test_sizes_compare_as_the_decimals_they_print_as() -> None:
    # In binary floats 0.1 + 0.2 > 0.3; a user reading the config expects a fit.
    planner = MemoryBudgetPlanner({"a": 0.1, "b": 0.2, "c": 0.3}, 0.3)
    assert planner.eviction_for("b", ["a"]) == ()
    assert planner.eviction_for("c", ["a", "b"]) == ("a", "b")


def test_infinite_budget_never_evicts() -> None:
    planner = MemoryBudgetPlanner({"a": 1e6, "b": 1e6}, math.inf)
    assert planner.eviction_for("a", ["b"]) == ()


def test_prefers_cheapest_set_over_fewest_models() -> None:
    sizes = {"big": 10, "s1": 5, "s2": 5, "t": 10}
    planner = MemoryBudgetPlanner(sizes, 20, evict_costs={"big": 5})
    assert planner.eviction_for("t", ["big", "s1", "s2"]) == ("s1", "s2")
    planner = MemoryBudgetPlanner(sizes, 20)
    assert planner.eviction_for("t", ["big", "s1", "s2"]) == ("big",)


def test_equal_cost_evicts_least_recently_used() -> None:
    planner = MemoryBudgetPlanner(dict.fromkeys("abct", 8), 24)
    planner.on_serve("b", 1.0)
    planner.on_serve("a", 2.0)
    planner.on_serve("c", 3.0)
    assert planner.eviction_for("t", ["a", "b", "c"]) == ("b",)


def test_tie_break_spares_the_most_recently_used_model() -> None:
    # Equal cost 2: {a, d} (a is the oldest) or {b}. The newest model on which they
    # differ is d, so {b} goes: the order spares the newest, it does not hunt the oldest.
    sizes = {"a": 5, "b": 10, "c": 5, "d": 5, "t": 10}
    planner = MemoryBudgetPlanner(sizes, 25, evict_costs={"b": 2, "c": 5})
    for now, model in enumerate("abcd"):
        planner.on_serve(model, float(now))
    assert planner.eviction_for("t", ["a", "b", "c", "d"]) == ("b",)
    # need 9: {a, b}, {a, c}, {a, d}, {b, d} and {c, d} all cost 2; sparing d leaves
    # {a, b} and {a, c}; sparing c next leaves {a, b}.
    sizes = {"a": 6, "b": 4, "c": 3, "d": 6, "t": 9}
    planner = MemoryBudgetPlanner(sizes, 19)
    for now, model in enumerate("abcd"):
        planner.on_serve(model, float(now))
    assert planner.eviction_for("t", ["d", "c", "b", "a"]) == ("b", "a")


def test_never_served_are_oldest_and_tie_by_running_order() -> None:
    planner = MemoryBudgetPlanner(dict.fromkeys("abct", 8), 24)
    planner.on_serve("a", 0.0)
    assert planner.eviction_for("t", ["a", "c", "b"]) == ("c",)
    assert planner.eviction_for("t", ["a", "b", "c"]) == ("b",)


def test_equal_clock_values_order_by_call() -> None:
    planner = MemoryBudgetPlanner(dict.fromkeys("abt", 8), 16)
    planner.on_serve("b", 5.0)
    planner.on_serve("a", 5.0)
    assert planner.eviction_for("t", ["a", "b"]) == ("b",)


def test_an_earlier_clock_value_does_not_make_a_model_older() -> None:
    planner = MemoryBudgetPlanner(dict.fromkeys("abt", 8), 16)
    planner.on_serve("a", 5.0)
    planner.on_serve("b", 3.0)
    planner.on_serve("a", 1.0)
    assert planner.last_used("a") == 5.0
    assert planner.eviction_for("t", ["a", "b"]) == ("b",)


def test_swap_start_counts_as_a_use_of_the_target() -> None:
    planner = MemoryBudgetPlanner(dict.fromkeys("abc", 8), 16)
    planner.on_serve("a", 1.0)
    planner.on_serve("b", 2.0)
    planner.on_swap_start("c", ["a", "b"])  # evicts a; c is now the newest
    assert planner.last_used("c") == 2.0
    assert planner.eviction_for("a", ["b", "c"]) == ("b",)


def test_eviction_is_pure_given_recorded_recency() -> None:
    planner = MemoryBudgetPlanner(dict.fromkeys("abc", 8), 16)
    first = planner.eviction_for("c", ["a", "b"])
    assert planner.eviction_for("c", ["a", "b"]) == first
    assert planner.last_used("c") is None


def test_duplicates_in_running_count_once() -> None:
    planner = MemoryBudgetPlanner(dict.fromkeys("abt", 8), 16)
    assert planner.eviction_for("t", ["a", "a", "b"]) == ("a",)


def test_on_swap_start_logs_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    planner = MemoryBudgetPlanner({"a": 8, "b": 12, "t": 10}, 24, evict_costs={"a": 2})
    with caplog.at_level(logging.INFO, logger="swapcore.memory"):
        planner.on_swap_start("t", ["a", "b"])
    assert [r.name for r in caplog.records] == ["swapcore.memory"]
    assert caplog.records[0].levelno == logging.INFO
    assert caplog.records[0].getMessage() == (
        "swap to 't' (size 10): evict 'b' (cost 1); loaded 20 -> 18 of budget 24"
    )


def test_query_time_unknown_model_names_it() -> None:
    planner = MemoryBudgetPlanner({"a": 8}, 16)
    with pytest.raises(ConfigError, match="no size for model 'x'"):
        planner.eviction_for("x", ["a"])
    with pytest.raises(ConfigError, match="no size for model 'y'"):
        planner.eviction_for("a", ["y"])
    with pytest.raises(ConfigError, match="no size for model 'z'"):
        planner.check_models(["a", "z"])
    planner.check_models(["a"])


def test_read_only_views() -> None:
    planner = MemoryBudgetPlanner({"a": 8, "b": 4.5}, 16, evict_costs={"b": 3})
    assert dict(planner.sizes) == {"a": 8, "b": 4.5}
    assert dict(planner.evict_costs) == {"a": 1, "b": 3}
    assert planner.budget == 16
    assert "budget=16" in repr(planner)


def test_on_serve_rejects_a_non_finite_clock() -> None:
    planner = MemoryBudgetPlanner({"a": 8}, 16)
    with pytest.raises(ValueError, match="finite"):
        planner.on_serve("a", math.nan)


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("sizes", "budget", "costs", "match"),
    [
        ({"a": 8}, -1, None, "budget must be a number >= 0"),
        ({"a": 8}, math.nan, None, "budget must be a number >= 0"),
        ({"a": 8}, True, None, "budget must be a number >= 0"),
        ({"a": 8}, "24", None, "budget must be a number >= 0"),
        ([("a", 8)], 24, None, "sizes must be a mapping"),
        ({"": 8}, 24, None, "sizes keys must be non-empty"),
        ({"a": 0}, 24, None, r"sizes\['a'\] must be a finite number > 0"),
        ({"a": -2.5}, 24, None, r"sizes\['a'\] must be a finite number > 0"),
        ({"a": math.nan}, 24, None, r"sizes\['a'\] must be a finite number > 0"),
        ({"a": math.inf}, math.inf, None, r"sizes\['a'\] must be a finite number > 0"),
        ({"a": "8"}, 24, None, r"sizes\['a'\] must be a finite number > 0"),
        ({"a": 8, "big": 24.5}, 24, None, r"sizes\['big'\] = 24.5 exceeds the budget 24"),
        ({"a": 8}, 0, None, r"sizes\['a'\] = 8 exceeds the budget 0"),
        ({"a": 8}, 24, {"x": 1}, r"evict_costs\['x'\]: unknown model"),
        ({"a": 8}, 24, {"a": 0}, r"evict_costs\['a'\] must be an int > 0"),
        ({"a": 8}, 24, {"a": -1}, r"evict_costs\['a'\] must be an int > 0"),
        ({"a": 8}, 24, {"a": 1.5}, r"evict_costs\['a'\] must be an int > 0"),
        ({"a": 8}, 24, {"a": True}, r"evict_costs\['a'\] must be an int > 0"),
        ({"a": 8}, 24, [("a", 1)], "evict_costs must be a mapping"),
    ],
)
def test_construction_errors_name_the_key(
    sizes: object, budget: object, costs: object, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        MemoryBudgetPlanner(sizes, budget, evict_costs=costs)  # type: ignore[arg-type]


def test_a_model_exactly_the_budget_is_allowed() -> None:
    planner = MemoryBudgetPlanner({"a": 24, "b": 0.5}, 24.0)
    assert planner.eviction_for("a", ["b"]) == ("b",)
    assert MemoryBudgetPlanner({}, 0).sizes == {}  # an empty planner is valid
