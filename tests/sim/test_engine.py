"""The simulator engine: the real scheduler and planner on a virtual clock."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swapcore import (
    ConfigError,
    Effects,
    FIFOScheduler,
    Group,
    GroupPlanner,
    MaxLoadedPlanner,
    MemoryBudgetPlanner,
    Request,
    RoutingError,
    SwapPlanner,
)
from swapcore.sim import (
    Arrival,
    LoadInterval,
    ModelProfile,
    SimScheduler,
    arrival_order,
    cost_aware,
    dominant,
    fifo,
    poisson_mix,
    round_robin,
    simulate,
)
from swapcore.sim.report import NOT_FOUND, OUTCOMES, REJECTED, SERVED


def one_at_a_time() -> SwapPlanner:
    """One model at a time (a fresh planner per run: it records recency)."""
    return MaxLoadedPlanner(1)


def abc_x4() -> list[Arrival]:
    """llama-swap's collation example: A B C repeated 4 times, all while A loads."""
    return round_robin(["A", "B", "C"], rounds=4, interval=1.0, service=1.0)


MODELS_10S = {"A": 10.0, "B": 10.0, "C": 10.0}


# --------------------------------------------------------------------------- collation


def test_fifo_collates_abc_x4_into_three_loads() -> None:
    report = simulate(abc_x4(), planner=one_at_a_time, models=MODELS_10S)
    assert report.total_loads == 3
    assert dict(report.loads_per_model) == {"A": 1, "B": 1, "C": 1}
    assert [i.model for i in report.timeline] == ["A", "B", "C"]
    assert report.scheduler == "fifo"
    assert report.planner == "MaxLoadedPlanner(1)"


def test_arrival_order_needs_twelve_loads_for_abc_x4() -> None:
    report = simulate(abc_x4(), planner=one_at_a_time, models=MODELS_10S, scheduler=arrival_order())
    assert report.total_loads == 12
    assert [i.model for i in report.timeline] == ["A", "B", "C"] * 4
    assert report.served == 12


def test_cost_aware_runs_and_gets_load_times_from_the_profiles() -> None:
    seen: dict[str, object] = {}
    recipe = cost_aware()

    def spy(planner: SwapPlanner, effects: Effects, **options: object) -> object:
        seen.update(options)
        return recipe.factory(planner, effects, **options)

    spying = SimScheduler("cost-aware", spy, load_times=True)
    report = simulate(abc_x4(), planner=one_at_a_time, models=MODELS_10S, scheduler=spying)
    assert seen["load_times"] == {"A": 10.0, "B": 10.0, "C": 10.0}
    assert report.served == 12
    assert report.total_loads == 3


# --------------------------------------------------------------------------- hand-computed


def test_waits_and_timeline_on_a_hand_computed_trace() -> None:
    # a loads 5 s and stops in 2 s; b loads 3 s. One model at a time.
    #  t=0  a arrives: swap to a (0 -> 5)
    #  t=1  b arrives: would evict a's swap target -> queued
    #  t=2  a arrives: joins the swap to a
    #  t=5  a ready: requests 0 (4 s) and 2 (1 s) granted; b blocked (a busy)
    #  t=9  a idle: swap to b: stop a (9 -> 11), load b (11 -> 14); request 1 at 14
    trace = [Arrival(0, "a", 4), Arrival(1, "b", 2), Arrival(2, "a", 1)]
    models = {"a": ModelProfile(load=5, stop=2), "b": ModelProfile(load=3)}
    report = simulate(trace, planner=MaxLoadedPlanner(1), models=models)
    assert [(r.started, r.finished, r.wait) for r in report.requests] == [
        (5.0, 9.0, 5.0),
        (14.0, 16.0, 13.0),
        (5.0, 6.0, 3.0),
    ]
    assert list(report.timeline) == [
        LoadInterval("a", 0.0, 5.0, 11.0, 9.0),
        LoadInterval("b", 11.0, 14.0, 16.0, None),
    ]
    assert report.makespan == 16.0
    assert report.waits.max == 13.0
    assert report.waits.p50 == 5.0
    assert report.waits_by_model["a"].max == 5.0
    a, b = report.usage["a"], report.usage["b"]
    assert (a.loads, a.loading, a.ready, a.busy, a.idle) == (1, 5.0, 4.0, 4.0, 0.0)
    assert (b.loads, b.loading, b.ready, b.busy, b.idle) == (1, 3.0, 2.0, 2.0, 0.0)
    assert report.timeline[0].loading == 5.0


