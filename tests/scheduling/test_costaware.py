"""CostAwareScheduler: configuration and the choice rule (which queued model loads next)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from test_fifo_doubles import (
    READY,
    STOPPED,
    Clock,
    OneAtATime,
    TablePlanner,
    finish_swap,
    req,
)

from swapcore import (
    ConfigError,
    CostAwareScheduler,
    FIFOScheduler,
    ProcessState,
    Request,
    Scheduler,
    SwapPlanner,
)
from swapcore.testing.effects import GrantServeCall, RecordingEffects, StartSwapCall


def make(
    planner: SwapPlanner | None = None,
    *,
    models: Iterable[str] = ("A", "B", "C"),
    ready: Iterable[str] = (),
    **kwargs: Any,
) -> tuple[CostAwareScheduler, RecordingEffects]:
    """A cost-aware scheduler over RecordingEffects; one-at-a-time planner by default."""
    effects = RecordingEffects.for_models(models, ready=ready)
    kwargs.setdefault("clock", Clock(0.0))
    return CostAwareScheduler(planner or OneAtATime(), effects, **kwargs), effects


def behind_busy_a(
    queued: Iterable[tuple[str, float]], *, now: float = 10.0, fifo: bool = False, **kwargs: Any
) -> tuple[Any, RecordingEffects, list[Request]]:
    """A ready and serving one request; ``queued`` (model, arrived) requests wait behind it.

    The clock is then set to ``now`` and the calls recorded so far are forgotten;
    the test ends A's serve to make the scheduler choose.
    """
    clock = Clock(0.0)
    effects = RecordingEffects.for_models(kwargs.pop("models", "ABCD"), ready="A")
    cls = FIFOScheduler if fifo else CostAwareScheduler
    scheduler = cls(kwargs.pop("planner", OneAtATime()), effects, clock=clock, **kwargs)
    scheduler.on_request(req("A"))
    requests = []
    for model, arrived in queued:
        clock.now = arrived
        request = Request(model, id=len(requests) + 1000, arrived=arrived)
        requests.append(request)
        scheduler.on_request(request)
    assert set(scheduler.queued) == set(requests)
    clock.now = now
    effects.take_calls()
    return scheduler, effects, requests


# -- construction -----------------------------------------------------------------


def test_cost_aware_scheduler_is_a_scheduler() -> None:
    scheduler, _ = make()
    typed: Scheduler = scheduler
    assert typed is scheduler


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"load_times": {"A": 0}}, "load_times['A']"),
        ({"load_times": {"A": -1.0}}, "load_times['A']"),
        ({"load_times": {"A": float("inf")}}, "load_times['A']"),
        ({"load_times": {"A": float("nan")}}, "load_times['A']"),
        ({"load_times": {"A": "5"}}, "load_times['A']"),
        ({"load_times": {"A": True}}, "load_times['A']"),
        ({"load_times": {1: 2.0}}, "load_times keys"),
        ({"load_times": [("A", 1.0)]}, "load_times must be a mapping"),
        ({"wait_offset": 0}, "wait_offset"),
        ({"wait_offset": -1.0}, "wait_offset"),
        ({"wait_offset": float("inf")}, "wait_offset"),
        ({"age_exponent": -1}, "age_exponent"),
        ({"age_exponent": 17}, "age_exponent"),
        ({"age_exponent": float("nan")}, "age_exponent"),
        ({"age_exponent": True}, "age_exponent"),
        # FIFO's options are validated the same way.
        ({"priority": {"A": "high"}}, "priority['A']"),
        ({"concurrency_limits": {"A": 0}}, "concurrency_limits['A']"),
        ({"default_concurrency_limit": 0}, "default_concurrency_limit"),
        ({"max_wait": 0}, "max_wait"),
    ],
)
def test_invalid_configuration_names_the_key(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        make(**kwargs)
    assert needle in str(info.value)


def test_valid_configuration_and_load_times() -> None:
    scheduler, _ = make(
        load_times={"A": 30, "B": 0.5},
        wait_offset=0.25,
        age_exponent=0,
        concurrency_limits={"A": 1},
        max_wait=60.0,
    )
    assert scheduler.load_time("A") == 30.0
    assert scheduler.load_time("B") == 0.5
    assert scheduler.load_time("C") == 1.0  # absent: the default
    assert scheduler.concurrency_limit("A") == 1


def test_scores_follow_the_formula() -> None:
    scheduler, _, _ = behind_busy_a(
        [("B", 0.0), ("C", 4.0), ("C", 6.0)],
        now=10.0,
        load_times={"C": 2.0},
        wait_offset=0.5,
        age_exponent=2,
    )
    scores = scheduler.scores()
    assert scores == {
        "B": (10.0 + 0.5) ** 2 / 1.0,
        "C": ((6.0 + 0.5) ** 2 + (4.0 + 0.5) ** 2) / 2.0,
    }


# -- the choice rule ----------------------------------------------------------------


def test_a_bigger_backlog_of_the_same_age_loads_first() -> None:
    queued = [("B", 0.0), ("C", 0.0), ("C", 0.0), ("C", 0.0)]
    fifo, fifo_effects, _ = behind_busy_a(queued, fifo=True)
    fifo.on_serve_done("A")
    assert fifo_effects.starts == [StartSwapCall("B", ("A",))]  # the head of the queue

    scheduler, effects, requests = behind_busy_a(queued)
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("C", ("A",))]
    # One load serves the whole backlog: every queued C joined it.
    assert scheduler.waiters("C") == tuple(requests[1:])
    assert scheduler.queued == (requests[0],)
    # B stayed at position 1: nobody is told anything new.
    assert effects.reports == []


def test_an_old_request_beats_a_young_backlog() -> None:
    scheduler, effects, _ = behind_busy_a([("B", 0.0), ("C", 9.0), ("C", 9.0)], now=10.0)
    # (10 + 1)^3 = 1331 against 2 * (1 + 1)^3 = 16.
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("B", ("A",))]


def test_age_exponent_zero_counts_requests() -> None:
    scheduler, effects, _ = behind_busy_a(
        [("B", 0.0), ("C", 9.0), ("C", 9.0)], now=10.0, age_exponent=0
    )
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("C", ("A",))]


def test_age_exponent_one_is_the_total_wait() -> None:
    # B: 10 + 1 = 11; C: 3 * (4 + 1) = 15.
    scheduler, effects, _ = behind_busy_a(
        [("B", 0.0), ("C", 6.0), ("C", 6.0), ("C", 6.0)], now=10.0, age_exponent=1
    )
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("C", ("A",))]


def test_a_cheap_load_goes_before_an_expensive_one_for_the_same_backlog() -> None:
    queued = [("B", 0.0), ("C", 0.0)]
    scheduler, effects, _ = behind_busy_a(queued, load_times={"B": 10.0, "C": 2.0})
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("C", ("A",))]
    scheduler, effects, _ = behind_busy_a(queued, load_times={"B": 2.0, "C": 10.0})
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("B", ("A",))]


@pytest.mark.parametrize("order", ["BC", "CB"])
def test_equal_scores_keep_queue_order(order: str) -> None:
    scheduler, effects, _ = behind_busy_a([(model, 0.0) for model in order])
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall(order[0], ("A",))]


def test_priority_tiers_are_strict() -> None:
    # C has the bigger and older backlog, but B's model priority is higher.
    scheduler, effects, _ = behind_busy_a(
        [("C", 0.0), ("C", 0.0), ("C", 0.0), ("B", 9.0)], priority={"B": 1}
    )
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("B", ("A",))]


def test_one_high_priority_request_lifts_its_model_and_the_load_serves_all() -> None:
    scheduler, effects, requests = behind_busy_a([("B", 0.0), ("B", 0.0), ("C", 5.0)])
    scheduler.on_request(urgent := Request("C", id=1, arrived=10.0, priority=3))
    assert scheduler.queued[0] is urgent
    effects.take_calls()
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("C", ("A",))]
    assert scheduler.waiters("C") == (urgent, requests[2])
    assert scheduler.queued == tuple(requests[:2])


def test_a_starved_request_goes_first_whatever_the_scores() -> None:
    queued = [("B", 0.0), *[("C", 1.0)] * 5]
    scheduler, effects, _ = behind_busy_a(queued, now=4.0, max_wait=5.0)
    scheduler.on_serve_done("A")  # nobody is starved yet: the score decides
    assert effects.starts == [StartSwapCall("C", ("A",))]

    scheduler, effects, requests = behind_busy_a(queued, now=6.0, max_wait=5.0)
    assert scheduler.scores()["C"] > scheduler.scores()["B"]
    scheduler.on_serve_done("A")  # B has waited max_wait: it goes first
    assert effects.starts == [StartSwapCall("B", ("A",))]
    assert scheduler.queued == tuple(requests[1:])


def test_the_best_startable_model_wins_over_a_better_blocked_one() -> None:
    # E (big backlog) needs A stopped; C and D need only B stopped (idle).
    planner = TablePlanner({"C": ["B"], "D": ["B"], "E": ["A"]})
    clock = Clock(0.0)
    effects = RecordingEffects.for_models("ABCDE", ready="AB")
    scheduler = CostAwareScheduler(planner, effects, clock=clock)
    scheduler.on_request(req("A"))
    scheduler.on_request(req("B"))  # A and B both serving
    queued = [req("E"), req("E"), req("E"), req("C"), req("D"), req("D")]
    for request in queued:
        scheduler.on_request(request)
    assert scheduler.queued == tuple(queued)
    effects.take_calls()
    scheduler.on_serve_done("B")
    # C and D collide (both stop B): the better of the two starts; E stays blocked.
    assert effects.starts == [StartSwapCall("D", ("B",))]
    assert scheduler.queued == tuple(queued[:4])


def test_parallel_swaps_start_best_first() -> None:
    # C and D stop disjoint idle models once X's unload is over: both start.
    planner = TablePlanner({"C": ["A", "X"], "D": ["B", "X"]})
    effects = RecordingEffects.for_models("ABCDX", ready="ABX")
    scheduler = CostAwareScheduler(planner, effects, clock=Clock(0.0))
    scheduler.on_unload(["X"])
    effects.states["X"] = ProcessState.STOPPING
    queued = [req("C"), req("D"), req("D")]
    for request in queued:
        scheduler.on_request(request)  # each would stop X, which is being unloaded
    assert scheduler.queued == tuple(queued)
    effects.states["X"] = STOPPED
    scheduler.on_unload_done(["X"])
    assert effects.starts == [StartSwapCall("D", ("B",)), StartSwapCall("C", ("A",))]
    assert scheduler.queued == ()
    assert scheduler.waiters("D") == tuple(queued[1:])


def test_a_model_that_needs_no_load_goes_before_a_swap_in_the_same_tier() -> None:
    # A needs B stopped; C (the bigger backlog) needs A stopped.
    planner = TablePlanner({"A": ["B"], "C": ["A", "B"]})
    effects = RecordingEffects.for_models("ABC", ready="B")
    scheduler = CostAwareScheduler(planner, effects, clock=Clock(0.0))
    scheduler.on_request(req("B"))  # B serving: everything below queues
    c1, c2, a1 = req("C"), req("C"), req("A")
    for request in (c1, c2, a1):
        scheduler.on_request(request)
    # The driver lost B and found A ready without telling the scheduler.
    effects.states.update(A=READY, B=STOPPED)
    effects.take_calls()
    scheduler.on_tick()
    # A serves at once (no load); C would now stop a busy A, so it waits.
    assert effects.calls[0] == GrantServeCall(a1, "A", True)
    assert effects.starts == []
    assert scheduler.queued == (c1, c2)


def test_collation_is_kept() -> None:
    """Arrivals A B C A B C: three loads, as with FIFO."""
    scheduler, effects = make()
    requests = [req(model) for model in "ABCABC"]
    for request in requests:
        scheduler.on_request(request)
    for model in "ABC":
        finish_swap(scheduler, effects, model)
        scheduler.on_serve_done(model)
        scheduler.on_serve_done(model)
    assert [call.model for call in effects.starts] == ["A", "B", "C"]
    assert effects.served() == [requests[i] for i in (0, 3, 1, 4, 2, 5)]


def test_the_clock_is_read_only_to_rank_two_or_more_models() -> None:
    def no_clock() -> float:
        raise AssertionError("clock read with nothing to rank")

    scheduler, effects = make(ready=["A"], clock=no_clock)
    scheduler.on_request(req("A"))
    scheduler.on_request(b1 := req("B"))
    scheduler.on_request(b2 := req("B"))
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("B", ("A",))]
    assert scheduler.waiters("B") == (b1, b2)
    finish_swap(scheduler, effects, "B")
    scheduler.on_tick()
    assert effects.served()[-2:] == [b1, b2]


# -- the tail budget and the hold ------------------------------------------------

LOADS = {"A": 8.0, "B": 15.0, "C": 30.0}  # budget: 53 s


def test_the_tail_budget_sends_the_oldest_model_first_once_its_turn_would_overrun() -> None:
    # C has the bigger score (three requests), but B's request is 40 s old:
    # loading C (30 s) then B (15 s) would take it past the 53 s budget.
    scheduler, effects, _ = behind_busy_a(
        [("B", 0.0), ("C", 39.0), ("C", 39.0), ("C", 39.0)],
        now=40.0,
        load_times=LOADS,
        age_exponent=0,
    )
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("B", ("A",))]


def test_within_the_tail_budget_the_score_decides() -> None:
    scheduler, effects, _ = behind_busy_a(
        [("C", 0.0), ("B", 1.0), ("B", 1.0), ("B", 1.0)],
        now=2.0,
        load_times=LOADS,
        age_exponent=0,
    )
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("B", ("A",))]


def hot_a(hold: float | str, **kwargs: Any) -> tuple[CostAwareScheduler, RecordingEffects, Clock]:
    """A ready; A requests every 1 s (hot: 8 s load), one B queued behind A's last serve."""
    clock = Clock(0.0)
    effects = RecordingEffects.for_models("AB", ready="A")
    scheduler = CostAwareScheduler(
        OneAtATime(), effects, clock=clock, load_times=LOADS, hold=hold, **kwargs
    )
    for t in (0.0, 1.0, 2.0):
        clock.now = t
        scheduler.on_request(Request("A", id=int(t), arrived=t))
        if t < 2.0:
            scheduler.on_serve_done("A")
    clock.now = 2.5
    scheduler.on_request(Request("B", id=10, arrived=2.5))
    clock.now = 3.0
    return scheduler, effects, clock


