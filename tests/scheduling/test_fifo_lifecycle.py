"""FIFOScheduler: cancellation, the grant contract, swap errors, unload and shutdown."""

from __future__ import annotations

import pytest
from test_fifo_doubles import READY, STARTING, STOPPED, TablePlanner, finish_swap, make, req

from swapcore import ModelUnloaded, RouterShutdown, SwapFailed
from swapcore.testing.effects import GrantErrorCall, GrantServeCall, StartSwapCall

# -- cancellation ----------------------------------------------------------------------


def test_cancel_while_queued_releases_admission_and_never_loads() -> None:
    scheduler, effects = make(ready=["A"])
    scheduler.on_request(req("A"))
    scheduler.on_request(b := req("B"))
    scheduler.on_cancel(b)
    assert scheduler.queued == () and scheduler.admitted("B") == 0
    scheduler.on_serve_done("A")
    assert effects.starts == []
    assert effects.outcomes(b) == []


def test_cancel_while_waiting_on_a_swap_lets_the_swap_complete_without_a_grant() -> None:
    scheduler, effects = make()
    scheduler.on_request(b1 := req("B"))
    scheduler.on_request(b2 := req("B"))
    scheduler.on_cancel(b1)
    assert scheduler.waiters("B") == (b2,)
    assert scheduler.admitted("B") == 1
    finish_swap(scheduler, effects, "B")
    assert effects.grants == [GrantServeCall(b2, "B", True)]


def test_a_swap_whose_only_waiter_left_still_completes_and_drains() -> None:
    scheduler, effects = make()
    scheduler.on_request(b := req("B"))
    scheduler.on_request(c := req("C"))  # collides with B's swap
    scheduler.on_cancel(b)
    assert scheduler.swaps == {"B": ()}  # the load goes on; the driver owns it
    finish_swap(scheduler, effects, "B")
    assert effects.grants == []
    # B is loaded but idle: C's swap evicts it at once.
    assert effects.starts == [StartSwapCall("B", ()), StartSwapCall("C", ("B",))]
    assert scheduler.waiters("C") == (c,)


def test_cancel_of_unknown_or_granted_requests_is_a_no_op() -> None:
    scheduler, effects = make(ready=["A"])
    scheduler.on_request(a := req("A"))
    scheduler.on_cancel(a)  # raced the grant: it is serving and stays counted
    scheduler.on_cancel(req("B"))
    assert scheduler.in_flight("A") == 1 and scheduler.admitted("A") == 1
    assert effects.calls == [GrantServeCall(a, "A", True)]


# -- the grant contract ---------------------------------------------------------------


def test_fast_path_grant_to_a_gone_caller_is_not_counted() -> None:
    scheduler, effects = make(ready=["A"])
    a = req("A")
    effects.mark_gone(a)
    scheduler.on_request(a)
    assert effects.calls == [GrantServeCall(a, "A", False)]
    assert scheduler.in_flight("A") == 0 and scheduler.admitted("A") == 0
    scheduler.on_request(b := req("B"))  # A is idle: B's swap starts at once
    assert effects.starts == [StartSwapCall("B", ("A",))]
    assert scheduler.waiters("B") == (b,)


def test_swap_grant_to_a_gone_caller_is_not_counted() -> None:
    scheduler, effects = make()
    scheduler.on_request(b := req("B"))
    scheduler.on_request(c := req("C"))
    effects.mark_gone(b)
    finish_swap(scheduler, effects, "B")
    assert scheduler.in_flight("B") == 0 and scheduler.admitted("B") == 0
    # Had the gone grant been counted, B would look busy forever and C would hang.
    assert effects.starts[-1] == StartSwapCall("C", ("B",))
    assert scheduler.waiters("C") == (c,)


def test_serve_done_without_a_grant_raises() -> None:
    scheduler, _ = make(ready=["A"])
    with pytest.raises(RuntimeError, match=r"'A'.*no request"):
        scheduler.on_serve_done("A")
    scheduler.on_request(req("A"))
    scheduler.on_serve_done("A")
    with pytest.raises(RuntimeError, match="'A'"):
        scheduler.on_serve_done("A")


# -- swap completion ---------------------------------------------------------------------


def test_swap_error_reaches_every_waiter_with_the_cause() -> None:
    scheduler, effects = make()
    scheduler.on_request(b1 := req("B"))
    scheduler.on_request(b2 := req("B"))
    boom = OSError("exit status 1")
    finish_swap(scheduler, effects, "B", boom)
    errors = effects.errors
    assert [e.request for e in errors] == [b1, b2]
    for call in errors:
        assert isinstance(call.error, SwapFailed)
        assert str(call.error) == "swap to 'B' failed: exit status 1"
        assert call.error.__cause__ is boom
    assert errors[0].error is not errors[1].error
    assert scheduler.admitted("B") == 0 and scheduler.in_flight("B") == 0


def test_swap_error_without_a_message_names_the_error_type() -> None:
    scheduler, effects = make()
    scheduler.on_request(req("B"))
    scheduler.on_swap_done("B", TimeoutError())
    assert str(effects.errors[0].error) == "swap to 'B' failed: TimeoutError"


