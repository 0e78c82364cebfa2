"""The simulator's sleeping tier: sleeps, wakes, host budget, counts and swap seconds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from swapcore import GroupPlanner, MemoryBudgetPlanner
from swapcore.planners.residency import SleepRules
from swapcore.sim import ModelProfile, format_comparison, format_report, simulate
from swapcore.sim.schedulers import cost_aware, fifo
from swapcore.sim.traces import Arrival


def alternating(prompts: int, models: str, gap: float = 60.0) -> list[Arrival]:
    return [Arrival(at=i * gap, model=models[i % len(models)], service=5.0) for i in range(prompts)]


def one_at_a_time(models: str) -> GroupPlanner:
    return GroupPlanner({}, models=list(models))


def test_vllm_shape_sleep_costs_a_third_of_stop() -> None:
    """Two models, six alternating prompts, cold 30 s, wake 1.5 s (vLLM's experiment)."""
    trace = alternating(6, "ab")
    stop = simulate(
        trace, planner=lambda: one_at_a_time("ab"), models={m: ModelProfile(30) for m in "ab"}
    )
    sleep = simulate(
        trace,
        planner=lambda: one_at_a_time("ab"),
        models={m: ModelProfile(30, wake=1.5) for m in "ab"},
    )
    assert (stop.total_loads, stop.total_wakes, stop.total_stops) == (6, 0, 5)
    assert (sleep.total_loads, sleep.total_wakes, sleep.total_sleeps) == (2, 4, 5)
    assert stop.swap_seconds == 180.0 and sleep.swap_seconds == 66.0
    assert sleep.swap_seconds <= 0.4 * stop.swap_seconds
    assert sleep.waits.p50 == 1.5 and stop.waits.p50 == 30.0
    assert [i.wake for i in sleep.timeline] == [False, False, True, True, True, True]
    assert sleep.usage["a"].wakes == 2 and sleep.usage["a"].sleeps == 3
    table = format_report(sleep)
    assert "66.0 s in 2 cold loads, 4 wakes, 0 stops, 5 sleeps" in table
    side = format_comparison({"stop": stop, "sleep": sleep})
    assert "swap seconds" in side and "wakes" in side


def test_a_host_budget_for_one_sleeper_stops_the_second() -> None:
    trace = alternating(3, "abc")  # a, b, c: a sleeps for b; b cannot sleep beside a
    models = {m: ModelProfile(10, wake=1, host_size=8) for m in "abc"}
    report = simulate(trace, planner=lambda: one_at_a_time("abc"), models=models, host_budget=10)
    assert (report.usage["a"].sleeps, report.usage["b"].sleeps, report.usage["b"].stops) == (
        1,
        0,
        1,
    )
    assert report.peak_host_memory == 8


def test_models_that_cannot_sleep_stop_and_planner_rules_win() -> None:
    trace = alternating(4, "ab")
    models = {"a": ModelProfile(10, wake=1), "b": ModelProfile(10)}
    report = simulate(trace, planner=lambda: one_at_a_time("ab"), models=models)
    assert report.usage["a"].sleeps == 2 and report.usage["b"].stops == 1

    def no_sleep() -> GroupPlanner:
        planner = one_at_a_time("ab")
        planner.sleep_rules = SleepRules()  # rules given: nobody may sleep
        return planner

    stopped = simulate(trace, planner=no_sleep, models=models)
    assert stopped.total_sleeps == 0 and stopped.total_loads == 4


def test_cost_aware_prices_a_sleeping_model_by_its_wake() -> None:
    # b asleep (cheap), c stopped (dear); one request each, queued behind a's.
    models = {
        "a": ModelProfile(5, wake=1),
        "b": ModelProfile(30, wake=1),
        "c": ModelProfile(30),
    }
    trace = [
        Arrival(at=0, model="b", service=1),  # b loads cold, is served
        Arrival(at=40, model="a", service=20),  # b sleeps; a is busy until 65
        Arrival(at=50, model="c", service=1),  # queued: c is stopped (30 s)
        Arrival(at=51, model="b", service=1),  # queued: b is asleep (1 s)
    ]
    report = simulate(
        trace, planner=lambda: one_at_a_time("abc"), models=models, scheduler=cost_aware()
    )
    order = [r.model for r in sorted(report.requests, key=lambda r: r.started or 0)]
    assert order == ["b", "a", "b", "c"]  # the wake of b goes before the cold load of c
    fifo_order = simulate(
        trace, planner=lambda: one_at_a_time("abc"), models=models, scheduler=fifo()
    )
    assert [r.model for r in sorted(fifo_order.requests, key=lambda r: r.started or 0)] == [
        "b",
        "a",
        "c",
        "b",
    ]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=3, max_size=5),
    host=st.lists(st.integers(0, 8), min_size=5, max_size=5),
    budget=st.integers(0, 12),
    host_budget=st.integers(0, 16),
    picks=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 30)), min_size=1, max_size=25),
)
def test_never_over_either_budget(
    sizes: list[int],
    host: list[int],
    budget: int,
    host_budget: int,
    picks: list[tuple[int, int]],
) -> None:
    names = "abcde"[: len(sizes)]
    budget = max(budget, max(sizes))
    models = {
        m: ModelProfile(2 + i, size=sizes[i], wake=0.5, sleep=0.2, host_size=host[i])
        for i, m in enumerate(names)
    }
    trace = sorted(
        (Arrival(at=float(t), model=names[i % len(names)], service=1.0) for i, t in picks),
        key=lambda a: a.at,
    )

    def planner() -> MemoryBudgetPlanner:
        return MemoryBudgetPlanner({m: sizes[i] for i, m in enumerate(names)}, budget=budget)

    report = simulate(trace, planner=planner, models=models, host_budget=host_budget)
    assert report.peak_memory is not None and report.peak_memory <= budget
    assert (report.peak_host_memory or 0) <= host_budget
    assert report.served == len(trace)
    # Every wake follows a sleep of the same model; no model is served asleep
    # (the engine raises if a grant finds it so).
    for usage in report.usage.values():
        assert usage.wakes <= usage.sleeps