def test_no_hold_by_default() -> None:
    scheduler, effects, _ = hot_a(0.0)
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("B", ("A",))]
    assert scheduler.held is None


def test_a_hot_model_is_held_then_released_at_the_deadline() -> None:
    scheduler, effects, clock = hot_a(2.0)
    scheduler.on_serve_done("A")
    assert effects.starts == []
    assert scheduler.held == "A"
    assert scheduler.next_deadline() == 5.0
    clock.now = 5.0
    scheduler.on_tick()
    assert effects.starts == [StartSwapCall("B", ("A",))]
    assert scheduler.held is None


def test_an_arrival_during_the_hold_takes_the_fast_path_and_ends_it() -> None:
    scheduler, _, clock = hot_a(2.0)
    scheduler.on_serve_done("A")
    clock.now = 4.0
    late = Request("A", id=20, arrived=4.0)
    scheduler.on_request(late)
    assert scheduler.in_flight("A") == 1  # granted at once
    assert scheduler.held is None
    clock.now = 4.5  # A is hot and a new hold may begin, bounded by B's budget
    scheduler.on_serve_done("A")
    assert scheduler.held == "A"


def test_a_new_request_for_another_model_waits_out_the_hold() -> None:
    scheduler, effects, clock = hot_a(2.0)
    scheduler.on_serve_done("A")
    clock.now = 3.5
    scheduler.on_request(Request("B", id=30, arrived=3.5))
    assert effects.starts == []


