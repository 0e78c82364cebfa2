"""FIFOScheduler: queue order, priorities, positions, drains and collation."""

from __future__ import annotations

from typing import Any

from test_fifo_doubles import TablePlanner, finish_swap, make, req

from swapcore import FIFOScheduler
from swapcore.testing.effects import (
    GrantServeCall,
    RecordingEffects,
    ReportPositionCall,
    StartSwapCall,
)


def busy_a(**kwargs: Any) -> tuple[FIFOScheduler, RecordingEffects]:
    """A scheduler where A is ready and serving one request: others must queue."""
    scheduler, effects = make(ready=["A"], **kwargs)
    scheduler.on_request(req("A"))
    effects.take_calls()
    return scheduler, effects


# -- priority order ------------------------------------------------------------------


def test_equal_priorities_keep_arrival_order_and_appends_report_once() -> None:
    scheduler, effects = busy_a()
    b1, c1, b2 = req("B"), req("C"), req("B")
    for request in (b1, c1, b2):
        scheduler.on_request(request)
    assert scheduler.queued == (b1, c1, b2)
    assert effects.calls == [
        ReportPositionCall(b1, 1),
        ReportPositionCall(c1, 2),
        ReportPositionCall(b2, 3),
    ]


def test_model_priority_inserts_before_the_first_lower_priority_request() -> None:
    scheduler, effects = busy_a(priority={"C": 5, "D": 5}, models="ABCD")
    b1, b2, c1, d1 = req("B"), req("B"), req("C"), req("D")
    for request in (b1, b2, c1, d1):
        scheduler.on_request(request)
    assert scheduler.queued == (c1, d1, b1, b2)
    assert effects.calls == [
        ReportPositionCall(b1, 1),
        ReportPositionCall(b2, 2),
        # C jumps the B requests: it and those behind it learn their positions.
        ReportPositionCall(c1, 1),
        ReportPositionCall(b1, 2),
        ReportPositionCall(b2, 3),
        # D has C's priority: behind C, ahead of the Bs.
        ReportPositionCall(d1, 2),
        ReportPositionCall(b1, 3),
        ReportPositionCall(b2, 4),
    ]
    assert [scheduler.position(r) for r in (c1, d1, b1, b2)] == [1, 2, 3, 4]


def test_request_priority_overrides_the_model_priority() -> None:
    scheduler, _ = busy_a(priority={"C": 5})
    c1 = req("C")
    b_urgent = req("B", priority=9)
    c_low = req("C", priority=-1)
    b_plain = req("B")
    for request in (c1, b_urgent, c_low, b_plain):
        scheduler.on_request(request)
    assert scheduler.queued == (b_urgent, c1, b_plain, c_low)


# -- positions on cancel and drain ----------------------------------------------------


def test_cancel_reports_only_to_those_behind() -> None:
    scheduler, effects = busy_a()
    b1, c1, b2, c2 = req("B"), req("C"), req("B"), req("C")
    for request in (b1, c1, b2, c2):
        scheduler.on_request(request)
    effects.take_calls()
    scheduler.on_cancel(c1)
    assert effects.calls == [ReportPositionCall(b2, 2), ReportPositionCall(c2, 3)]
    scheduler.on_cancel(c2)  # the tail: nobody moves
    assert effects.calls == [ReportPositionCall(b2, 2), ReportPositionCall(c2, 3)]
    assert scheduler.position(c2) is None


def test_drain_reports_only_positions_that_changed() -> None:
    scheduler, effects = busy_a()
    b1, c1, b2, c2 = req("B"), req("C"), req("B"), req("C")
    for request in (b1, c1, b2, c2):
        scheduler.on_request(request)
    effects.take_calls()
    scheduler.on_serve_done("A")
    # B1 starts B's swap, B2 joins it, the C requests collide and move up.
    assert effects.calls == [
        StartSwapCall("B", ("A",)),
        ReportPositionCall(c1, 1),
        ReportPositionCall(c2, 2),
    ]
    assert scheduler.waiters("B") == (b1, b2)


