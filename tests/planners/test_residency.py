"""Sleep or stop: SleepRules.split and SwapPlanner.residency_for."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swapcore import ConfigError, GroupPlanner
from swapcore.planners.base import SwapPlanner
from swapcore.planners.residency import Eviction, SleepRules, plan_residency


class EvictAll(SwapPlanner):
    """A planner written before sleeping existed: it only names models."""

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return [m for m in running if m != target]


def test_a_planner_without_rules_stops_everything() -> None:
    planner = EvictAll()
    assert planner.residency_for("c", ["a", "b"], []) == Eviction(stop=("a", "b"))


def test_models_configured_to_sleep_sleep_the_others_stop() -> None:
    planner = EvictAll()
    planner.sleep_rules = SleepRules(levels={"a": 1})
    assert planner.residency_for("c", ["a", "b"], []) == Eviction(sleep=("a",), stop=("b",))


def test_a_host_budget_that_fits_one_sleeper_stops_the_second() -> None:
    rules = SleepRules(
        levels={"a": 1, "b": 1, "c": 1}, host_memory=dict.fromkeys("abc", 8), host_budget=10
    )
    # a goes to sleep for b; then b is evicted for c while a sleeps: b is stopped.
    assert rules.split("b", ["a"], []) == Eviction(sleep=("a",))
    assert rules.split("c", ["b"], ["a"]) == Eviction(stop=("b",))
    # Waking a: a is still asleep while b leaves, so b does not fit beside it.
    assert rules.split("a", ["b"], ["a"]) == Eviction(stop=("b",))
    # With room for two, it does.
    roomy = SleepRules(levels=rules.levels, host_memory=rules.host_memory, host_budget=16)
    assert roomy.split("a", ["b"], ["a"]) == Eviction(sleep=("b",))


def test_level_two_holds_no_host_memory() -> None:
    rules = SleepRules(levels={"a": 2, "b": 2}, host_memory={"a": 8, "b": 8}, host_budget=0)
    assert rules.split("c", ["a", "b"], []) == Eviction(sleep=("a", "b"))
    assert rules.held_by(["a", "b"]) == 0


def test_sizes_add_up_exactly() -> None:
    rules = SleepRules(levels={"a": 1, "b": 1}, host_memory={"a": 0.1, "b": 0.2}, host_budget=0.3)
    assert rules.split("c", ["a", "b"], []) == Eviction(sleep=("a", "b"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"levels": {"a": 3}}, "sleep level of model 'a' must be 1 or 2"),
        ({"levels": {"a": True}}, "sleep level of model 'a' must be 1 or 2"),
        ({"host_memory": {"a": -1}}, "host memory of model 'a' must be a number >= 0"),
        ({"host_memory": {"a": float("inf")}}, "host memory of model 'a' must be finite"),
        ({"host_budget": -5}, "host memory budget must be a number >= 0"),
    ],
)
def test_bad_rules_name_the_model(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SleepRules(**kwargs)  # type: ignore[arg-type]


_MODELS = ["a", "b", "c", "d", "e"]


@given(
    levels=st.dictionaries(st.sampled_from(_MODELS), st.sampled_from([1, 2])),
    sizes=st.dictionaries(st.sampled_from(_MODELS), st.integers(0, 20)),
    budget=st.none() | st.integers(0, 40),
    target=st.sampled_from(_MODELS),
    data=st.data(),
)
def test_split_never_overfills_the_host_and_keeps_every_eviction(
    levels: dict[str, int],
    sizes: dict[str, int],
    budget: int | None,
    target: str,
    data: st.DataObject,
) -> None:
    rules = SleepRules(levels=levels, host_memory=sizes, host_budget=budget)
    others = [m for m in _MODELS if m != target]
    evict = data.draw(st.lists(st.sampled_from(others), unique=True))
    rest = [m for m in others if m not in evict]
    asleep_now = data.draw(st.lists(st.sampled_from(rest), unique=True)) if rest else []
    # Only a state the rules allowed: the sleepers already within budget.
    if budget is not None and rules.held_by(asleep_now) > budget:
        return
    eviction = rules.split(target, evict, asleep_now)
    assert sorted(eviction.models) == sorted(evict)
    assert all(m in levels for m in eviction.sleep)
    after = list(asleep_now) + list(eviction.sleep)  # the target is still asleep meanwhile
    if budget is not None:
        assert rules.held_by(after) <= budget
    # Nothing that could sleep was stopped for no reason.
    for model in eviction.stop:
        if model in levels:
            assert budget is not None
            assert rules.held_by([*after, model]) > budget


def test_shipped_planners_use_the_rules_they_are_given() -> None:
    from swapcore import Group

    planner = GroupPlanner({"g": Group(members=("a", "b"))})
    assert planner.residency_for("b", planner.eviction_for("b", ["a"]), []) == Eviction(stop=("a",))
    planner.sleep_rules = SleepRules(levels={"a": 1})
    assert planner.residency_for("b", planner.eviction_for("b", ["a"]), []) == Eviction(
        sleep=("a",)
    )


class Raising(EvictAll):
    def residency_for(self, target: str, evict: Sequence[str], sleeping: Sequence[str]) -> Eviction:
        raise RuntimeError("boom")


class Wrong(EvictAll):
    def residency_for(self, target: str, evict: Sequence[str], sleeping: Sequence[str]) -> Eviction:
        return Eviction(sleep=("zzz",))


def test_plan_residency_contains_planner_faults(caplog: pytest.LogCaptureFixture) -> None:
    everyone = lambda model: True  # noqa: E731
    assert plan_residency(Raising(), "c", ["a", "b"], [], everyone) == Eviction(stop=("a", "b"))
    assert "Raising.residency_for('c', ['a', 'b']) raised" in caplog.text
    assert plan_residency(Wrong(), "c", ["a"], [], everyone) == Eviction(stop=("a",))
    assert "Wrong.residency_for('c', ['a']) returned" in caplog.text
    assert plan_residency(Raising(), "c", [], [], everyone) == Eviction()


def test_plan_residency_stops_what_cannot_sleep() -> None:
    planner = EvictAll()
    planner.sleep_rules = SleepRules(levels={"a": 1, "b": 1})
    only_b = lambda model: model == "b"  # noqa: E731
    assert plan_residency(planner, "c", ["a", "b"], [], only_b) == Eviction(
        sleep=("b",), stop=("a",)
    )