def test_idle_time_counts_ready_seconds_without_requests() -> None:
    trace = [Arrival(0, "a", 1), Arrival(10, "a", 1)]
    report = simulate(trace, planner=MaxLoadedPlanner(1), models={"a": 2})
    usage = report.usage["a"]
    # ready from 2 to 11 (the end), busy 2-3 and 10-11
    assert (usage.ready, usage.busy, usage.idle) == (9.0, 2.0, 7.0)
    assert report.requests[1].wait == 0.0
    assert report.busy == {"a": 2.0}
    assert report.idle == {"a": 7.0}


def test_completions_come_before_arrivals_at_equal_times() -> None:
    # a serves until 10; b (queued at 5) starts its swap when a's serve ends at
    # 10, before a's second arrival at 10 can take the fast path.
    trace = [Arrival(0, "a", 10), Arrival(5, "b", 1), Arrival(10, "a", 1)]
    report = simulate(trace, planner=MaxLoadedPlanner(1), models={"a": 0, "b": 4})
    b, second_a = report.requests[1], report.requests[2]
    assert b.started == 14.0
    assert second_a.started == 15.0  # b served 14-15, then a reloads (0 s)
    assert report.total_loads == 3


def test_the_trace_is_sorted_by_time_and_records_follow_that_order() -> None:
    trace = [Arrival(5, "a", 1), Arrival(0, "a", 1)]
    report = simulate(trace, planner=MaxLoadedPlanner(1), models={"a": 1})
    assert [r.arrived for r in report.requests] == [0.0, 5.0]
    assert [r.id for r in report.requests] == [0, 1]


def test_empty_trace() -> None:
    report = simulate([], planner=MaxLoadedPlanner(1), models={"a": 1})
    assert report.total_loads == 0
    assert report.makespan == 0.0
    assert report.waits.count == 0
    assert report.requests == ()


# --------------------------------------------------------------------------- determinism


def test_same_inputs_give_the_same_report() -> None:
    trace = poisson_mix({"a": 0.5, "b": 0.2, "c": 0.1}, duration=600, service=2, seed=3)
    models = {"a": 5, "b": ModelProfile(8, stop=1), "c": 12}
    first = simulate(
        trace, planner=lambda: MaxLoadedPlanner(2), models=models, scheduler=fifo(max_wait=20)
    )
    second = simulate(
        trace, planner=MaxLoadedPlanner(2), models=models, scheduler=fifo(max_wait=20)
    )
    assert first == second
    assert first.total_loads > 10


def test_a_recency_planner_instance_runs_once() -> None:
    planner = MaxLoadedPlanner(1)
    simulate(abc_x4(), planner=planner, models=MODELS_10S)
    assert planner.last_used("A") is not None  # the run recorded its serves
    with pytest.raises(ConfigError, match="already ran a simulation"):
        simulate(abc_x4(), planner=planner, models=MODELS_10S)


def test_a_run_that_fails_to_start_does_not_use_up_the_planner() -> None:
    planner = MaxLoadedPlanner(1)
    with pytest.raises(ConfigError):
        simulate(abc_x4(), planner=planner, models=MODELS_10S, scheduler=fifo(max_wait=-1))
    assert simulate(abc_x4(), planner=planner, models=MODELS_10S).total_loads == 3


def test_a_stateless_planner_instance_may_run_again() -> None:
    planner = GroupPlanner({}, models=["A", "B", "C"])
    first = simulate(abc_x4(), planner=planner, models=MODELS_10S)
    assert simulate(abc_x4(), planner=planner, models=MODELS_10S) == first