def test_a_drain_that_moves_nobody_reports_nothing() -> None:
    scheduler, effects = make(ready=["A"])
    scheduler.on_request(req("A"))
    scheduler.on_request(req("A"))
    scheduler.on_request(req("B"))
    scheduler.on_request(req("C"))
    effects.take_calls()
    scheduler.on_serve_done("A")  # one A still serving: no drain
    scheduler.on_unload_done([])  # a drain: everything still blocked
    assert effects.calls == []


# -- what triggers a drain ---------------------------------------------------------------


def test_drain_after_swap_done() -> None:
    scheduler, effects = make(TablePlanner({"C": ["B"]}))
    scheduler.on_request(b := req("B"))
    scheduler.on_request(c := req("C"))
    finish_swap(scheduler, effects, "B")
    # B's waiter is served; C must wait for B to be idle, then starts.
    assert effects.served() == [b]
    assert scheduler.queued == (c,)
    scheduler.on_serve_done("B")
    assert effects.starts[-1] == StartSwapCall("C", ("B",))


def test_drain_only_when_the_in_flight_count_reaches_zero() -> None:
    scheduler, effects = make(ready=["A"])
    scheduler.on_request(req("A"))
    scheduler.on_request(req("A"))
    scheduler.on_request(req("B"))
    scheduler.on_serve_done("A")
    assert effects.starts == []
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("B", ("A",))]


def test_a_queued_request_for_a_ready_model_is_granted_by_the_drain() -> None:
    planner = TablePlanner({"B": ["A"]})
    scheduler, effects = make(planner, ready=["A"])
    scheduler.on_request(req("B"))
    scheduler.on_request(a := req("A"))
    # The driver reports B's swap done with A still ready (say A's stop is a
    # no-op for this backend): the drain grants A by the fast path.
    scheduler.on_swap_done("B", None)
    assert effects.outcomes(a) == [GrantServeCall(a, "A", True)]


# -- collation ------------------------------------------------------------------------------


def test_collation_from_cold() -> None:
    """Arrivals A B C A B C are served A A B B C C with three loads."""
    scheduler, effects = make()
    arrivals = [req(model) for model in "ABCABC"]
    for request in arrivals:
        scheduler.on_request(request)
    for model in "ABC":
        finish_swap(scheduler, effects, model)
        scheduler.on_serve_done(model)
        scheduler.on_serve_done(model)
    assert [r.model for r in effects.served()] == list("AABBCC")
    assert effects.starts == [
        StartSwapCall("A", ()),
        StartSwapCall("B", ("A",)),
        StartSwapCall("C", ("B",)),
    ]


def test_collation_with_a_ready_busy_model() -> None:
    scheduler, effects = make(ready=["A"])
    arrivals = [req(model) for model in "ABCABC"]
    for request in arrivals:
        scheduler.on_request(request)
    assert [r.model for r in effects.served()] == ["A", "A"]  # fast path
    scheduler.on_serve_done("A")
    scheduler.on_serve_done("A")
    for model in "BC":
        finish_swap(scheduler, effects, model)
        scheduler.on_serve_done(model)
        scheduler.on_serve_done(model)
    assert [r.model for r in effects.served()] == list("AABBCC")
    assert len(effects.starts) == 2


def test_a_drain_asks_the_planner_once_per_model() -> None:
    planner = TablePlanner({"B": ["A"], "C": ["A"]})
    scheduler, _ = make(planner, ready=["A"])
    scheduler.on_request(req("A"))
    for _ in range(5):
        scheduler.on_request(req("B"))
        scheduler.on_request(req("C"))
    planner.asked = 0
    scheduler.on_tick()  # A is busy: nothing can start
    assert planner.asked == 2
    assert len(scheduler.queued) == 10
