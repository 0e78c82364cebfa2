"""Every scheduler keeps the Scheduler contract: FIFO's random-event machine, run on the others.

``CostAwareMachine`` and ``ArrivalOrderMachine`` reuse ``FIFOMachine``'s
driver, rules and invariants (test_fifo_properties.py) with another scheduler
under test; the arrival-order machine also checks that nothing passes a
queued request. The parametrised tests below pin the shared contract on all
three schedulers with hand-written sequences.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant
from test_fifo_doubles import READY, STOPPED, Clock, OneAtATime, finish_swap, req
from test_fifo_properties import SETUP, AnyScheduler, CheckingEffects, FIFOMachine

from swapcore import (
    ArrivalOrderScheduler,
    ConcurrencyLimitExceeded,
    CostAwareScheduler,
    FIFOScheduler,
    ModelNotFound,
    ModelUnloaded,
    Request,
    RouterShutdown,
    SwapFailed,
    SwapPlanner,
)
from swapcore.testing.effects import RecordingEffects, StartSwapCall

# -- the stateful machines -----------------------------------------------------------


class CostAwareMachine(FIFOMachine):
    """FIFO's machine with a CostAwareScheduler; its knobs are drawn too."""

    @initialize(
        **SETUP,
        load_times=st.dictionaries(st.sampled_from("ABCD"), st.sampled_from([0.5, 1.0, 20.0])),
        wait_offset=st.sampled_from([0.1, 1.0, 30.0]),
        age_exponent=st.sampled_from([0.0, 1.0, 3.0]),
        hold=st.sampled_from([0.0, 2.0, "auto"]),
    )
    def setup(  # replaces FIFOMachine.setup: hypothesis runs every @initialize rule
        self,
        planner: SwapPlanner,
        priority: dict[str, int],
        limit: int,
        max_wait: float | None,
        ready: set[str],
        load_times: dict[str, float],
        wait_offset: float,
        age_exponent: float,
        hold: float | str,
    ) -> None:
        self.knobs = {
            "load_times": load_times,
            "wait_offset": wait_offset,
            "age_exponent": age_exponent,
            "hold": hold,
        }
        super().setup(planner, priority, limit, max_wait, ready)

    def build(
        self, planner: SwapPlanner, *, priority: dict[str, int], limit: int, max_wait: float | None
    ) -> AnyScheduler:
        return CostAwareScheduler(
            planner,
            self.effects,
            priority=priority,
            default_concurrency_limit=limit,
            max_wait=max_wait,
            clock=self.clock,
            **self.knobs,
        )

    def _let_time_pass(self) -> bool:
        """Time passes (the driver ticks) while a hold keeps work queued."""
        if self.scheduler.queued and (deadline := self.scheduler.next_deadline()):
            self.clock.now = max(self.clock.now, deadline)
            self.scheduler.on_tick()
            return True
        return False


class HeadOfLineEffects(CheckingEffects):
    """Also checks, at each grant and swap start, that no earlier request is still queued."""

    def _check_nobody_earlier_is_queued(self, request: Request) -> None:
        earlier = [r.id for r in self.machine.scheduler.queued if r.id < request.id]
        assert not earlier, f"request {request.id} passed queued requests {earlier}"

    def grant_serve(self, request: Request, model: str) -> bool:
        # A swap's waiters are granted together: they were all ahead of the queue.
        self._check_nobody_earlier_is_queued(request)
        return super().grant_serve(request, model)

    def start_swap(self, model: str, evict: Any) -> None:
        for waiter in self.machine.scheduler.waiters(model):
            self._check_nobody_earlier_is_queued(waiter)
        super().start_swap(model, evict)


class ArrivalOrderMachine(FIFOMachine):
    """FIFO's machine with an ArrivalOrderScheduler (priorities and max_wait do not apply)."""

    def __init__(self) -> None:
        super().__init__()
        self.effects = HeadOfLineEffects(self)

    def build(
        self, planner: SwapPlanner, *, priority: dict[str, int], limit: int, max_wait: float | None
    ) -> AnyScheduler:
        return ArrivalOrderScheduler(
            planner, self.effects, default_concurrency_limit=limit, clock=self.clock
        )

    @invariant()
    def the_queue_is_in_arrival_order_behind_every_waiter(self) -> None:
        if not hasattr(self, "scheduler"):
            return
        queued = [request.id for request in self.scheduler.queued]
        assert queued == sorted(queued)
        waiting = [w.id for model in "ABCD" for w in self.scheduler.waiters(model)]
        if queued and waiting:
            assert max(waiting) < queued[0]


