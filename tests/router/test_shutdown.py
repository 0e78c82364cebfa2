"""shutdown(): waiters fail, swaps are cancelled, everything stops, no task is left."""

from __future__ import annotations

import asyncio

import pytest
from router_helpers import OneAtATime, bounded, eventually, other_tasks

from swapcore import BaseRouter, ProcessState, RouterShutdown
from swapcore.events import ModelsUnloaded, RouterEvent
from swapcore.testing.fakes import FakeProcess


async def _use(router: BaseRouter, model: str) -> str:
    async with router.acquire(model) as lease:
        return lease.model


async def test_shutdown_during_swaps_fails_waiters_stops_everything_and_leaves_no_task() -> None:
    procs = {
        "a": FakeProcess("a", auto_ready=False),
        "b": FakeProcess("b", stop_delay=0.001),
        "c": FakeProcess("c"),
    }
    events: list[RouterEvent] = []
    router = BaseRouter(procs, OneAtATime(), on_event=events.append)
    async with router:
        waiting = [asyncio.create_task(_use(router, "a")) for _ in range(3)]
        queued = [asyncio.create_task(_use(router, m)) for m in "bc"]
        await bounded(procs["a"].wait_state(ProcessState.STARTING))
        await eventually(lambda: len(router.snapshot().queue) == 2)
    for task in waiting + queued:
        with pytest.raises(RouterShutdown):
            await bounded(task)
    assert all(p.state is ProcessState.STOPPED for p in procs.values())
    assert (procs["b"].starts, procs["c"].starts) == (0, 0)
    assert isinstance(events[-1], ModelsUnloaded) and events[-1].reason == "shutdown"
    assert not other_tasks()


async def test_shutdown_is_idempotent_and_concurrent_calls_wait_for_the_first() -> None:
    procs = {"a": FakeProcess("a", stop_delay=0.01)}
    router = BaseRouter(procs, OneAtATime())
    async with router:
        await bounded(router.preload("a"))
        first = asyncio.create_task(router.shutdown())
        second = asyncio.create_task(router.shutdown(timeout=1.0))
        await bounded(asyncio.gather(first, second))
        assert procs["a"].state is ProcessState.STOPPED
        await bounded(router.shutdown())
    assert procs["a"].stops == 1
    assert not other_tasks()


async def test_shutdown_timeout_applies_to_every_process() -> None:
    seen: list[float] = []

    class Spy(FakeProcess):
        async def stop(self, timeout: float) -> None:
            seen.append(timeout)
            await super().stop(timeout)

    procs = {m: Spy(m) for m in "ab"}
    router = BaseRouter(procs, OneAtATime(), unload_timeout={"a": 1.0})
    async with router:
        await bounded(router.shutdown(timeout=2.5))
    assert seen == [2.5, 2.5]


async def test_a_lease_held_across_shutdown_releases_cleanly() -> None:
    procs = {"a": FakeProcess("a")}
    router = BaseRouter(procs, OneAtATime())
    async with router:
        async with router.acquire("a"):
            await bounded(router.shutdown())
            assert procs["a"].state is ProcessState.STOPPED
        assert router.snapshot().models["a"].in_flight == 0
        with pytest.raises(RouterShutdown):
            await router.unload("a")


async def test_shutdown_during_an_unload_ends_the_unload() -> None:
    procs = {"a": FakeProcess("a", stop_delay=0.01)}
    router = BaseRouter(procs, OneAtATime())
    async with router:
        await bounded(router.preload("a"))
        unloading = asyncio.create_task(router.unload("a"))
        await bounded(procs["a"].wait_state(ProcessState.STOPPING))
        await bounded(router.shutdown())
        await bounded(unloading)  # the stop finished before shutdown returned
    assert procs["a"].state is ProcessState.STOPPED
    assert not other_tasks()


async def test_a_router_never_entered_shuts_down_at_once() -> None:
    router = BaseRouter({"a": FakeProcess("a")}, OneAtATime())
    await bounded(router.shutdown())
    await bounded(router.shutdown())