def test_a_planner_factory_gets_a_fresh_planner_per_run() -> None:
    built: list[SwapPlanner] = []

    def factory() -> SwapPlanner:
        built.append(MaxLoadedPlanner(1))
        return built[-1]

    simulate(abc_x4(), planner=factory, models=MODELS_10S)
    simulate(abc_x4(), planner=factory, models=MODELS_10S)
    assert len(built) == 2 and built[0] is not built[1]


# --------------------------------------------------------------------------- co-residency


def test_parallel_loads_with_groups_that_allow_co_residency() -> None:
    planner = GroupPlanner(
        {"left": Group(["a"], exclusive=False), "right": Group(["b"], exclusive=False)}
    )
    trace = [Arrival(0, "a", 2), Arrival(0, "b", 2), Arrival(20, "a", 1), Arrival(20, "b", 1)]
    report = simulate(trace, planner=planner, models={"a": 10, "b": 6})
    assert [(i.model, i.start, i.ready) for i in report.timeline] == [
        ("a", 0.0, 10.0),
        ("b", 0.0, 6.0),
    ]
    assert [r.wait for r in report.requests] == [10.0, 6.0, 0.0, 0.0]
    assert report.total_loads == 2


def test_max_loaded_two_keeps_two_models_and_evicts_the_least_recently_used() -> None:
    trace = [Arrival(0, "a", 1), Arrival(0, "b", 1), Arrival(10, "a", 1), Arrival(20, "c", 1)]
    report = simulate(trace, planner=MaxLoadedPlanner(2), models={"a": 2, "b": 2, "c": 2})
    assert report.total_loads == 3
    evicted = [i.model for i in report.timeline if i.stop_began is not None]
    assert evicted == ["b"]  # a was used at 10, b last at 2


def test_memory_budget_planner_with_sizes() -> None:
    sizes = {"a": 8, "b": 8, "c": 16}
    models = {m: ModelProfile(load=4, stop=1, size=s) for m, s in sizes.items()}
    trace = [Arrival(0, "a", 2), Arrival(0, "b", 2), Arrival(10, "c", 2), Arrival(20, "a", 1)]
    report = simulate(trace, planner=MemoryBudgetPlanner(sizes, 16), models=models)
    assert report.peak_memory == 16
    assert report.total_loads == 4
    # c needs the whole budget: a and b stop in parallel (10 -> 11), c loads 11 -> 15
    c = next(i for i in report.timeline if i.model == "c")
    assert (c.start, c.ready) == (11.0, 15.0)
    assert report.requests[2].wait == 5.0


def test_peak_memory_is_none_without_sizes() -> None:
    report = simulate(abc_x4(), planner=one_at_a_time, models=MODELS_10S)
    assert report.peak_memory is None


# --------------------------------------------------------------------------- max_wait


DOMINANT = {
    "dominant_model": "a",
    "rare_models": ["b", "c"],
    "duration": 1800.0,
    "dominant_rate": 2.0,
    "rare_every": 60.0,
    "service": 4.0,
    "seed": 1,
}
DOMINANT_MODELS = {"a": ModelProfile(8), "b": ModelProfile(15), "c": ModelProfile(30)}


def test_without_max_wait_the_dominant_stream_starves_the_rare_models() -> None:
    trace = dominant(**DOMINANT)  # type: ignore[arg-type]
    report = simulate(
        trace,
        planner=MaxLoadedPlanner(1),
        models=DOMINANT_MODELS,
        scheduler=fifo(default_concurrency_limit=1000),
    )
    assert report.waits_by_model["c"].max > 1000  # waits for most of the trace
    assert report.outcomes[REJECTED] == 0


@pytest.mark.parametrize("max_wait", [10.0, 30.0, 60.0])
def test_max_wait_bounds_the_rare_models_wait(max_wait: float) -> None:
    trace = dominant(**DOMINANT)  # type: ignore[arg-type]
    report = simulate(
        trace,
        planner=MaxLoadedPlanner(1),
        models=DOMINANT_MODELS,
        scheduler=fifo(max_wait=max_wait, default_concurrency_limit=1000),
    )
    service = DOMINANT["service"]
    assert isinstance(service, float)
    for rare in ("b", "c"):
        bound = max_wait + service + DOMINANT_MODELS[rare].load
        assert report.waits_by_model[rare].max <= bound
    assert report.outcomes[SERVED] == len(trace)