def test_with_max_wait_the_hold_keeps_the_queued_turn_within_max_wait() -> None:
    scheduler, effects, clock = hot_a(10.0, max_wait=20.0)
    scheduler.on_serve_done("A")  # B arrived at 2.5: its 15 s load must start by 7.5
    assert scheduler.held == "A"
    assert scheduler.next_deadline() == 7.5
    clock.now = 7.5
    scheduler.on_tick()
    assert effects.starts == [StartSwapCall("B", ("A",))]


def test_no_hold_when_max_wait_leaves_no_room() -> None:
    scheduler, effects, _ = hot_a(10.0, max_wait=1.0)
    scheduler.on_serve_done("A")  # B's 15 s load already overruns max_wait
    assert scheduler.held is None
    assert effects.starts == [StartSwapCall("B", ("A",))]


def test_the_hold_never_outlasts_the_oldest_requests_budget() -> None:
    scheduler, _, _ = hot_a(100.0)
    scheduler.on_serve_done("A")
    # B arrived at 2.5; budget 53 s minus B's own 15 s load.
    assert scheduler.next_deadline() == 2.5 + 53.0 - 15.0


def test_the_hold_keeps_every_queued_models_turn_in_budget() -> None:
    clock = Clock(0.0)
    effects = RecordingEffects.for_models("ABC", ready="A")
    scheduler = CostAwareScheduler(OneAtATime(), effects, clock=clock, load_times=LOADS, hold=100.0)
    for t in (0.0, 1.0, 2.0):
        clock.now = t
        scheduler.on_request(Request("A", id=int(t), arrived=t))
        if t < 2.0:
            scheduler.on_serve_done("A")
    clock.now = 2.5
    scheduler.on_request(Request("B", id=10, arrived=2.5))
    clock.now = 2.6
    scheduler.on_request(Request("C", id=11, arrived=2.6))
    clock.now = 3.0
    scheduler.on_serve_done("A")
    # C goes after B: its oldest request waits the hold, then B's 15 s and its own 30 s.
    assert scheduler.held == "A"
    assert scheduler.next_deadline() == pytest.approx(2.6 + 53.0 - 45.0)