TestCostAwareProperties = CostAwareMachine.TestCase
TestArrivalOrderProperties = ArrivalOrderMachine.TestCase


# -- the shared contract, by hand -------------------------------------------------------

Factory = Callable[..., Any]
SCHEDULERS: list[Factory] = [FIFOScheduler, CostAwareScheduler, ArrivalOrderScheduler]


def build(factory: Factory, *, ready: str = "", **kwargs: Any) -> tuple[Any, RecordingEffects]:
    effects = RecordingEffects.for_models("ABC", ready=ready)
    if factory is not ArrivalOrderScheduler or "clock" in kwargs:
        kwargs.setdefault("clock", Clock(0.0))
    return factory(OneAtATime(), effects, **kwargs), effects


@pytest.fixture(params=SCHEDULERS, ids=lambda factory: factory.__name__)
def factory(request: pytest.FixtureRequest) -> Factory:
    scheduler: Factory = request.param
    return scheduler


def test_unknown_models_and_full_models_are_refused_at_once(factory: Factory) -> None:
    scheduler, effects = build(factory, concurrency_limits={"A": 2})
    scheduler.on_request(z := req("Z"))
    requests = [req("A") for _ in range(3)]
    for request in requests:
        scheduler.on_request(request)
    assert isinstance(effects.error(z), ModelNotFound)
    assert isinstance(effects.error(requests[2]), ConcurrencyLimitExceeded)
    assert scheduler.admitted("A") == 2 and scheduler.admitted("Z") == 0


def test_a_swap_error_reaches_every_waiter(factory: Factory) -> None:
    scheduler, effects = build(factory)
    scheduler.on_request(a1 := req("A"))
    scheduler.on_request(a2 := req("A"))
    scheduler.on_request(b := req("B"))
    cause = OSError("exit 1")
    finish_swap(scheduler, effects, "A", cause)
    for request in (a1, a2):
        error = effects.error(request)
        assert isinstance(error, SwapFailed) and error.__cause__ is cause
    assert scheduler.admitted("A") == 0
    assert effects.starts[-1] == StartSwapCall("B", ())  # the queue moved on
    assert b in scheduler.waiters("B")


def test_a_cancelled_request_never_loads(factory: Factory) -> None:
    scheduler, effects = build(factory, ready="A")
    scheduler.on_request(req("A"))
    scheduler.on_request(b := req("B"))
    scheduler.on_cancel(b)
    scheduler.on_serve_done("A")
    assert effects.starts == [] and scheduler.queued == ()
    assert scheduler.admitted("B") == 0


def test_unload_fails_waiters_and_queued_requests(factory: Factory) -> None:
    scheduler, effects = build(factory)
    scheduler.on_request(a := req("A"))
    scheduler.on_request(b := req("B"))
    scheduler.on_request(c := req("C"))
    scheduler.on_unload(["A", "B"])
    assert isinstance(effects.error(a), ModelUnloaded)
    assert isinstance(effects.error(b), ModelUnloaded)
    assert scheduler.queued == (c,)
    scheduler.on_swap_done("A", OSError("cancelled by unload"))  # released: ignored
    scheduler.on_unload_done(["A", "B"])
    assert effects.starts[-1] == StartSwapCall("C", ())


def test_shutdown_fails_everyone_and_refuses_new_requests(factory: Factory) -> None:
    scheduler, effects = build(factory, ready="A")
    scheduler.on_request(a := req("A"))
    scheduler.on_request(b := req("B"))
    error = RouterShutdown("bye")
    scheduler.on_shutdown(error)
    scheduler.on_request(c := req("C"))
    assert effects.error(b) is error and effects.error(c) is error
    assert effects.served() == [a] and scheduler.is_shut_down
    scheduler.on_serve_done("A")
    assert scheduler.in_flight("A") == 0 and effects.starts == []


def test_reentrant_calls_name_the_scheduler(factory: Factory) -> None:
    class Reentrant(RecordingEffects):
        scheduler: Any

        def grant_serve(self, request: Request, model: str) -> bool:
            self.scheduler.on_serve_done(model)
            return True

    effects = Reentrant({"A": READY, "B": STOPPED})
    effects.scheduler = factory(OneAtATime(), effects)
    with pytest.raises(RuntimeError, match=rf"{factory.__name__}\.on_serve_done\(\).*effect"):
        effects.scheduler.on_request(req("A"))
