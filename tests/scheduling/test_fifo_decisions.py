"""FIFOScheduler: construction and the decision tree for one request (llama-swap's steps 1-8)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from test_fifo_doubles import (
    READY,
    STOPPED,
    Clock,
    OneAtATime,
    TablePlanner,
    finish_swap,
    make,
    req,
)

from swapcore import (
    ConcurrencyLimitExceeded,
    ConfigError,
    FIFOScheduler,
    ModelNotFound,
    PolicyError,
    Scheduler,
    SwapPlanner,
)
from swapcore.testing.effects import (
    GrantErrorCall,
    GrantServeCall,
    RecordingEffects,
    ReportPositionCall,
    StartSwapCall,
)

# -- construction -----------------------------------------------------------------


def test_fifo_scheduler_is_a_scheduler() -> None:
    scheduler, _ = make()
    typed: Scheduler = scheduler
    assert typed is scheduler


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"priority": {"A": "high"}}, "priority['A']"),
        ({"priority": {"A": True}}, "priority['A']"),
        ({"priority": {1: 2}}, "priority keys"),
        ({"priority": [("A", 1)]}, "priority must be a mapping"),
        ({"concurrency_limits": {"A": 0}}, "concurrency_limits['A']"),
        ({"concurrency_limits": {"B": -3}}, "concurrency_limits['B']"),
        ({"concurrency_limits": {"A": 2.0}}, "concurrency_limits['A']"),
        ({"concurrency_limits": {"A": True}}, "concurrency_limits['A']"),
        ({"default_concurrency_limit": 0}, "default_concurrency_limit"),
        ({"max_wait": 0}, "max_wait"),
        ({"max_wait": -1.0}, "max_wait"),
        ({"max_wait": float("nan")}, "max_wait"),
        ({"max_wait": "10"}, "max_wait"),
        ({"max_wait": True}, "max_wait"),
    ],
)
def test_invalid_configuration_names_the_key(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        make(**kwargs)
    assert needle in str(info.value)


def test_valid_configuration() -> None:
    scheduler, _ = make(
        priority={"A": -2, "B": 7},
        concurrency_limits={"A": 1},
        default_concurrency_limit=3,
        max_wait=float("inf"),
    )
    assert scheduler.concurrency_limit("A") == 1
    assert scheduler.concurrency_limit("B") == 3


# -- step 1: unknown model --------------------------------------------------------


def test_unknown_model_is_not_found_and_not_admitted() -> None:
    scheduler, effects = make()
    request = req("Z")
    scheduler.on_request(request)
    [call] = effects.calls
    assert isinstance(call, GrantErrorCall) and call.request is request
    assert isinstance(call.error, ModelNotFound)
    assert "'Z'" in str(call.error)
    assert scheduler.admitted("Z") == 0


# -- step 2: admission ------------------------------------------------------------


def test_default_limit_is_ten_admitted_requests() -> None:
    scheduler, effects = make()
    requests = [req("A") for _ in range(11)]
    for request in requests:
        scheduler.on_request(request)
    assert scheduler.admitted("A") == 10
    assert scheduler.waiters("A") == tuple(requests[:10])
    [error] = effects.errors
    assert error.request is requests[10]
    assert isinstance(error.error, ConcurrencyLimitExceeded)
    assert "'A'" in str(error.error) and "10" in str(error.error)


def test_limit_counts_queued_waiting_and_serving_and_rejects_before_queueing() -> None:
    scheduler, effects = make(ready=["A"], concurrency_limits={"A": 2, "B": 2})
    a1, a2, a3 = req("A"), req("A"), req("A")
    scheduler.on_request(a1)  # serving
    b1, b2, b3 = req("B"), req("B"), req("B")
    scheduler.on_request(b1)  # queued: A is busy
    scheduler.on_request(b2)  # queued
    effects.take_calls()
    scheduler.on_request(b3)  # rejected: two B requests are admitted
    scheduler.on_request(a2)  # serving
    scheduler.on_request(a3)  # rejected: two A requests are serving
    assert effects.calls == [
        GrantErrorCall(b3, effects.errors[0].error),
        GrantServeCall(a2, "A", True),
        GrantErrorCall(a3, effects.errors[1].error),
    ]
    assert all(isinstance(e.error, ConcurrencyLimitExceeded) for e in effects.errors)
    assert scheduler.queued == (b1, b2)
    assert scheduler.admitted("A") == 2 and scheduler.admitted("B") == 2
    # Serving ends release admissions: room again.
    scheduler.on_serve_done("A")
    scheduler.on_request(a4 := req("A"))
    assert effects.outcomes(a4) == [GrantServeCall(a4, "A", True)]


# -- step 3: join an in-flight swap ------------------------------------------------


def test_requests_join_the_swap_in_flight() -> None:
    scheduler, effects = make()
    b1, b2 = req("B"), req("B")
    scheduler.on_request(b1)
    scheduler.on_request(b2)
    assert effects.calls == [StartSwapCall("B", ())]
    assert scheduler.swaps == {"B": ()}
    assert scheduler.waiters("B") == (b1, b2)
    finish_swap(scheduler, effects, "B")
    assert effects.served() == [b1, b2]
    assert scheduler.in_flight("B") == 2
    assert scheduler.swaps == {}


# -- step 4 and 8: running set, planner hooks -------------------------------------


class Spy(SwapPlanner):
    def __init__(self) -> None:
        self.asked: list[tuple[str, tuple[str, ...]]] = []
        self.started: list[tuple[str, tuple[str, ...]]] = []
        self.served: list[tuple[str, float]] = []

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        self.asked.append((target, tuple(running)))
        return [model for model in running if model != target]

    def on_swap_start(self, target: str, running: Sequence[str]) -> None:
        self.started.append((target, tuple(running)))

    def on_serve(self, model: str, now: float) -> None:
        self.served.append((model, now))


def test_running_set_is_sorted_and_includes_swap_targets() -> None:
    planner = Spy()
    clock = Clock(5.0)
    scheduler, effects = make(planner, models="ABCD", ready=["D", "C"], clock=clock)
    scheduler.on_request(req("C"))  # fast path? no: D must stop
    assert planner.asked == [("C", ("C", "D"))]
    assert effects.starts == [StartSwapCall("C", ("D",))]
    assert planner.started == [("C", ("C", "D"))]
    scheduler.on_request(req("A"))
    assert planner.asked[-1] == ("A", ("C", "D"))  # C counts twice: ready and swap target
    effects.states["C"] = STOPPED  # the swap target still counts as running
    effects.states["D"] = STOPPED
    scheduler.on_request(req("B"))
    assert planner.asked[-1] == ("B", ("C",))
    finish_swap(scheduler, effects, "C")
    assert planner.served == [("C", 5.0)]


def test_a_planner_evicting_a_model_that_is_not_running_is_a_bug() -> None:
    class Bad(SwapPlanner):
        def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
            return ["ghost"]

    effects = RecordingEffects.for_models("AB")
    scheduler = FIFOScheduler(Bad(), effects)
    request = req("A")
    scheduler.on_request(request)  # a planner bug fails the request, not the scheduler
    error = effects.error(request)
    assert isinstance(error, PolicyError) and error.__cause__ is None
    assert "Bad.eviction_for('A', []) returned ['ghost']" in str(error)
    assert scheduler.admitted("A") == 0


# -- step 5: fast path --------------------------------------------------------------


def test_fast_path_grants_a_ready_model_at_once() -> None:
    scheduler, effects = make(ready=["A"])
    a = req("A")
    scheduler.on_request(a)
    assert effects.calls == [GrantServeCall(a, "A", True)]
    assert scheduler.in_flight("A") == 1 and scheduler.admitted("A") == 1
    scheduler.on_serve_done("A")
    assert scheduler.in_flight("A") == 0 and scheduler.admitted("A") == 0


def test_no_fast_path_while_an_in_flight_swap_evicts_the_model() -> None:
    planner = TablePlanner({"B": ["A"]})
    scheduler, effects = make(planner, ready=["A"])
    scheduler.on_request(req("B"))
    assert effects.starts == [StartSwapCall("B", ("A",))]
    a = req("A")
    scheduler.on_request(a)  # A is still READY, evicts nothing, but is being stopped
    assert scheduler.queued == (a,)
    assert effects.grants == []
    finish_swap(scheduler, effects, "B")  # A stopped: the drain starts A's swap
    assert effects.starts[-1] == StartSwapCall("A", ())


# -- step 6: collisions with in-flight swaps ------------------------------------------


def test_collision_when_it_would_evict_the_swap_target() -> None:
    scheduler, effects = make(TablePlanner({"C": ["B"]}))
    scheduler.on_request(req("B"))
    c = req("C")
    scheduler.on_request(c)
    assert effects.starts == [StartSwapCall("B", ())]
    assert scheduler.queued == (c,)


def test_collision_when_the_swap_evicts_the_target() -> None:
    scheduler, effects = make(TablePlanner({"B": ["A"], "A": ["C"]}), ready=["A", "C"])
    scheduler.on_request(req("B"))
    a = req("A")
    scheduler.on_request(a)  # A would stop C, and B's swap is stopping A
    assert effects.starts == [StartSwapCall("B", ("A",))]
    assert scheduler.queued == (a,)


def test_collision_when_both_evict_a_common_model() -> None:
    scheduler, effects = make(TablePlanner({"B": ["A"], "C": ["A"]}), ready=["A"])
    scheduler.on_request(req("B"))
    c = req("C")
    scheduler.on_request(c)
    assert effects.starts == [StartSwapCall("B", ("A",))]
    assert scheduler.queued == (c,)


def test_swaps_with_disjoint_effects_run_in_parallel() -> None:
    planner = TablePlanner({"B": ["A"], "C": ["D"]})
    scheduler, effects = make(planner, models="ABCD", ready=["A", "D"])
    scheduler.on_request(b := req("B"))
    scheduler.on_request(c := req("C"))
    assert effects.starts == [StartSwapCall("B", ("A",)), StartSwapCall("C", ("D",))]
    assert scheduler.swaps == {"B": ("A",), "C": ("D",)}
    finish_swap(scheduler, effects, "C")
    finish_swap(scheduler, effects, "B")
    assert effects.served() == [c, b]


# -- step 7: never stop a busy model ---------------------------------------------------


def test_queue_while_the_eviction_would_stop_a_busy_model() -> None:
    scheduler, effects = make(ready=["A"])
    scheduler.on_request(req("A"))
    b = req("B")
    scheduler.on_request(b)
    assert effects.starts == []
    assert scheduler.queued == (b,)
    assert effects.reports == [ReportPositionCall(b, 1)]
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("B", ("A",))]
    assert scheduler.queued == () and scheduler.waiters("B") == (b,)


def test_resubmitting_a_pending_request_is_a_bug() -> None:
    scheduler, _ = make()
    b = req("B")
    scheduler.on_request(b)
    with pytest.raises(RuntimeError, match="submitted twice"):
        scheduler.on_request(b)
    assert scheduler.admitted("B") == 1


def test_calling_back_into_the_scheduler_from_an_effect_is_a_bug() -> None:
    class Reentrant(RecordingEffects):
        scheduler: FIFOScheduler

        def grant_serve(self, request: object, model: str) -> bool:
            self.scheduler.on_serve_done(model)
            return True

    effects = Reentrant.for_models("A", ready="A")
    assert isinstance(effects, Reentrant)
    effects.scheduler = FIFOScheduler(OneAtATime(), effects)
    with pytest.raises(RuntimeError, match="inside an effect"):
        effects.scheduler.on_request(req("A"))
    # The outer call still cleaned up: the scheduler takes events again.
    effects.scheduler.on_cancel(req("A"))


def test_grants_are_recorded_for_the_served_model() -> None:
    scheduler, effects = make(ready=["A"])
    assert effects.states["A"] is READY
    scheduler.on_request(a := req("A"))
    assert effects.outcomes(a) == [GrantServeCall(a, "A", True)]


def test_the_clock_is_read_only_when_needed() -> None:
    def no_clock() -> float:
        raise AssertionError("clock read without max_wait or a recording planner")

    scheduler, effects = make(ready=["A"], clock=no_clock)
    scheduler.on_request(req("A"))
    scheduler.on_request(req("B"))
    scheduler.on_serve_done("A")
    finish_swap(scheduler, effects, "B")
    scheduler.on_tick()
    assert scheduler.next_deadline() is None
    assert len(effects.served()) == 2
