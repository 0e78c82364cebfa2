"""The router's sleeping tier: evictions sleep or stop, sleeping targets wake, costs are learned."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from router_helpers import OneAtATime, bounded

from swapcore import BaseRouter, ProcessState
from swapcore.events import CostMeasured, RouterEvent, SwapStarted
from swapcore.planners.residency import Eviction, SleepRules
from swapcore.testing.fakes import FakeProcess

SLEEPING, READY, STOPPED = ProcessState.SLEEPING, ProcessState.READY, ProcessState.STOPPED


async def use(router: BaseRouter, model: str) -> None:
    async with router.acquire(model):
        pass


def sleepers(*models: str, **kwargs: object) -> dict[str, FakeProcess]:
    return {m: FakeProcess(m, sleep_level=1, **kwargs) for m in models}  # type: ignore[arg-type]


async def test_an_evicted_model_sleeps_and_wakes_without_a_restart() -> None:
    procs = sleepers("a", "b")
    events: list[RouterEvent] = []
    planner = OneAtATime()
    async with BaseRouter(procs, planner, on_event=events.append) as router:
        assert planner.sleep_rules == SleepRules(levels={"a": 1, "b": 1})  # filled in
        await bounded(use(router, "a"))
        await bounded(use(router, "b"))
        assert procs["a"].state is SLEEPING and procs["b"].state is READY
        assert router.model_state("a") is SLEEPING
        assert "a" not in router.running_models()
        await bounded(use(router, "a"))
        assert procs["a"].state is READY and procs["b"].state is SLEEPING
        assert (procs["a"].starts, procs["a"].wakes, procs["a"].stops) == (1, 1, 0)
        snapshot = router.snapshot().models
        assert snapshot["b"].state is SLEEPING
        costs = router.costs
        assert costs.measured("a", "load") == 1
        assert costs.measured("a", "sleep") == 1
        assert costs.measured("a", "wake") == 1
        assert costs.measured("b", "sleep") == 1
    started = [e for e in events if isinstance(e, SwapStarted)]
    assert [(e.model, e.evict, e.asleep, e.wake) for e in started] == [
        ("a", (), (), False),
        ("b", ("a",), ("a",), False),
        ("a", ("b",), ("b",), True),
    ]
    kinds = [(e.model, e.kind) for e in events if isinstance(e, CostMeasured)]
    assert ("a", "wake") in kinds and ("b", "sleep") in kinds
    # Shutdown stops the sleepers too.
    assert procs["b"].state is not SLEEPING


async def test_a_host_budget_for_one_sleeper_stops_the_second() -> None:
    procs = sleepers("a", "b", "c")
    planner = OneAtATime()
    planner.sleep_rules = SleepRules(
        levels=dict.fromkeys("abc", 1), host_memory=dict.fromkeys("abc", 8), host_budget=10
    )
    async with BaseRouter(procs, planner) as router:
        await bounded(use(router, "a"))
        await bounded(use(router, "b"))  # a sleeps
        await bounded(use(router, "c"))  # b would not fit beside a: stopped
        assert [procs[m].state for m in "abc"] == [SLEEPING, STOPPED, READY]
        assert (procs["b"].sleeps, procs["b"].stops) == (0, 1)
        await bounded(use(router, "a"))  # a is asleep while c leaves: no room for c
        assert [procs[m].state for m in "abc"] == [READY, STOPPED, STOPPED]
        await bounded(use(router, "b"))  # a sleeps again: the host holds it alone
        assert [procs[m].state for m in "abc"] == [SLEEPING, READY, STOPPED]


async def test_a_model_whose_process_cannot_sleep_is_stopped() -> None:
    procs = {"a": FakeProcess("a"), "b": FakeProcess("b")}
    planner = OneAtATime()
    planner.sleep_rules = SleepRules(levels={"a": 1, "b": 1})
    async with BaseRouter(procs, planner) as router:
        await bounded(use(router, "a"))
        await bounded(use(router, "b"))
        assert procs["a"].state is STOPPED


async def test_a_failed_sleep_becomes_a_stop(caplog: pytest.LogCaptureFixture) -> None:
    procs = sleepers("a", "b")
    procs["a"].fail_sleep = 1
    async with BaseRouter(procs, OneAtATime()) as router:
        await bounded(use(router, "a"))
        await bounded(use(router, "b"))
        assert procs["a"].state is STOPPED
        assert router.costs.measured("a", "stop") == 1
        await bounded(use(router, "a"))
        assert procs["a"].starts == 2
    assert "model 'a' could not sleep (FakeProcessError: a: scripted sleep failure)" in caplog.text


async def test_a_failed_wake_starts_cold() -> None:
    procs = sleepers("a", "b")
    async with BaseRouter(procs, OneAtATime()) as router:
        await bounded(use(router, "a"))
        await bounded(use(router, "b"))
        procs["a"].fail_wake = 1
        await bounded(use(router, "a"))
        assert procs["a"].state is READY
        assert (procs["a"].failed_wakes, procs["a"].starts) == (1, 2)


async def test_a_model_that_dies_asleep_is_simply_stopped() -> None:
    procs = sleepers("a", "b")
    async with BaseRouter(procs, OneAtATime()) as router:
        await bounded(use(router, "a"))
        await bounded(use(router, "b"))
        procs["a"].crash()
        assert router.model_state("a") is STOPPED
        await bounded(use(router, "a"))
        assert procs["a"].state is READY and procs["a"].starts == 2


async def test_unload_stops_sleeping_models() -> None:
    procs = sleepers("a", "b")
    async with BaseRouter(procs, OneAtATime()) as router:
        await bounded(use(router, "a"))
        await bounded(use(router, "b"))
        await bounded(router.unload())
        assert [procs[m].state for m in "ab"] == [STOPPED, STOPPED]


class BrokenResidency(OneAtATime):
    def residency_for(self, target: str, evict: Sequence[str], sleeping: Sequence[str]) -> Eviction:
        raise RuntimeError("no idea")


async def test_a_residency_fault_stops_every_evicted_model(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    procs = sleepers("a", "b")
    async with BaseRouter(procs, BrokenResidency()) as router:
        await bounded(use(router, "a"))
        await bounded(use(router, "b"))
        assert procs["a"].state is STOPPED
    assert "BrokenResidency.residency_for('b', ['a']) raised" in caplog.text


async def test_a_request_for_a_model_falling_asleep_waits_then_wakes_it() -> None:
    procs = sleepers("a", "b", sleep_delay=0.05)
    async with BaseRouter(procs, OneAtATime()) as router:
        await bounded(use(router, "a"))
        to_b = asyncio.ensure_future(use(router, "b"))
        await bounded(procs["a"].wait_state(ProcessState.STOPPING))
        await bounded(use(router, "a"))  # waits for b's swap, then wakes a
        await bounded(to_b)
        assert procs["a"].state is READY
        assert (procs["a"].sleeps, procs["a"].wakes, procs["a"].starts) == (1, 1, 1)