def test_auto_holds_a_hot_model_up_to_its_own_load_time() -> None:
    scheduler, effects, clock = hot_a("auto")
    scheduler.on_serve_done("A")  # at 3.0; A loads in 8 s
    assert scheduler.held == "A"
    assert scheduler.next_deadline() == 3.0 + 8.0
    clock.now = 11.0
    scheduler.on_tick()
    assert effects.starts == [StartSwapCall("B", ("A",))]


def test_auto_is_bounded_by_the_tail_budget_too() -> None:
    scheduler, _, _ = hot_a("auto", max_wait=20.0)
    scheduler.on_serve_done("A")
    assert scheduler.next_deadline() == 7.5  # B's turn within max_wait, before A's 8 s


@pytest.mark.parametrize("bad", [-1.0, float("nan"), True, "2", "Auto"])
def test_hold_is_checked(bad: object) -> None:
    with pytest.raises(ConfigError, match="hold"):
        make(hold=bad)


def test_hold_auto_from_a_simulator_spec() -> None:
    from swapcore.planners import MaxLoadedPlanner
    from swapcore.sim import simulate
    from swapcore.sim.config import generate_trace, scheduler_from_spec

    trace = generate_trace("poisson:rates=a:0.3,b:0.15,c:0.05;duration=600;service=2;seed=1")
    reports = {
        spec: simulate(
            trace,
            planner=MaxLoadedPlanner(1),
            models={"a": 8.0, "b": 15.0, "c": 30.0},
            scheduler=scheduler_from_spec(spec, defaults={"default_concurrency_limit": 1000}),
        )
        for spec in ("fifo", "cost-aware:hold=auto")
    }
    fifo, auto = reports["fifo"], reports["cost-aware:hold=auto"]
    assert auto.outcomes["served"] == len(trace)
    assert auto.total_loads < fifo.total_loads  # held models catch their next request
    assert auto.waits.max <= 1.1 * fifo.waits.max  # within the tail budget
