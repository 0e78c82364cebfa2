"""The testing kit's stateful machine and strategies: they work, and they find bugs."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from swapcore import ConfigError, GroupPlanner, PolicyError, SwapPlanner
from swapcore.scheduling.effects import SchedulerFactory
from swapcore.scheduling.fifo import FIFOScheduler
from swapcore.scheduling.requests import Request
from swapcore.sim import simulate
from swapcore.sim.traces import Arrival
from swapcore.testing.stateful import RouterStateMachine, mutual_evictions
from swapcore.testing.strategies import group_configs, request_traces

MODELS = ("a", "b", "c", "d")
FIND = settings(max_examples=50, database=None, deadline=None)  # `find`, whatever the profile

# Finding a planted bug: no database, a fixed seed, no time spent shrinking.
HUNT = settings(
    max_examples=300,
    stateful_step_count=30,
    database=None,
    derandomize=True,
    phases=[Phase.generate],
    report_multiple_bugs=False,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class OneAtATime(RouterStateMachine):
    """The simplest correct machine: no groups, one model at a time."""

    models = ("a", "b", "c")

    def make_planner(self) -> SwapPlanner:
        return GroupPlanner({}, models=self.models)

    def check_coresidency(self, running: frozenset[str]) -> None:
        assert len(running) <= 1, f"{sorted(running)} run together"


class EvictsNothing(SwapPlanner):
    """A broken planner: never evicts, so everything ends up loaded."""

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return ()


class BrokenPlannerMachine(OneAtATime):
    def make_planner(self) -> SwapPlanner:
        return EvictsNothing()


class IgnoresCancel(FIFOScheduler):
    """A broken scheduler: keeps cancelled requests (and their admissions)."""

    def on_cancel(self, request: Request) -> None:
        pass


class BrokenSchedulerMachine(OneAtATime):
    def make_scheduler(self) -> SchedulerFactory | None:
        return functools.partial(IgnoresCancel, default_concurrency_limit=4)


class NoPlanner(RouterStateMachine):
    pass


class LetsFaultsEscape(FIFOScheduler):
    """A broken scheduler: a planner fault escapes instead of failing its request."""

    def _policy_failed(self, request: Request, error: PolicyError) -> None:
        raise error


class FaultyOneAtATime(OneAtATime):
    planner_faults = True
    lease_timeout = 30.0


class EscapingFaultsMachine(FaultyOneAtATime):
    def make_scheduler(self) -> SchedulerFactory | None:
        return functools.partial(LetsFaultsEscape, default_concurrency_limit=4)


# -- the machine ------------------------------------------------------------------


def test_a_correct_router_passes() -> None:
    run_state_machine_as_test(
        OneAtATime, settings=settings(OneAtATime.TestCase.settings, max_examples=30)
    )


def test_a_planner_that_never_evicts_is_caught() -> None:
    with pytest.raises(AssertionError, match="run together"):
        run_state_machine_as_test(BrokenPlannerMachine, settings=HUNT)


def test_a_scheduler_that_ignores_cancellations_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"admitted|unknown request"):
        run_state_machine_as_test(BrokenSchedulerMachine, settings=HUNT)


def test_planner_faults_and_expiring_leases_keep_a_correct_router_correct() -> None:
    run_state_machine_as_test(
        FaultyOneAtATime, settings=settings(FaultyOneAtATime.TestCase.settings, max_examples=30)
    )


def test_a_scheduler_that_lets_planner_faults_escape_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"LetsFaultsEscape\.\w+\(.*raised PolicyError"):
        run_state_machine_as_test(EscapingFaultsMachine, settings=HUNT)


def test_make_planner_is_required() -> None:
    with pytest.raises(NotImplementedError, match="make_planner"):
        run_state_machine_as_test(NoPlanner, settings=HUNT)


def test_subclasses_get_default_settings_and_may_override_them() -> None:
    assert OneAtATime.TestCase.settings.stateful_step_count == OneAtATime.step_count
    assert OneAtATime.TestCase.settings.deadline is None

    @settings(max_examples=3, stateful_step_count=7)
    class Tuned(OneAtATime):
        pass

    assert Tuned.TestCase.settings.max_examples == 3
    assert Tuned.TestCase.settings.stateful_step_count == 7


def test_mutual_evictions_names_the_pairs_that_cannot_coexist() -> None:
    planner = GroupPlanner(
        {
            "big": {"members": ["x", "y"]},
            "side": {"members": ["s"], "exclusive": False},
            "pinned": {"members": ["p"], "persistent": True},
        },
        models=["z"],
    )
    assert mutual_evictions(planner, ["x", "y", "s", "p"]) == [("x", "y")]
    assert mutual_evictions(planner, ["x", "s", "p"]) == []  # s joins; p is persistent
    assert mutual_evictions(planner, ["x", "z"]) == [("x", "z")]  # two exclusive groups


# -- strategies -------------------------------------------------------------------


@given(group_configs(MODELS))
def test_group_configs_are_valid_partitions(config: dict[str, object]) -> None:
    planner = GroupPlanner(config, models=MODELS)  # raises ConfigError if invalid
    seen: set[str] = set()
    for name, group in planner.groups.items():
        assert group.members or name == "(default)", "no empty groups but a declared default"
        assert not seen & set(group.members)
        seen |= set(group.members)
    assert seen == set(MODELS)


def test_group_configs_shrink_to_no_groups_and_reach_every_flag() -> None:
    assert find(group_configs(MODELS), lambda c: True, settings=FIND) == {}
    for flag in ("swap", "exclusive", "persistent"):
        found = find(
            group_configs(MODELS, declare_default=False),
            lambda c, flag=flag: any(not getattr(g, flag) for g in c.values()),
            settings=FIND,
        )
        assert len(found) == 1
    with pytest.raises(ValueError):
        group_configs(MODELS, max_groups=-1).example()


def test_group_configs_without_ungrouped_models_put_every_model_in_a_group() -> None:
    config = find(group_configs(MODELS, ungrouped=False), lambda c: len(c) >= 2, settings=FIND)
    assert sorted(m for g in config.values() for m in g.members) == sorted(MODELS)
    assert "(default)" not in config or not config["(default)"].members


@given(request_traces(MODELS, max_size=20, priorities=[0, 5]))
def test_request_traces_are_sorted_valid_arrivals(trace: list[Arrival]) -> None:
    assert len(trace) <= 20
    assert all(isinstance(a, Arrival) for a in trace)
    assert [a.at for a in trace] == sorted(a.at for a in trace)
    assert {a.model for a in trace} <= set(MODELS)
    assert {a.priority for a in trace} <= {None, 0, 5}
    assert all(0 <= a.service <= 2.0 for a in trace)


@given(
    request_traces(
        st.sampled_from(["a", "zzz"]), min_size=3, max_size=5, max_gap=0.0, max_service=0.0
    )
)
def test_request_traces_take_a_model_strategy_and_bounds(trace: list[Arrival]) -> None:
    assert 3 <= len(trace) <= 5
    assert {a.model for a in trace} <= {"a", "zzz"}  # unknown models mixed in
    assert all(a.at == 0.0 and a.service == 0.0 for a in trace)  # simultaneous, instant


def test_request_traces_validate_their_bounds() -> None:
    for bad in ({"min_size": 3, "max_size": 2}, {"max_gap": -1.0}, {"max_service": -1.0}):
        with pytest.raises(ValueError):
            request_traces(MODELS, **bad)  # type: ignore[arg-type]


@settings(max_examples=25)
@given(request_traces(MODELS, max_size=15))
def test_request_traces_feed_the_simulator(trace: list[Arrival]) -> None:
    report = simulate(
        trace, planner=GroupPlanner({}, models=MODELS), models=dict.fromkeys(MODELS, 1.0)
    )
    assert len(report.requests) == len(trace)


def test_group_configs_reject_nothing_they_generate() -> None:
    # Every drawn config, with or without an explicit "(default)" group, builds.
    @given(group_configs(MODELS, max_groups=6))
    def build(config: dict[str, object]) -> None:
        try:
            GroupPlanner(config, models=MODELS)
        except ConfigError as exc:  # pragma: no cover - the failure message
            raise AssertionError(f"{config}: {exc}") from exc

    build()


def test_subclasses_of_a_tuned_machine_inherit_its_settings_and_may_retune() -> None:
    @settings(max_examples=3, stateful_step_count=7)
    class Tuned(OneAtATime):
        pass

    class Child(Tuned):
        pass

    @settings(max_examples=5)
    class Retuned(Tuned):
        pass

    assert Child.TestCase.settings.max_examples == 3
    assert Child.TestCase.settings.stateful_step_count == 7
    assert Retuned.TestCase.settings.max_examples == 5