def test_a_failed_swap_drains_the_queue() -> None:
    scheduler, effects = make()
    scheduler.on_request(req("B"))
    scheduler.on_request(c := req("C"))
    finish_swap(scheduler, effects, "B", RuntimeError("no GPU"))
    assert effects.starts[-1] == StartSwapCall("C", ())
    assert scheduler.waiters("C") == (c,)


def test_unknown_or_duplicate_swap_done_raises() -> None:
    scheduler, effects = make()
    with pytest.raises(RuntimeError, match="'B'"):
        scheduler.on_swap_done("B", None)
    scheduler.on_request(req("B"))
    finish_swap(scheduler, effects, "B")
    with pytest.raises(RuntimeError, match="duplicate"):
        scheduler.on_swap_done("B", None)


# -- unload ---------------------------------------------------------------------------------


def test_unload_fails_waiters_and_queued_requests_for_the_models() -> None:
    planner = TablePlanner({"C": ["B"], "A": ["B"]})
    scheduler, effects = make(planner)
    scheduler.on_request(b := req("B"))
    effects.states["B"] = STARTING  # the driver is loading B
    scheduler.on_request(c1 := req("C"))  # collides: would evict B's target
    scheduler.on_request(a := req("A"))  # collides too
    scheduler.on_request(c2 := req("C"))
    effects.take_calls()
    scheduler.on_unload(["C", "B"])
    errors = {call.request: call.error for call in effects.errors}
    assert set(errors) == {b, c1, c2}
    assert all(isinstance(e, ModelUnloaded) for e in errors.values())
    assert "'B'" in str(errors[b]) and "'C'" in str(errors[c1])
    assert scheduler.queued == (a,) and scheduler.position(a) == 1
    assert scheduler.swaps == {}
    assert scheduler.admitted("B") == scheduler.admitted("C") == 0
    # A moved from position 2 to 1.
    assert effects.position(a) == 1
    # The released swap's completion is tolerated, once.
    scheduler.on_swap_done("B", None)
    with pytest.raises(RuntimeError):
        scheduler.on_swap_done("B", None)
    # Until the unload is done, A's swap (which would stop B) collides with it.
    scheduler.on_tick()
    assert effects.starts == []
    effects.states["B"] = STOPPED
    scheduler.on_unload_done(["C", "B"])
    assert effects.starts == [StartSwapCall("A", ())]


def test_requests_during_an_unload_wait_for_it_to_finish() -> None:
    scheduler, effects = make(ready=["A"])
    scheduler.on_request(req("A"))
    scheduler.on_unload(["A"])
    assert scheduler.in_flight("A") == 1  # serving requests end on their own
    scheduler.on_request(a := req("A"))  # A still reads READY, but is being stopped
    scheduler.on_request(b := req("B"))  # would stop A: collides with the unload
    assert effects.grants[1:] == [] and scheduler.queued == (a, b)
    scheduler.on_serve_done("A")
    assert effects.starts == []
    effects.states["A"] = STOPPED
    scheduler.on_unload_done(["A"])
    assert effects.starts == [StartSwapCall("A", ())]
    assert scheduler.waiters("A") == (a,) and scheduler.queued == (b,)


def test_unload_done_without_unload_just_drains() -> None:
    scheduler, effects = make(ready=["A"])
    scheduler.on_request(req("A"))
    scheduler.on_request(req("B"))
    scheduler.on_unload_done(["A", "Z"])
    assert effects.starts == []


# -- shutdown ---------------------------------------------------------------------------------


def test_shutdown_fails_everyone_waiting_and_refuses_new_requests() -> None:
    scheduler, effects = make(ready=["A"])
    scheduler.on_request(a := req("A"))
    scheduler.on_request(b := req("B"))
    scheduler.on_serve_done("A")  # B's swap starts
    scheduler.on_request(c := req("C"))  # queued behind B's swap
    effects.take_calls()
    error = RouterShutdown("router is shutting down")
    scheduler.on_shutdown(error)
    assert effects.calls == [GrantErrorCall(b, error), GrantErrorCall(c, error)]
    assert scheduler.is_shut_down
    assert scheduler.queued == () and scheduler.swaps == {}
    assert scheduler.admitted("B") == scheduler.admitted("C") == 0
    scheduler.on_request(d := req("A"))
    assert effects.calls[-1] == GrantErrorCall(d, error)
    scheduler.on_swap_done("B", None)  # released: tolerated
    scheduler.on_shutdown(RouterShutdown("again"))  # idempotent
    assert len(effects.calls) == 3
    assert effects.outcomes(a) == []  # granted before the shutdown: not recorded after take


def test_serving_requests_end_normally_after_shutdown() -> None:
    scheduler, effects = make(ready=["A"])
    scheduler.on_request(req("A"))
    scheduler.on_shutdown(RouterShutdown("bye"))
    assert scheduler.in_flight("A") == 1
    scheduler.on_serve_done("A")
    assert scheduler.in_flight("A") == 0 and scheduler.admitted("A") == 0
    assert effects.states["A"] is READY
