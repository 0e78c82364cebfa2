"""RouterEvents: what is reported, once, in order."""

from __future__ import annotations

import asyncio
import functools

import attrs
import pytest
from router_helpers import OneAtATime, bounded, eventually

from swapcore import BaseRouter, ConcurrencyLimitExceeded, ModelNotFound
from swapcore.events import (
    CostMeasured,
    ModelsUnloaded,
    RequestGranted,
    RequestQueued,
    RequestRejected,
    RequestReleased,
    RouterEvent,
    SwapFinished,
    SwapStarted,
)
from swapcore.scheduling.fifo import FIFOScheduler
from swapcore.testing.fakes import FakeProcess


async def test_a_swap_reports_start_finish_and_grant_in_order() -> None:
    events: list[RouterEvent] = []
    procs = {m: FakeProcess(m) for m in "ab"}
    async with BaseRouter(procs, OneAtATime(), on_event=events.append) as router:
        await bounded(router.preload("a"))
        events.clear()
        async with router.acquire("b"):
            pass
        await bounded(router.unload("b"))
    measured = [e for e in events if isinstance(e, CostMeasured)]
    assert [(e.model, e.kind) for e in measured] == [("a", "stop"), ("b", "load"), ("b", "stop")]
    assert all(e.seconds >= 0 for e in measured)
    assert (router.costs.measured("a", "load"), router.costs.measured("b", "load")) == (1, 1)
    events = [e for e in events if not isinstance(e, CostMeasured)]
    started, finished, granted, released, unloaded = events[:5]
    assert started == SwapStarted(started.at, "b", ("a",))
    assert isinstance(finished, SwapFinished)
    assert (finished.model, finished.evict, finished.error) == ("b", ("a",), None)
    assert finished.duration >= 0
    assert isinstance(granted, RequestGranted) and granted.model == "b" and granted.waited >= 0
    assert isinstance(released, RequestReleased)
    assert (released.model, released.request_id) == ("b", granted.request_id)
    assert released.held == released.at - granted.at
    assert unloaded == ModelsUnloaded(unloaded.at, ("b",), "unload")
    assert [e.at for e in events] == sorted(e.at for e in events)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        started.model = "x"  # type: ignore[misc]


async def test_a_queued_request_is_reported_queued_once() -> None:
    events: list[RouterEvent] = []
    procs = {m: FakeProcess(m) for m in "abc"}
    async with BaseRouter(procs, OneAtATime(), on_event=events.append) as router:

        async def use(model: str) -> None:
            async with router.acquire(model):
                pass

        async with router.acquire("a"):
            tasks = [asyncio.create_task(use(m)) for m in "bc"]
            await eventually(lambda: len(router.snapshot().queue) == 2)
        await bounded(asyncio.gather(*tasks))
    queued = [e for e in events if isinstance(e, RequestQueued)]
    assert [(e.model, e.position) for e in queued] == [("b", 1), ("c", 2)]


async def test_rejections_carry_the_error_the_caller_gets() -> None:
    events: list[RouterEvent] = []
    scheduler = functools.partial(FIFOScheduler, default_concurrency_limit=1)
    procs = {"a": FakeProcess("a")}
    async with BaseRouter(procs, OneAtATime(), scheduler=scheduler, on_event=events.append) as r:
        with pytest.raises(ModelNotFound) as missing:
            async with r.acquire("nope"):
                pass  # pragma: no cover
        async with r.acquire("a"):
            with pytest.raises(ConcurrencyLimitExceeded) as full:
                async with r.acquire("a"):
                    pass  # pragma: no cover
    rejected = [e for e in events if isinstance(e, RequestRejected)]
    assert [e.error for e in rejected] == [missing.value, full.value]
    assert len({e.request_id for e in rejected}) == 2


class Reasoned(OneAtATime):
    """One model at a time, with a reason for each swap (or a broken one)."""

    def __init__(self, broken: bool = False) -> None:
        super().__init__()
        self.broken = broken

    def swap_reason(self, target: str) -> str:
        if self.broken:
            raise RuntimeError("no reason")
        return f"{target} runs alone"


async def test_a_swap_carries_the_planners_reason_and_is_remembered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[RouterEvent] = []
    procs = {m: FakeProcess(m) for m in "ab"}
    async with BaseRouter(procs, Reasoned(), on_event=events.append) as router:
        await bounded(router.preload("a"))
        with caplog.at_level("INFO", logger="swapcore"):
            await bounded(router.preload("b"))
        started = [e for e in events if isinstance(e, SwapStarted)]
        assert [(e.model, e.evict, e.reason) for e in started] == [
            ("a", (), "a runs alone"),
            ("b", ("a",), "b runs alone"),
        ]
        assert router.recent_swaps() == started
    assert "swap to 'b' evicts a: b runs alone" in caplog.text


async def test_a_failing_reason_is_logged_and_the_swap_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    procs = {m: FakeProcess(m) for m in "ab"}
    async with BaseRouter(procs, Reasoned(broken=True)) as router:
        await bounded(router.preload("a"))
        await bounded(router.preload("b"))
        assert [s.reason for s in router.recent_swaps()] == ["", ""]
        assert router.model_state("b") is not None
    assert "planner Reasoned.swap_reason('a') failed" in caplog.text
