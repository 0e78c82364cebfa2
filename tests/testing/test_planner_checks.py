"""check_planner / planner_violations: pass for honest planners, name the rule broken otherwise."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import pytest

from swapcore import Group, GroupPlanner, SwapPlanner
from swapcore.planners.residency import Eviction
from swapcore.testing.planner_checks import check_planner, planner_violations

MODELS = ["a", "b", "c", "d"]


class EvictAll(SwapPlanner):
    """Honest: one model at a time."""

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return [m for m in running if m != target]


class ReturnsTarget(SwapPlanner):
    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return list(running)


class ReturnsStranger(SwapPlanner):
    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return [m for m in MODELS if m != target and m not in running][:1]


class Nondeterministic(SwapPlanner):
    def __init__(self) -> None:
        self._calls = itertools.count()

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        others = [m for m in running if m != target]
        return others if next(self._calls) % 2 else others[:0]


class Logs(SwapPlanner):
    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        logging.getLogger("my.planner").debug("thinking about %s", target)
        return ()


class Duplicates(SwapPlanner):
    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        others = [m for m in running if m != target]
        return others + others[:1]


class Mutates(SwapPlanner):
    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        assert isinstance(running, list)
        running.sort(reverse=True)
        return ()


class Raises(SwapPlanner):
    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        if len(running) > 2:
            raise KeyError(target)
        return ()


class ReturnsSet(SwapPlanner):
    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return {m for m in running if m != target}  # type: ignore[return-value]


class ReusesBuffer(SwapPlanner):
    def __init__(self) -> None:
        self._buffer: list[str] = []

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        self._buffer.clear()
        self._buffer.extend(m for m in running if m != target)
        return self._buffer


class HookRaises(EvictAll):
    def on_swap_start(self, target: str, running: Sequence[str]) -> None:
        raise RuntimeError("boom")


# --- planner_violations ----------------------------------------------------------------


def test_honest_call_has_no_violations() -> None:
    assert planner_violations(EvictAll(), "a", ["b", "a"]) == []
    assert planner_violations(GroupPlanner({}), "a", []) == []


@pytest.mark.parametrize(
    ("planner", "running", "expected"),
    [
        (ReturnsTarget(), ["a", "b"], "never the target: the result contains the target 'a'"),
        (ReturnsStranger(), ["b"], "subset of running: named ['c'], which are not running"),
        (
            Nondeterministic(),
            ["b"],
            "deterministic: returned [], then ['b'] for the same arguments",
        ),
        (
            Logs(),
            [],
            "no logging: logged 2 record(s) in 2 calls, "
            "first: 'DEBUG my.planner: thinking about a'",
        ),
        (Duplicates(), ["b", "c"], "no duplicates: named ['b'] more than once"),
        (Mutates(), ["b", "c"], "no mutation: changed running from ['b', 'c'] to ['c', 'b']"),
        (Raises(), ["b", "c", "d"], "no exception: raised KeyError: 'a'"),
        (
            ReturnsSet(),
            ["b"],
            "returns a sequence: returned set {'b'}, not a sequence of model ids",
        ),
    ],
)
def test_each_rule_has_its_message(planner: SwapPlanner, running: list[str], expected: str) -> None:
    assert planner_violations(planner, "a", running) == [expected]


def test_a_reused_result_list_passes_one_call_but_not_check_planner() -> None:
    # One call cannot see it: asked twice the same question, the buffer holds the
    # same answer. A sequence of calls can, and that is what the scheduler does.
    assert planner_violations(ReusesBuffer(), "a", ["b"]) == []
    with pytest.raises(AssertionError) as info:
        check_planner(ReusesBuffer, MODELS, max_examples=100)
    assert "  - stable result: the result [" in str(info.value)
    assert "after this call" in str(info.value)


def test_logging_state_is_restored() -> None:
    root = logging.getLogger()
    level, disabled = root.level, root.manager.disable
    logging.disable(logging.INFO)
    try:
        assert planner_violations(Logs(), "a", [])[0].startswith("no logging:")
        assert root.manager.disable == logging.INFO
        assert root.level == level
        assert not any(type(h).__name__ == "_Recorder" for h in root.handlers)
    finally:
        logging.disable(disabled)


# --- check_planner ---------------------------------------------------------------------


def test_check_planner_passes_for_group_planners() -> None:
    check_planner(GroupPlanner({}), MODELS)
    check_planner(
        GroupPlanner(
            {
                "chat": Group(["a", "b"]),
                "emb": Group(["e"], swap=False, exclusive=False, persistent=True),
                "side": Group(["c"], exclusive=False),
            },
            models=["d"],
        ),
        [*MODELS, "e", "unknown"],
        max_examples=100,
    )


def test_check_planner_accepts_a_factory() -> None:
    check_planner(EvictAll, MODELS, max_examples=50)


@pytest.mark.parametrize(
    ("planner", "rule"),
    [
        (ReturnsTarget, "never the target"),
        (ReturnsStranger, "subset of running"),
        (Nondeterministic, "deterministic"),
        (Logs, "no logging"),
        (Duplicates, "no duplicates"),
        (Mutates, "no mutation"),
        (Raises, "no exception"),
        (ReturnsSet, "returns a sequence"),
    ],
)
def test_check_planner_fails_broken_planners(planner: type[SwapPlanner], rule: str) -> None:
    with pytest.raises(AssertionError) as info:
        check_planner(planner(), MODELS, max_examples=100)
    message = str(info.value)
    assert f"{planner.__name__} breaks the SwapPlanner contract in eviction_for(" in message
    assert f"  - {rule}: " in message


def test_check_planner_failure_names_the_inputs() -> None:
    with pytest.raises(AssertionError) as info:
        check_planner(ReturnsTarget(), ["a"], max_examples=50)
    assert str(info.value) == (
        "ReturnsTarget breaks the SwapPlanner contract in eviction_for('a', ['a']):\n"
        "  - never the target: the result contains the target 'a'"
    )


def test_check_planner_reports_a_raising_hook() -> None:
    with pytest.raises(
        AssertionError, match=r"HookRaises\.on_swap_start raised RuntimeError: boom"
    ):
        check_planner(HookRaises, MODELS, max_examples=50)
    check_planner(HookRaises, MODELS, max_examples=20, exercise_hooks=False)


@pytest.mark.parametrize("models", [[], "abc"])
def test_check_planner_needs_model_ids(models: list[str]) -> None:
    with pytest.raises(ValueError, match="model"):
        check_planner(EvictAll(), models)


# ------------------------------------------------------------ sleep or stop


def test_check_planner_accepts_shipped_planners_with_sleep_rules() -> None:
    from swapcore import GroupPlanner, MemoryBudgetPlanner
    from swapcore.planners.residency import SleepRules

    rules = SleepRules(
        levels={"a": 1, "b": 2, "c": 1}, host_memory={"a": 4, "b": 4, "c": 6}, host_budget=8
    )

    def groups() -> GroupPlanner:
        planner = GroupPlanner({}, models=["a", "b", "c", "d"])
        planner.sleep_rules = rules
        return planner

    def memory() -> MemoryBudgetPlanner:
        planner = MemoryBudgetPlanner({"a": 4, "b": 4, "c": 6, "d": 2}, budget=10)
        planner.sleep_rules = rules
        return planner

    check_planner(groups, ["a", "b", "c", "d"], max_examples=60)
    check_planner(memory, ["a", "b", "c", "d"], max_examples=60)


class GreedySleeper(EvictAll):
    """Puts every evicted model to sleep, whatever the host budget says."""

    def residency_for(self, target: str, evict: Sequence[str], sleeping: Sequence[str]) -> Eviction:
        return Eviction(sleep=tuple(evict))


def test_check_planner_finds_a_planner_over_the_host_budget() -> None:
    from swapcore.planners.residency import SleepRules

    def make() -> GreedySleeper:
        planner = GreedySleeper()
        planner.sleep_rules = SleepRules(
            levels=dict.fromkeys("abc", 1), host_memory=dict.fromkeys("abc", 5), host_budget=5
        )
        return planner

    with pytest.raises(AssertionError, match="residency: host budget"):
        check_planner(make, ["a", "b", "c"], max_examples=200)


def test_residency_violations_name_each_rule() -> None:
    from swapcore.planners.residency import SleepRules
    from swapcore.testing.planner_checks import residency_violations

    class Lossy(EvictAll):
        def residency_for(
            self, target: str, evict: Sequence[str], sleeping: Sequence[str]
        ) -> Eviction:
            return Eviction(sleep=("a",))

    class Raising(EvictAll):
        def residency_for(
            self, target: str, evict: Sequence[str], sleeping: Sequence[str]
        ) -> Eviction:
            raise KeyError(target)

    lossy = Lossy()
    lossy.sleep_rules = SleepRules(levels={"b": 1})
    found = residency_violations(lossy, "c", ["a", "b"], [])
    assert any(v.startswith("residency: covers the eviction") for v in found)
    assert any(v.startswith("residency: sleeps only sleepers: ['a']") for v in found)
    assert residency_violations(Raising(), "c", ["a"], []) == [
        "residency: no exception: raised KeyError: 'c'"
    ]
    assert residency_violations(EvictAll(), "c", ["a"], []) == []
