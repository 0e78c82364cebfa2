"""MaxLoadedPlanner: any n models at once, least recently used evicted first."""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swapcore.errors import ConfigError
from swapcore.planners.lru import MaxLoadedPlanner
from swapcore.testing.planner_checks import check_planner

POOL = [f"m{i}" for i in range(7)]


@pytest.mark.parametrize("n", [0, -1, True, 1.5, "2", None])
def test_n_must_be_a_positive_int(n: object) -> None:
    with pytest.raises(ConfigError, match=r"n must be an int >= 1"):
        MaxLoadedPlanner(n)  # type: ignore[arg-type]


def test_below_n_evicts_nothing() -> None:
    planner = MaxLoadedPlanner(3)
    assert planner.eviction_for("c", []) == ()
    assert planner.eviction_for("c", ["a", "b"]) == ()
    assert planner.n == 3


def test_at_n_evicts_exactly_one() -> None:
    planner = MaxLoadedPlanner(2)
    planner.on_serve("a", 1.0)
    planner.on_serve("b", 2.0)
    assert planner.eviction_for("c", ["a", "b"]) == ("a",)
    planner.on_serve("a", 3.0)
    assert planner.eviction_for("c", ["a", "b"]) == ("b",)


def test_above_n_evicts_down_to_n_minus_one() -> None:
    planner = MaxLoadedPlanner(2)
    for now, model in enumerate(["d", "b", "a", "c"]):
        planner.on_serve(model, float(now))
    # 4 running, n = 2: keep 1 (the newest, c), evict 3 in running's order.
    assert planner.eviction_for("t", ["a", "b", "c", "d"]) == ("a", "b", "d")


def test_n_one_runs_one_model_at_a_time() -> None:
    planner = MaxLoadedPlanner(1)
    assert planner.eviction_for("t", ["a", "b"]) == ("a", "b")
    assert planner.eviction_for("t", []) == ()


def test_target_already_running_evicts_nothing() -> None:
    planner = MaxLoadedPlanner(1)
    assert planner.eviction_for("a", ["a", "b", "c"]) == ()


def test_duplicates_in_running_count_once() -> None:
    planner = MaxLoadedPlanner(2)
    assert planner.eviction_for("t", ["a", "a", "b"]) == ("a",)


def test_never_served_are_oldest_and_tie_by_running_order() -> None:
    planner = MaxLoadedPlanner(3)
    planner.on_serve("a", 0.0)
    assert planner.eviction_for("t", ["a", "c", "b"]) == ("c",)
    assert planner.eviction_for("t", ["b", "a", "c"]) == ("b",)


def test_equal_clock_values_order_by_call() -> None:
    planner = MaxLoadedPlanner(2)
    planner.on_serve("b", 5.0)
    planner.on_serve("a", 5.0)
    assert planner.eviction_for("t", ["a", "b"]) == ("b",)
    planner.on_serve("b", 5.0)
    assert planner.eviction_for("t", ["a", "b"]) == ("a",)


def test_an_earlier_clock_value_does_not_make_a_model_older() -> None:
    planner = MaxLoadedPlanner(2)
    planner.on_serve("a", 5.0)
    planner.on_serve("b", 3.0)
    planner.on_serve("a", 1.0)
    assert planner.last_used("a") == 5.0
    assert planner.eviction_for("t", ["a", "b"]) == ("b",)


def test_swap_start_makes_the_target_most_recent() -> None:
    planner = MaxLoadedPlanner(2)
    planner.on_serve("a", 1.0)
    planner.on_serve("b", 2.0)
    planner.on_swap_start("c", ["a", "b"])
    assert planner.last_used("c") == 2.0
    # c is loading and has not served yet, but it is not the first to go.
    assert planner.eviction_for("d", ["b", "c"]) == ("b",)
    assert planner.last_used("never") is None


def test_swap_start_before_any_clock_is_still_newest() -> None:
    planner = MaxLoadedPlanner(2)
    planner.on_swap_start("a", [])
    assert planner.last_used("a") == -math.inf
    assert planner.eviction_for("b", ["a", "c"]) == ("c",)
    planner.on_serve("c", 0.0)  # any clock value is later than "before any clock"
    assert planner.eviction_for("b", ["a", "c"]) == ("a",)


def test_eviction_is_silent_and_swap_start_logs_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    planner = MaxLoadedPlanner(1)
    with caplog.at_level(logging.DEBUG, logger="swapcore.lru"):
        planner.eviction_for("b", ["a"])
        assert caplog.records == []
        planner.on_swap_start("b", ["a"])
    assert [r.getMessage() for r in caplog.records] == ["swap to 'b' (max 1 loaded): evict 'a'"]


def test_on_serve_rejects_a_non_finite_clock() -> None:
    planner = MaxLoadedPlanner(1)
    for bad in (math.nan, math.inf, "1"):
        with pytest.raises(ValueError, match="finite"):
            planner.on_serve("a", bad)  # type: ignore[arg-type]


def test_repr() -> None:
    assert repr(MaxLoadedPlanner(3)) == "MaxLoadedPlanner(3)"


def test_honours_the_planner_contract() -> None:
    check_planner(lambda: MaxLoadedPlanner(2), POOL[:5])


@given(
    n=st.integers(1, 6),
    target=st.sampled_from(POOL),
    running=st.lists(st.sampled_from(POOL), max_size=7, unique=True),
    serves=st.lists(st.tuples(st.sampled_from(POOL), st.integers(0, 3)), max_size=10),
)
def test_evicts_the_least_recently_used_excess(
    n: int, target: str, running: list[str], serves: list[tuple[str, int]]
) -> None:
    planner = MaxLoadedPlanner(n)
    last: dict[str, tuple[int, int]] = {}
    for position, (model, now) in enumerate(serves):
        planner.on_serve(model, now)
        if (now, position) > last.get(model, (-1, -1)):
            last[model] = (now, position)

    evict = planner.eviction_for(target, running)

    if target in running or len(running) < n:
        assert evict == ()
        return
    assert len(evict) == len(running) - n + 1
    assert list(evict) == [m for m in running if m in evict]

    def age(model: str) -> tuple[int, int, int]:
        if model in last:
            return (1, *last[model])
        return (0, running.index(model), 0)

    oldest = sorted(running, key=age)[: len(evict)]
    assert set(evict) == set(oldest)