def test_max_wait_ticks_reach_the_scheduler_at_its_deadlines() -> None:
    ticks: list[float] = []

    class Ticking(FIFOScheduler):
        def on_tick(self) -> None:
            ticks.append(self._clock())
            super().on_tick()

    trace = [Arrival(0, "a", 100), Arrival(1, "b", 1)]
    simulate(
        trace,
        planner=MaxLoadedPlanner(1),
        models={"a": 1, "b": 1},
        scheduler=functools.partial(Ticking, max_wait=5),
    )
    assert ticks == [6.0]  # b arrived at 1, starved from 6


# --------------------------------------------------------------------------- outcomes


def test_concurrency_limit_rejections_and_unknown_models_are_recorded() -> None:
    trace = [Arrival(0, "a", 5) for _ in range(5)] + [Arrival(1, "ghost", 1)]
    report = simulate(
        trace,
        planner=MaxLoadedPlanner(1),
        models={"a": 1},
        scheduler=fifo(default_concurrency_limit=2),
    )
    assert [r.outcome for r in report.requests] == [SERVED] * 2 + [REJECTED] * 3 + [NOT_FOUND]
    rejected = report.requests[2]
    assert rejected.started is None and rejected.finished == 0.0 and rejected.wait == 0.0
    assert rejected.error is not None and rejected.error.startswith("ConcurrencyLimitExceeded")
    assert report.outcomes == {
        "served": 2,
        "rejected": 3,
        "not_found": 1,
        "failed": 0,
        "abandoned": 0,
        "unfinished": 0,
    }
    assert report.rejected == 3
    assert report.waits.count == 2
    assert report.waits_by_model["ghost"].count == 0


arrivals = st.builds(
    Arrival,
    at=st.integers(0, 40).map(float),
    model=st.sampled_from(["a", "b", "c", "x"]),
    service=st.integers(0, 6).map(float),
    priority=st.none() | st.integers(-1, 1),
)


@given(
    trace=st.lists(arrivals, max_size=40),
    n=st.integers(1, 3),
    limit=st.integers(1, 4),
    max_wait=st.none() | st.integers(1, 20).map(float),
    which=st.sampled_from(["fifo", "arrival", "cost-aware"]),
)
def test_every_arrival_yields_exactly_one_record(
    trace: list[Arrival], n: int, limit: int, max_wait: float | None, which: str
) -> None:
    models = {"a": ModelProfile(3, stop=1), "b": ModelProfile(0), "c": ModelProfile(5, stop=2)}
    recipe = {"fifo": fifo, "arrival": arrival_order, "cost-aware": cost_aware}[which]()
    options: dict[str, object] = {"default_concurrency_limit": limit}
    if which != "arrival":
        options["max_wait"] = max_wait
    report = simulate(
        trace, planner=MaxLoadedPlanner(n), models=models, scheduler=recipe.with_options(**options)
    )
    ordered = sorted(trace, key=lambda a: a.at)
    assert len(report.requests) == len(trace)
    assert [(r.model, r.arrived, r.service) for r in report.requests] == [
        (a.model, a.at, a.service) for a in ordered
    ]
    assert sum(report.outcomes.values()) == len(trace)
    assert report.outcomes["unfinished"] == 0
    for record in report.requests:
        assert record.outcome in OUTCOMES
        if record.outcome == SERVED:
            assert record.started is not None and record.started >= record.arrived
            assert record.finished == record.started + record.service
        if record.model == "x":
            assert record.outcome == NOT_FOUND
    assert report.total_loads == len(report.timeline)
    for interval in report.timeline:
        assert interval.start <= (interval.ready or interval.start) <= interval.end


# --------------------------------------------------------------------------- factories


