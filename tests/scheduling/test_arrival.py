"""ArrivalOrderScheduler: strict arrival order with head-of-line blocking (no collation)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from test_fifo_doubles import READY, OneAtATime, TablePlanner, finish_swap, req

from swapcore import (
    ArrivalOrderScheduler,
    ConfigError,
    FIFOScheduler,
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
) -> tuple[ArrivalOrderScheduler, RecordingEffects]:
    """An arrival-order scheduler over RecordingEffects; one-at-a-time planner by default."""
    effects = RecordingEffects.for_models(models, ready=ready)
    return ArrivalOrderScheduler(planner or OneAtATime(), effects, **kwargs), effects


def settle(scheduler: Any, effects: RecordingEffects) -> None:
    """Play the driver until nothing is left: finish swaps first, then serves, in order."""
    swaps_done = serves_done = 0
    for _ in range(10_000):
        starts, served = effects.starts, effects.served()
        if swaps_done < len(starts):
            finish_swap(scheduler, effects, starts[swaps_done].model)
            swaps_done += 1
        elif serves_done < len(served):
            scheduler.on_serve_done(served[serves_done].model)
            serves_done += 1
        else:
            return
    raise AssertionError("the driver did not settle")


def loads_for(arrivals: str, scheduler_cls: Any, *, ready: str = "") -> tuple[list[str], list[str]]:
    """Submit one request per letter, settle; return (models loaded, models served) in order."""
    effects = RecordingEffects.for_models("ABC", ready=ready)
    scheduler = scheduler_cls(OneAtATime(), effects)
    requests = [req(model) for model in arrivals]
    for request in requests:
        scheduler.on_request(request)
    settle(scheduler, effects)
    assert len(effects.served()) == len(requests)
    assert scheduler.queued == () and scheduler.swaps == {}
    return [call.model for call in effects.starts], [r.model for r in effects.served()]


# -- construction -----------------------------------------------------------------


def test_arrival_order_scheduler_is_a_scheduler() -> None:
    scheduler, _ = make()
    typed: Scheduler = scheduler
    assert typed is scheduler


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"concurrency_limits": {"A": 0}}, "concurrency_limits['A']"),
        ({"default_concurrency_limit": 0}, "default_concurrency_limit"),
    ],
)
def test_invalid_configuration_names_the_key(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        make(**kwargs)
    assert needle in str(info.value)


@pytest.mark.parametrize("option", ["priority", "max_wait"])
def test_there_are_no_priorities_and_no_max_wait(option: str) -> None:
    with pytest.raises(TypeError, match=option):
        make(**{option: None})


def test_a_next_deadline_is_never_needed() -> None:
    scheduler, _ = make(ready=["A"])
    scheduler.on_request(req("A"))
    scheduler.on_request(req("B"))
    assert scheduler.next_deadline() is None


# -- the baseline: one load per change of model --------------------------------------


def test_a_b_c_four_times_costs_twelve_loads() -> None:
    arrivals = "ABC" * 4
    loads, served = loads_for(arrivals, ArrivalOrderScheduler)
    assert loads == list(arrivals)
    assert served == list(arrivals)
    # FIFO collates the same arrivals into one load per model.
    loads, served = loads_for(arrivals, FIFOScheduler)
    assert loads == ["A", "B", "C"]
    assert served == sorted(arrivals)


def test_llama_swaps_example_six_arrivals_five_swaps() -> None:
    """A loaded, arrivals A B C A B C: 5 swaps before collation, 2 with it."""
    loads, served = loads_for("ABCABC", ArrivalOrderScheduler, ready="A")
    assert loads == ["B", "C", "A", "B", "C"]
    assert served == list("ABCABC")
    loads, _ = loads_for("ABCABC", FIFOScheduler, ready="A")
    assert loads == ["B", "C"]


def test_runs_of_one_model_share_a_load() -> None:
    loads, served = loads_for("AABBBA", ArrivalOrderScheduler)
    assert loads == ["A", "B", "A"]
    assert served == list("AABBBA")


# -- head-of-line blocking -------------------------------------------------------------


def test_no_fast_path_past_a_queued_request() -> None:
    scheduler, effects = make(ready=["A"])
    scheduler.on_request(a1 := req("A"))  # queue empty: fast path
    scheduler.on_request(b := req("B"))  # A is busy: queued
    scheduler.on_request(a2 := req("A"))  # A is ready, but B came first
    assert effects.served() == [a1]
    assert scheduler.queued == (b, a2)
    assert (effects.position(b), effects.position(a2)) == (1, 2)
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("B", ("A",))]
    assert scheduler.queued == (a2,) and effects.position(a2) == 1


def test_no_join_past_a_queued_request() -> None:
    scheduler, _ = make()
    scheduler.on_request(a1 := req("A"))  # starts the swap to A
    scheduler.on_request(b := req("B"))  # collides: queued
    scheduler.on_request(a2 := req("A"))  # would join A's swap in FIFO
    assert scheduler.waiters("A") == (a1,)
    assert scheduler.queued == (b, a2)


def test_a_drain_stops_at_the_first_blocked_request() -> None:
    # B must stop the busy A; C stops nothing and could start at once.
    scheduler, effects = make(TablePlanner({"B": ["A"]}), ready=["A"])
    scheduler.on_request(req("A"))
    scheduler.on_request(b := req("B"))
    scheduler.on_request(c := req("C"))
    assert effects.starts == [] and scheduler.queued == (b, c)
    scheduler.on_tick()
    assert effects.starts == [] and scheduler.queued == (b, c)
    scheduler.on_serve_done("A")
    # Both leave in one drain: B's swap, then C's (disjoint effects).
    assert effects.starts == [StartSwapCall("B", ("A",)), StartSwapCall("C", ())]
    assert scheduler.queued == ()


def test_priorities_are_ignored() -> None:
    scheduler, _ = make(ready=["A"])
    scheduler.on_request(req("A"))
    requests = [req("B"), req("C", priority=5), req("B", priority=-1)]
    for request in requests:
        scheduler.on_request(request)
    assert scheduler.queued == tuple(requests)


# -- cancellation, the grant contract -------------------------------------------------


def test_cancelling_the_head_lets_the_next_request_go() -> None:
    scheduler, effects = make(TablePlanner({"B": ["A"]}), ready=["A"])
    scheduler.on_request(req("A"))
    scheduler.on_request(b := req("B"))
    scheduler.on_request(c := req("C"))
    scheduler.on_request(a := req("A"))
    effects.take_calls()
    scheduler.on_cancel(b)
    # C starts its swap; A is ready and next: it is served at once.
    assert effects.starts == [StartSwapCall("C", ())]
    assert scheduler.waiters("C") == (c,)
    assert effects.served() == [a]
    assert scheduler.queued == () and scheduler.admitted("B") == 0


def test_cancelling_a_request_behind_the_head_changes_nothing_else() -> None:
    scheduler, effects = make(ready=["A"])
    scheduler.on_request(req("A"))
    scheduler.on_request(b := req("B"))
    scheduler.on_request(c := req("C"))
    scheduler.on_request(b2 := req("B"))
    effects.take_calls()
    scheduler.on_cancel(c)
    assert effects.starts == [] and effects.grants == []
    assert scheduler.queued == (b, b2) and effects.position(b2) == 2
    scheduler.on_serve_done("A")
    settle(scheduler, effects)
    assert c not in effects.served()
    assert [call.model for call in effects.starts] == ["B"]


def test_a_grant_to_a_caller_who_left_is_not_counted() -> None:
    scheduler, effects = make(ready=["A"])
    scheduler.on_request(req("A"))
    scheduler.on_request(b := req("B"))
    scheduler.on_request(a := req("A"))
    effects.mark_gone(a)
    scheduler.on_serve_done("A")  # B's swap starts; a waits behind it
    finish_swap(scheduler, effects, "B")
    scheduler.on_serve_done("B")  # a's swap starts for a caller still counted
    finish_swap(scheduler, effects, "A")
    assert effects.grants[-1] == GrantServeCall(a, "A", False)
    assert scheduler.in_flight("A") == 0 and scheduler.admitted("A") == 0
    assert effects.states["A"] is READY and b in effects.served()
