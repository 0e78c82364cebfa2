"""Failures: failed swaps, timeouts, crashes, raising callbacks."""

from __future__ import annotations

import asyncio
import logging

import pytest
from router_helpers import OneAtATime, bounded, eventually, other_tasks

from swapcore import BaseRouter, ProcessState, SwapFailed
from swapcore.events import ProcessStateChanged, RequestGranted, RouterEvent, SwapFinished
from swapcore.testing.fakes import FakeProcess, FakeProcessError


async def _use(router: BaseRouter, model: str, **options: object) -> str:
    async with router.acquire(model, **options) as lease:  # type: ignore[arg-type]
        return lease.model


async def test_a_failed_swap_raises_swap_failed_and_the_next_request_retries() -> None:
    procs = {"a": FakeProcess("a", fail_start=1)}
    events: list[RouterEvent] = []
    async with BaseRouter(procs, OneAtATime(), on_event=events.append) as router:
        with pytest.raises(SwapFailed) as caught:
            await bounded(_use(router, "a"))
        assert isinstance(caught.value.__cause__, FakeProcessError)
        finished = [e for e in events if isinstance(e, SwapFinished)]
        assert finished[0].error is not None and "FakeProcessError" in finished[0].error
        assert await bounded(_use(router, "a")) == "a"
        assert procs["a"].starts == 2
        assert router.snapshot().models["a"].in_flight == 0


async def test_every_waiter_of_a_failed_swap_gets_the_process_error_as_cause() -> None:
    boom = OSError("no GPU")
    procs = {"a": FakeProcess("a", auto_ready=False, fail_start=boom)}
    async with BaseRouter(procs, OneAtATime()) as router:
        waiters = [asyncio.create_task(_use(router, "a")) for _ in range(3)]
        await bounded(procs["a"].wait_state(ProcessState.STARTING))
        procs["a"].mark_ready()  # the scripted failure happens now
        for waiter in waiters:
            with pytest.raises(SwapFailed) as caught:
                await bounded(waiter)
            assert caught.value.__cause__ is boom


async def test_swap_timeout_fails_the_swap() -> None:
    procs = {"a": FakeProcess("a", auto_ready=False)}
    async with BaseRouter(procs, OneAtATime(), swap_timeout=0.01) as router:
        with pytest.raises(SwapFailed) as caught:
            await bounded(_use(router, "a"))
        assert isinstance(caught.value.__cause__, TimeoutError)


async def test_a_failing_eviction_fails_the_swap() -> None:
    class BadStop(FakeProcess):
        async def stop(self, timeout: float) -> None:
            raise OSError("stuck")

    procs = {"a": BadStop("a"), "b": FakeProcess("b")}
    async with BaseRouter(procs, OneAtATime()) as router:
        await bounded(router.preload("a"))
        with pytest.raises(SwapFailed) as caught:
            await bounded(_use(router, "b"))
        assert isinstance(caught.value.__cause__, OSError)
        assert procs["b"].starts == 0
        procs["a"].crash()  # let shutdown finish cleanly


async def test_a_crash_while_serving_is_observed_and_the_next_request_restarts() -> None:
    procs = {"a": FakeProcess("a")}
    events: list[RouterEvent] = []
    async with BaseRouter(procs, OneAtATime(), on_event=events.append) as router:
        with pytest.raises(ConnectionError):
            async with router.acquire("a"):
                procs["a"].crash()
                raise ConnectionError("upstream died")  # what user code would see
        await eventually(lambda: router.snapshot().models["a"].in_flight == 0)
        changes = [e for e in events if isinstance(e, ProcessStateChanged)]
        assert [(e.model, e.old, e.new) for e in changes] == [
            ("a", ProcessState.READY, ProcessState.STOPPED)
        ]
        assert await bounded(_use(router, "a")) == "a"
        assert procs["a"].starts == 2 and procs["a"].crashed


async def test_a_process_stopped_by_someone_else_is_waited_for_and_restarted() -> None:
    """llama-swap #946: a request during an outside stop is not lost."""
    procs = {"a": FakeProcess("a", stop_delay=0.01)}
    async with BaseRouter(procs, OneAtATime()) as router:
        await bounded(router.preload("a"))
        operator = asyncio.create_task(procs["a"].stop(1.0))
        await bounded(procs["a"].wait_state(ProcessState.STOPPING))
        assert await bounded(_use(router, "a")) == "a"
        await bounded(operator)
        assert procs["a"].starts == 2
        assert procs["a"].state is ProcessState.READY


async def test_a_raising_on_event_callback_never_breaks_the_router(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[RouterEvent] = []

    def bad(event: RouterEvent) -> None:
        calls.append(event)
        raise RuntimeError("observer bug")

    procs = {m: FakeProcess(m) for m in "ab"}
    with caplog.at_level(logging.ERROR, logger="swapcore.router"):
        async with BaseRouter(procs, OneAtATime(), on_event=bad) as router:
            assert await bounded(_use(router, "a")) == "a"
            assert await bounded(_use(router, "b")) == "b"
    assert any(isinstance(e, RequestGranted) for e in calls)
    assert "on_event callback raised" in caplog.text
    assert not other_tasks()


async def test_a_raising_on_position_callback_never_breaks_the_router(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad(position: int) -> None:
        raise RuntimeError("ui bug")

    procs = {m: FakeProcess(m) for m in "ab"}
    with caplog.at_level(logging.ERROR, logger="swapcore.router"):
        async with BaseRouter(procs, OneAtATime()) as router:
            async with router.acquire("a"):
                task = asyncio.create_task(_use(router, "b", on_position=bad))
                await eventually(lambda: len(router.snapshot().queue) == 1)
            assert await bounded(task) == "b"
    assert "on_position callback" in caplog.text


async def test_swaps_are_logged_at_debug_and_failures_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The one INFO line per swap is the planner's; the router adds detail at DEBUG.
    procs = {m: FakeProcess(m) for m in "ab"}
    procs["c"] = FakeProcess("c", fail_start=1)
    with caplog.at_level(logging.DEBUG, logger="swapcore.router"):
        async with BaseRouter(procs, OneAtATime()) as router:
            await bounded(router.preload("a", "b"))
            with pytest.raises(SwapFailed):
                await bounded(router.preload("c"))
    records = [r for r in caplog.records if r.name == "swapcore.router"]
    debug = [r.getMessage() for r in records if r.levelno == logging.DEBUG]
    assert "swap to 'b' started (evicting a)" in debug
    assert sum("finished in" in m for m in debug) == 2
    assert not [r for r in records if r.levelno == logging.INFO and "swap" in r.getMessage()]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any(m.startswith("swap to 'c' failed after") for m in warnings)
