"""Cancellation is exact: queued, waiting on a swap, granted but not resumed."""

from __future__ import annotations

import asyncio

import pytest
from router_helpers import OneAtATime, bounded, eventually, other_tasks

from swapcore import BaseRouter, ProcessState
from swapcore.events import RequestCancelled, RequestGranted, RouterEvent
from swapcore.testing.fakes import FakeProcess


async def _hold(router: BaseRouter, model: str, release: asyncio.Event | None = None) -> str:
    async with router.acquire(model) as lease:
        if release is not None:
            await release.wait()
        return lease.model


async def _cancel(task: asyncio.Task[str]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(task)


async def test_cancelled_while_queued_never_triggers_a_load() -> None:
    procs = {m: FakeProcess(m) for m in "ab"}
    events: list[RouterEvent] = []
    async with BaseRouter(procs, OneAtATime(), on_event=events.append) as router:
        async with router.acquire("a"):  # a busy: b queues behind it
            queued = asyncio.create_task(_hold(router, "b"))
            await eventually(lambda: router.snapshot().models["b"].queued == 1)
            await _cancel(queued)
            assert router.snapshot().queue == ()
        await router._settled()  # a is idle now: a load of b would start here
        assert procs["b"].starts == 0
        assert procs["a"].stops == 0
        cancelled = [e for e in events if isinstance(e, RequestCancelled)]
        assert [e.model for e in cancelled] == ["b"]
    assert not other_tasks()


async def test_cancelled_while_waiting_on_a_swap_lets_the_swap_finish_without_a_leak() -> None:
    procs = {"a": FakeProcess("a"), "b": FakeProcess("b", auto_ready=False)}
    async with BaseRouter(procs, OneAtATime()) as router:
        waiter = asyncio.create_task(_hold(router, "b"))
        await bounded(procs["b"].wait_state(ProcessState.STARTING))
        await _cancel(waiter)
        snap = router.snapshot().models["b"]
        assert snap.swapping and snap.waiting == 0
        procs["b"].mark_ready()
        await router._settled()
        snap = router.snapshot().models["b"]
        assert snap.state is ProcessState.READY
        assert (snap.in_flight, snap.swapping) == (0, False)
        # Nothing pins b: a request for a evicts it.
        assert await bounded(_hold(router, "a")) == "a"
        assert procs["b"].stops == 1
    assert not other_tasks()


async def test_cancelled_after_the_grant_gives_the_grant_back() -> None:
    procs = {"a": FakeProcess("a"), "b": FakeProcess("b", auto_ready=False)}
    tasks: list[asyncio.Task[str]] = []
    events: list[RouterEvent] = []

    def on_event(event: RouterEvent) -> None:
        events.append(event)
        if isinstance(event, RequestGranted) and event.model == "b":
            tasks[0].cancel()  # the grant is set; the caller has not resumed yet

    async with BaseRouter(procs, OneAtATime(), on_event=on_event) as router:
        tasks.append(asyncio.create_task(_hold(router, "b")))
        await bounded(procs["b"].wait_state(ProcessState.STARTING))
        procs["b"].mark_ready()
        with pytest.raises(asyncio.CancelledError):
            await bounded(tasks[0])
        await eventually(lambda: router.snapshot().models["b"].in_flight == 0)
        assert [type(e) for e in events].count(RequestGranted) == 1
        assert not any(isinstance(e, RequestCancelled) for e in events)
        # The grant was given back: b can be evicted.
        assert await bounded(_hold(router, "a")) == "a"
        assert procs["b"].stops == 1
    assert not other_tasks()


async def test_a_grant_that_finds_its_caller_gone_is_not_counted() -> None:
    procs = {"a": FakeProcess("a", auto_ready=False)}
    tasks: list[asyncio.Task[str]] = []
    events: list[RouterEvent] = []
    release = asyncio.Event()

    def on_event(event: RouterEvent) -> None:
        events.append(event)
        if isinstance(event, RequestGranted) and len(tasks) == 2:
            # Inside the swap completion, between two grants: the second caller
            # leaves while the router is busy; its grant must not be counted.
            tasks[1].cancel()

    async with BaseRouter(procs, OneAtATime(), on_event=on_event) as router:
        tasks.append(asyncio.create_task(_hold(router, "a", release)))
        tasks.append(asyncio.create_task(_hold(router, "a", release)))
        await eventually(lambda: router.snapshot().models["a"].waiting == 2)
        await bounded(procs["a"].wait_state(ProcessState.STARTING))
        procs["a"].mark_ready()
        await eventually(lambda: router.snapshot().models["a"].in_flight == 1)
        with pytest.raises(asyncio.CancelledError):
            await bounded(tasks[1])
        assert router.snapshot().models["a"].in_flight == 1
        release.set()
        assert await bounded(tasks[0]) == "a"
        assert router.snapshot().models["a"].in_flight == 0
        outcomes = [
            type(e).__name__ for e in events if isinstance(e, (RequestGranted, RequestCancelled))
        ]
        assert sorted(outcomes) == ["RequestCancelled", "RequestGranted"]
    assert not other_tasks()


async def test_a_timeout_around_acquire_withdraws_the_request() -> None:
    procs = {m: FakeProcess(m) for m in "ab"}
    async with BaseRouter(procs, OneAtATime()) as router:
        async with router.acquire("a"):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(_hold(router, "b"), 0.01)
            assert router.snapshot().queue == ()
        await router._settled()
        assert procs["b"].starts == 0
