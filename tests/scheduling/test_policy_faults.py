"""Planner faults fail only the request they concern, in every shipped scheduler.

A planner hook that raises (``eviction_for``, ``on_swap_start``, ``on_serve``)
or answers invalidly fails the request it was called for with
``PolicyError`` (the planner's exception as ``__cause__``), is logged once
with its traceback, and leaves every other request and the scheduler's books
consistent. The hand-written tests pin each hook on the three schedulers;
the machines at the end rerun the random-event property tests with faults
armed at random.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule
from test_fifo_doubles import Clock, OneAtATime, TablePlanner, finish_swap, req
from test_fifo_properties import MODELS, AnyScheduler, CheckingEffects, FIFOMachine
from test_scheduler_properties import ArrivalOrderMachine, CostAwareMachine

from swapcore import (
    ArrivalOrderScheduler,
    CostAwareScheduler,
    FIFOScheduler,
    PolicyError,
    SwapPlanner,
)
from swapcore.testing import FaultyPlanner, InjectedFault, RecordingEffects, StartSwapCall
from swapcore.testing.faults import HOOKS, INVALID_ANSWER, Hook

Factory = Callable[..., Any]
SCHEDULERS: list[Factory] = [FIFOScheduler, CostAwareScheduler, ArrivalOrderScheduler]


@pytest.fixture(params=SCHEDULERS, ids=lambda factory: factory.__name__)
def factory(request: pytest.FixtureRequest) -> Factory:
    scheduler: Factory = request.param
    return scheduler


def build(
    factory: Factory, planner: SwapPlanner | None = None, *, ready: str = "", **kwargs: Any
) -> tuple[Any, RecordingEffects, FaultyPlanner]:
    faulty = FaultyPlanner(planner or OneAtATime())
    effects = RecordingEffects.for_models("ABCD", ready=ready)
    kwargs.setdefault("clock", Clock(0.0))
    return factory(faulty, effects, **kwargs), effects, faulty


def policy_error(effects: RecordingEffects, request: Any) -> PolicyError:
    error = effects.error(request)
    assert isinstance(error, PolicyError), f"request {request.id} got {error!r}"
    return error


def fault_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "swapcore.scheduling" and r.levelno == logging.ERROR
    ]


# -- eviction_for ---------------------------------------------------------------------


def test_eviction_for_raising_fails_that_request_only(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler, effects, faulty = build(factory)
    faulty.arm("eviction_for", target="A")
    with caplog.at_level(logging.ERROR, logger="swapcore.scheduling"):
        scheduler.on_request(a := req("A"))
    error = policy_error(effects, a)
    assert str(error) == (
        "planner FaultyPlanner.eviction_for('A', []) raised "
        "InjectedFault: injected fault in eviction_for('A')"
    )
    assert isinstance(error.__cause__, InjectedFault)
    assert scheduler.admitted("A") == 0 and scheduler.queued == () and effects.starts == []
    [record] = fault_records(caplog)
    assert "FaultyPlanner.eviction_for('A', [])" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[1] is error.__cause__
    scheduler.on_request(b := req("B"))  # the scheduler carries on
    assert effects.starts == [StartSwapCall("B", ())] and b in scheduler.waiters("B")


def test_a_drain_fails_the_request_examined_and_goes_on(factory: Factory) -> None:
    scheduler, effects, faulty = build(factory, ready="A")
    scheduler.on_request(a := req("A"))  # serving: B, C and D must wait for A
    scheduler.on_request(b := req("B"))
    scheduler.on_request(c := req("C"))
    scheduler.on_request(d := req("D"))
    assert scheduler.queued == (b, c, d) and effects.served() == [a]
    faulty.arm("eviction_for", target="B")
    scheduler.on_serve_done("A")
    assert isinstance(policy_error(effects, b).__cause__, InjectedFault)
    assert effects.starts == [StartSwapCall("C", ("A",))]  # the drain went on with C
    assert scheduler.waiters("C") == (c,)
    assert scheduler.queued == (d,) and effects.position(d) == 1  # D moved up, told once
    assert [scheduler.admitted(m) for m in "ABCD"] == [0, 0, 1, 1]


def test_one_fault_per_pass_fails_every_request_for_that_target_and_logs_once(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler, effects, faulty = build(factory, ready="A")
    scheduler.on_request(req("A"))
    scheduler.on_request(b1 := req("B"))
    scheduler.on_request(b2 := req("B"))
    faulty.arm("eviction_for", target="B")  # one raise: the pass remembers it
    with caplog.at_level(logging.ERROR, logger="swapcore.scheduling"):
        scheduler.on_serve_done("A")
    assert policy_error(effects, b1).__cause__ is policy_error(effects, b2).__cause__
    assert policy_error(effects, b1) is not policy_error(effects, b2)  # one error per caller
    assert len(fault_records(caplog)) == 1 and faulty.injected == 1
    assert scheduler.queued == () and scheduler.admitted("B") == 0


def test_an_invalid_answer_fails_the_request_without_a_cause(factory: Factory) -> None:
    scheduler, effects, faulty = build(factory)
    faulty.arm("eviction_for", invalid=True)
    scheduler.on_request(a := req("A"))
    error = policy_error(effects, a)
    assert error.__cause__ is None
    assert f"returned [{INVALID_ANSWER!r}]" in str(error)
    assert "is not a running model other than the target" in str(error)
    assert scheduler.admitted("A") == 0


# -- on_swap_start and on_serve ---------------------------------------------------------


def test_on_swap_start_raising_fails_the_request_and_starts_no_swap(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler, effects, faulty = build(factory, ready="A")
    scheduler.on_request(a := req("A"))
    scheduler.on_request(b1 := req("B"))
    scheduler.on_request(b2 := req("B"))
    faulty.arm("on_swap_start", target="B")
    with caplog.at_level(logging.ERROR, logger="swapcore.scheduling"):
        scheduler.on_serve_done("A")
    error = policy_error(effects, b1)
    assert str(error).startswith("planner FaultyPlanner.on_swap_start('B', ['A']) raised")
    assert isinstance(error.__cause__, InjectedFault)
    # b2 starts the swap the failed request could not: the fault was one call.
    assert effects.starts == [StartSwapCall("B", ("A",))] and scheduler.waiters("B") == (b2,)
    assert scheduler.admitted("B") == 1 and effects.served() == [a]
    [record] = fault_records(caplog)
    assert f"request {b1.id} fails with PolicyError (the swap does not start)" in (
        record.getMessage()
    )


def test_on_serve_raising_fails_that_waiter_only(factory: Factory) -> None:
    scheduler, effects, faulty = build(factory)
    scheduler.on_request(a1 := req("A"))
    scheduler.on_request(a2 := req("A"))
    faulty.arm("on_serve")
    finish_swap(scheduler, effects, "A")
    error = policy_error(effects, a1)
    assert str(error).startswith("planner FaultyPlanner.on_serve('A', 0.0) raised")
    assert effects.served() == [a2]  # on_serve comes first: a1 was never granted
    assert scheduler.in_flight("A") == 1 and scheduler.admitted("A") == 1
    scheduler.on_serve_done("A")
    assert scheduler.in_flight("A") == 0 and scheduler.admitted("A") == 0


def test_on_serve_raising_on_the_fast_path(factory: Factory) -> None:
    scheduler, effects, faulty = build(factory, ready="A")
    faulty.arm("on_serve", target="A")
    scheduler.on_request(a1 := req("A"))
    scheduler.on_request(a2 := req("A"))
    assert isinstance(policy_error(effects, a1).__cause__, InjectedFault)
    assert effects.served() == [a2] and scheduler.in_flight("A") == 1


# -- the starvation guard ----------------------------------------------------------------


@pytest.mark.parametrize("factory", [FIFOScheduler, CostAwareScheduler], ids=lambda f: f.__name__)
def test_a_fault_for_the_starved_request_holds_others_back(factory: Factory) -> None:
    clock = Clock(0.0)
    # B must stop A; C and D stop nothing.
    planner = TablePlanner({"B": ["A"]})
    scheduler, effects, faulty = build(factory, planner, ready="AC", max_wait=1.0, clock=clock)
    scheduler.on_request(req("A"))
    scheduler.on_request(b := req("B"))  # queued behind busy A
    clock.now = 2.0  # b is starved: nothing may delay it
    faulty.arm("eviction_for", target="B")
    scheduler.on_request(c := req("C", at=2.0))
    # What b needs is unknown: c's fast path waits (it would have been granted).
    assert effects.error(c) is None and effects.error(b) is None
    assert scheduler.queued == (b, c)
    scheduler.on_serve_done("A")  # the planner answers again: b starts, c is served
    assert effects.starts == [StartSwapCall("B", ("A",))] and b in scheduler.waiters("B")
    assert c in effects.served() and scheduler.queued == ()


class WhatIfFails(SwapPlanner):
    """B stops A; asked for B while D runs (the starvation guard's what-if), it raises."""

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        if target == "B" and "D" in running:
            raise ValueError("what-if")
        return ["A"] if target == "B" and "A" in running else []


@pytest.mark.parametrize("factory", [FIFOScheduler, CostAwareScheduler], ids=lambda f: f.__name__)
def test_a_fault_in_the_guards_what_if_is_conservative_and_logged(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(0.0)
    effects = RecordingEffects.for_models("ABCD", ready="A")
    scheduler = factory(WhatIfFails(), effects, max_wait=1.0, clock=clock)
    scheduler.on_request(req("A"))
    scheduler.on_request(b := req("B"))
    clock.now = 2.0
    with caplog.at_level(logging.ERROR, logger="swapcore.scheduling"):
        scheduler.on_request(d := req("D", at=2.0))
    assert effects.starts == [] and scheduler.queued == (b, d)  # d waits, nobody fails
    assert effects.errors == []
    [record] = fault_records(caplog)
    assert "WhatIfFails.eviction_for('B', ['A', 'D']) raised ValueError: what-if" in (
        record.getMessage()
    )
    assert "what-if" in record.getMessage() and record.exc_info is not None
    scheduler.on_serve_done("A")
    assert [s.model for s in effects.starts] == ["B", "D"]


# -- random faults under the random-event machines ----------------------------------------


class PlannerFaults:
    """Mixin for the scheduler machines: the planner is wrapped, faults are armed at random.

    Every rule and invariant of the machine keeps holding (no request
    resolved twice, counts consistent, every unresolved request queued or
    waiting, no deadlock at the end); a request may now also fail with
    ``PolicyError``, whose cause must be the injected fault (or none, for an
    invalid answer).
    """

    effects: CheckingEffects
    faulty: FaultyPlanner

    def build(
        self, planner: SwapPlanner, *, priority: dict[str, int], limit: int, max_wait: float | None
    ) -> AnyScheduler:
        self.faulty = FaultyPlanner(planner)
        built: AnyScheduler = super().build(  # type: ignore[misc]
            self.faulty, priority=priority, limit=limit, max_wait=max_wait
        )
        return built

    @rule(
        hook=st.sampled_from(HOOKS),
        model=st.none() | st.sampled_from(MODELS),
        times=st.integers(1, 3),
        invalid=st.booleans(),
    )
    def planner_fault(self, hook: Hook, model: str | None, times: int, invalid: bool) -> None:
        """The next 1-3 calls of a hook (for one model, or any) fail."""
        if hasattr(self, "faulty"):
            invalid = invalid and hook == "eviction_for"
            self.faulty.arm(hook, target=model, times=times, invalid=invalid)

    @invariant()
    def policy_errors_carry_the_fault(self) -> None:
        for call in self.effects.errors:
            error = call.error
            if isinstance(error, PolicyError):
                assert "FaultyPlanner." in str(error)
                if error.__cause__ is None:
                    assert INVALID_ANSWER in str(error)
                else:
                    assert isinstance(error.__cause__, InjectedFault)


class FaultyFIFOMachine(PlannerFaults, FIFOMachine):
    pass


class FaultyCostAwareMachine(PlannerFaults, CostAwareMachine):
    pass


class FaultyArrivalOrderMachine(PlannerFaults, ArrivalOrderMachine):
    pass


TestFaultyFIFO = FaultyFIFOMachine.TestCase
TestFaultyCostAware = FaultyCostAwareMachine.TestCase
TestFaultyArrivalOrder = FaultyArrivalOrderMachine.TestCase
