"""unload(): waiters released, swaps cancelled, busy models stopped, timeout groups."""

from __future__ import annotations

import asyncio

import pytest
from router_helpers import NoEviction, OneAtATime, bounded, eventually, other_tasks

from swapcore import BaseRouter, ModelNotFound, ModelUnloaded, ProcessState
from swapcore.events import ModelsUnloaded, RouterEvent, SwapFinished
from swapcore.testing.fakes import FakeProcess


class StopLog(FakeProcess):
    """A FakeProcess that logs when each stop call begins and ends, with its timeout."""

    def __init__(self, name: str, log: list[tuple[str, str, float]], **options: float) -> None:
        super().__init__(name, **options)  # type: ignore[arg-type]
        self.log = log

    async def stop(self, timeout: float) -> None:
        running = self.state is not ProcessState.STOPPED
        if running:
            self.log.append(("begin", self.name, timeout))
        await super().stop(timeout)
        if running:
            self.log.append(("end", self.name, timeout))


async def _use(router: BaseRouter, model: str) -> str:
    async with router.acquire(model) as lease:
        return lease.model


async def test_unload_during_a_swap_fails_its_waiters_and_leaves_the_model_stopped() -> None:
    procs = {"a": FakeProcess("a", auto_ready=False)}
    events: list[RouterEvent] = []
    async with BaseRouter(procs, OneAtATime(), on_event=events.append) as router:
        waiters = [asyncio.create_task(_use(router, "a")) for _ in range(3)]
        await bounded(procs["a"].wait_state(ProcessState.STARTING))
        await bounded(router.unload("a"))
        for waiter in waiters:
            with pytest.raises(ModelUnloaded):
                await bounded(waiter)
        assert procs["a"].state is ProcessState.STOPPED
        snap = router.snapshot().models["a"]
        assert (snap.swapping, snap.waiting, snap.queued, snap.in_flight) == (False, 0, 0, 0)
        finished = [e for e in events if isinstance(e, SwapFinished)]
        assert len(finished) == 1 and finished[0].error is not None
        assert [e.reason for e in events if isinstance(e, ModelsUnloaded)] == ["unload"]
        # The model loads again on demand.
        again = asyncio.create_task(_use(router, "a"))
        await bounded(procs["a"].wait_state(ProcessState.STARTING))
        procs["a"].mark_ready()
        assert await bounded(again) == "a"
    assert not other_tasks()


async def test_unload_of_a_busy_model_stops_it_under_the_lease() -> None:
    procs = {"a": FakeProcess("a")}
    async with BaseRouter(procs, OneAtATime()) as router:
        async with router.acquire("a"):
            await bounded(router.unload("a"))
            assert procs["a"].state is ProcessState.STOPPED
            assert router.snapshot().models["a"].in_flight == 1
        await eventually(lambda: router.snapshot().models["a"].in_flight == 0)
        assert await bounded(_use(router, "a")) == "a"
        assert procs["a"].starts == 2


async def test_unload_groups_by_timeout_shorter_first() -> None:
    log: list[tuple[str, str, float]] = []
    procs = {m: StopLog(m, log, stop_delay=0.001) for m in "abcd"}
    timeouts = {"a": 1.0, "b": 2.0, "c": 1.0}  # d keeps the 10 s default
    async with BaseRouter(procs, NoEviction(), unload_timeout=timeouts) as router:
        await bounded(router.preload(*"abcd"))
        await bounded(router.unload())
        assert all(p.state is ProcessState.STOPPED for p in procs.values())
    assert {name: t for _, name, t in log} == {"a": 1.0, "b": 2.0, "c": 1.0, "d": 10.0}
    order = [(kind, name) for kind, name, _ in log]
    groups = [{"a", "c"}, {"b"}, {"d"}]
    position = 0
    for group in groups:  # each group begins together and ends before the next begins
        chunk = order[position : position + 2 * len(group)]
        assert {name for kind, name in chunk[: len(group)] if kind == "begin"} == group, order
        assert {name for kind, name in chunk[len(group) :] if kind == "end"} == group, order
        position += 2 * len(group)


async def test_an_explicit_timeout_stops_everything_in_parallel() -> None:
    log: list[tuple[str, str, float]] = []
    procs = {m: StopLog(m, log, stop_delay=0.001) for m in "abc"}
    async with BaseRouter(procs, NoEviction(), unload_timeout={"a": 1.0}) as router:
        await bounded(router.preload(*"abc"))
        await bounded(router.unload("a", "b", "c", timeout=3.0))
    assert [kind for kind, _, _ in log[:3]] == ["begin"] * 3
    assert {t for _, _, t in log} == {3.0}


async def test_unload_of_an_unknown_model_stops_nothing() -> None:
    procs = {"a": FakeProcess("a")}
    async with BaseRouter(procs, OneAtATime()) as router:
        await bounded(router.preload("a"))
        with pytest.raises(ModelNotFound):
            await router.unload("a", "nope")
        assert procs["a"].state is ProcessState.READY


async def test_a_request_during_an_unload_is_served_by_a_fresh_start() -> None:
    procs = {"a": FakeProcess("a", stop_delay=0.01)}
    async with BaseRouter(procs, OneAtATime()) as router:
        await bounded(router.preload("a"))
        unloading = asyncio.create_task(router.unload("a"))
        await bounded(procs["a"].wait_state(ProcessState.STOPPING))
        assert await bounded(_use(router, "a")) == "a"
        await bounded(unloading)
        assert procs["a"].starts == 2 and procs["a"].stops == 1
        assert procs["a"].state is ProcessState.READY


async def test_a_cancelled_unload_caller_does_not_stop_the_unload() -> None:
    procs = {"a": FakeProcess("a", stop_delay=0.01)}
    async with BaseRouter(procs, OneAtATime()) as router:
        await bounded(router.preload("a"))
        unloading = asyncio.create_task(router.unload("a"))
        await bounded(procs["a"].wait_state(ProcessState.STOPPING))
        unloading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await unloading
        await bounded(procs["a"].wait_state(ProcessState.STOPPED))
        await router._settled()
        assert router.running_models() == {}
        assert await bounded(_use(router, "a")) == "a"


async def test_a_failing_stop_is_raised_by_unload() -> None:
    class BadStop(FakeProcess):
        async def stop(self, timeout: float) -> None:
            if self.state is ProcessState.READY:
                raise OSError("cannot stop")
            await super().stop(timeout)

    procs = {"a": BadStop("a"), "b": FakeProcess("b")}
    async with BaseRouter(procs, NoEviction()) as router:
        await bounded(router.preload("a", "b"))
        with pytest.raises(OSError, match="cannot stop"):
            await bounded(router.unload())
        assert procs["b"].state is ProcessState.STOPPED
        await eventually(lambda: not router._unloads)