def test_scheduler_factory_forms() -> None:
    trace = abc_x4()
    plain = simulate(trace, planner=one_at_a_time, models=MODELS_10S, scheduler=FIFOScheduler)
    partial = simulate(
        trace,
        planner=one_at_a_time,
        models=MODELS_10S,
        scheduler=functools.partial(FIFOScheduler, max_wait=100),
    )

    def custom(planner: SwapPlanner, effects: Effects, clock: Callable[[], float]) -> FIFOScheduler:
        return FIFOScheduler(planner, effects, clock=clock)

    lam = simulate(trace, planner=one_at_a_time, models=MODELS_10S, scheduler=custom)
    assert plain.total_loads == partial.total_loads == lam.total_loads == 3
    assert plain.scheduler == "FIFOScheduler"
    assert partial.scheduler == "FIFOScheduler(max_wait=100)"


def test_a_factory_without_clock_is_refused() -> None:
    def no_clock(planner: SwapPlanner, effects: Effects) -> FIFOScheduler:
        return FIFOScheduler(planner, effects)

    with pytest.raises(TypeError, match="clock="):
        simulate(abc_x4(), planner=one_at_a_time, models=MODELS_10S, scheduler=no_clock)


def test_sim_scheduler_labels() -> None:
    assert fifo().label == "fifo"
    assert fifo(max_wait=30.0).label == "fifo(max_wait=30)"
    assert fifo(max_wait=None).label == "fifo"
    assert fifo(priority={"a": 1}).label == "fifo"
    assert fifo().with_options(max_wait=2.5).label == "fifo(max_wait=2.5)"
    assert fifo().accepts("max_wait") and not arrival_order().accepts("max_wait")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"load": -1}, "ModelProfile.load"),
        ({"load": float("nan")}, "ModelProfile.load"),
        ({"load": 1, "stop": "2"}, "ModelProfile.stop"),
        ({"load": 1, "size": 0}, "ModelProfile.size"),
        ({"load": True}, "ModelProfile.load"),
    ],
)
def test_model_profile_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelProfile(**kwargs)  # type: ignore[arg-type]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="models\\['a'\\]"):
        simulate([], planner=one_at_a_time, models={"a": "slow"})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="models\\['a'\\]"):
        simulate([], planner=one_at_a_time, models={"a": -3})
    with pytest.raises(ConfigError, match="trace\\[0\\]"):
        simulate([("a", 1)], planner=one_at_a_time, models={"a": 1})  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="planner"):
        simulate([], planner="lru", models={"a": 1})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- a scheduler bug


class GrantsEverything:
    """A broken scheduler: grants every request at once, loaded or not."""

    def __init__(
        self, planner: SwapPlanner, effects: Effects, *, clock: Callable[[], float]
    ) -> None:
        self.effects = effects

    def on_request(self, request: Request) -> None:
        self.effects.grant_serve(request, request.model)

    def on_cancel(self, request: Request) -> None: ...
    def on_swap_done(self, model: str, error: BaseException | None) -> None: ...
    def on_serve_done(self, model: str) -> None: ...
    def on_unload(self, models: Collection[str]) -> None: ...
    def on_unload_done(self, models: Collection[str]) -> None: ...
    def on_shutdown(self, error: RoutingError) -> None: ...


class NeverServes(GrantsEverything):
    """A stalled scheduler: takes requests and does nothing."""

    def on_request(self, request: Request) -> None:
        pass


def test_the_engine_catches_a_grant_on_a_model_that_is_not_ready() -> None:
    with pytest.raises(RuntimeError, match="which is stopped"):
        simulate(abc_x4(), planner=one_at_a_time, models=MODELS_10S, scheduler=GrantsEverything)


def test_requests_a_stalled_scheduler_never_resolves_are_unfinished() -> None:
    report = simulate(abc_x4(), planner=one_at_a_time, models=MODELS_10S, scheduler=NeverServes)
    assert report.outcomes["unfinished"] == 12
    assert report.requests[0].finished is None
    assert report.requests[0].wait == 11.0  # until the last event (the last arrival)


def test_report_to_dict_is_json_ready() -> None:
    report = simulate(abc_x4(), planner=one_at_a_time, models=MODELS_10S)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["total_loads"] == 3
    assert len(data["requests"]) == 12
    assert data["timeline"][0]["model"] == "A"
    assert "requests" not in report.to_dict(requests=False)
