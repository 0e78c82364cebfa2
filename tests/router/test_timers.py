"""Idle TTL unloads and the scheduler's max_wait timer."""

from __future__ import annotations

import asyncio
import functools

import pytest
from router_helpers import NoEviction, OneAtATime, bounded, eventually, other_tasks

from swapcore import BaseRouter, ConfigError, ProcessState
from swapcore.events import ModelsUnloaded, RouterEvent
from swapcore.scheduling.fifo import FIFOScheduler
from swapcore.testing.fakes import FakeProcess


async def _use(router: BaseRouter, model: str) -> str:
    async with router.acquire(model) as lease:
        return lease.model


async def test_an_idle_model_is_unloaded_after_its_ttl() -> None:
    procs = {m: FakeProcess(m) for m in "ab"}
    events: list[RouterEvent] = []
    ttl = {"a": 0.01}
    async with BaseRouter(procs, NoEviction(), idle_ttl=ttl, on_event=events.append) as router:
        await bounded(router.preload("a", "b"))
        await bounded(procs["a"].wait_state(ProcessState.STOPPED))
        await eventually(lambda: any(isinstance(e, ModelsUnloaded) for e in events))
        assert [(e.models, e.reason) for e in events if isinstance(e, ModelsUnloaded)] == [
            (("a",), "ttl")
        ]
        assert procs["b"].state is ProcessState.READY  # no TTL for b
        # Loaded again on demand, and unloaded again when idle.
        assert await bounded(_use(router, "a")) == "a"
        await bounded(procs["a"].wait_state(ProcessState.STOPPED))
        assert (procs["a"].starts, procs["a"].stops) == (2, 2)
    assert not other_tasks()


async def test_no_ttl_unload_while_a_request_is_in_flight() -> None:
    # b's timer, armed together with a's, witnesses that the TTL has elapsed.
    procs = {m: FakeProcess(m) for m in "ab"}
    async with BaseRouter(procs, NoEviction(), idle_ttl={"a": 0.01, "b": 0.01}) as router:
        await bounded(router.preload("a", "b"))
        async with router.acquire("a"):
            # b's timer was armed after a's: a's would have fired by now.
            await bounded(procs["b"].wait_state(ProcessState.STOPPED))
            assert procs["a"].state is ProcessState.READY
        await bounded(procs["a"].wait_state(ProcessState.STOPPED))
        assert procs["a"].stops == 1


async def test_a_request_arriving_while_the_ttl_stop_runs_is_served() -> None:
    """llama-swap #946: the TTL stop must not swallow the request."""
    procs = {"a": FakeProcess("a", stop_delay=0.01)}
    async with BaseRouter(procs, OneAtATime(), idle_ttl={"a": 0.01}) as router:
        await bounded(router.preload("a"))
        await bounded(procs["a"].wait_state(ProcessState.STOPPING))
        assert router.model_state("a") is ProcessState.STOPPING
        assert await bounded(_use(router, "a")) == "a"
        assert procs["a"].starts == 2 and procs["a"].stops >= 1


async def test_a_request_arriving_right_after_the_ttl_fired_is_served() -> None:
    procs = {"a": FakeProcess("a")}
    async with BaseRouter(procs, OneAtATime(), idle_ttl={"a": 0.01}) as router:
        requests: list[asyncio.Task[str]] = []
        fire = router._on_ttl_event

        def fire_then_request(fired: tuple[str, int]) -> None:
            fire(fired)  # commits to the stop; the stop itself begins a step later
            assert router.model_state("a") is ProcessState.STOPPING
            requests.append(asyncio.create_task(_use(router, "a")))

        router._on_ttl_event = fire_then_request  # type: ignore[method-assign]
        await bounded(router.preload("a"))
        await eventually(lambda: bool(requests))
        assert await bounded(requests[0]) == "a"
        assert (procs["a"].starts, procs["a"].stops) == (2, 1)


async def test_a_stale_ttl_event_is_ignored() -> None:
    procs = {"a": FakeProcess("a")}
    async with BaseRouter(procs, OneAtATime(), idle_ttl={"a": 60.0}) as router:
        await bounded(router.preload("a"))
        stale = router._activity.get("a", 0)
        await bounded(_use(router, "a"))  # a request since: a new generation
        router._post(router._on_ttl_event, ("a", stale))
        assert procs["a"].state is ProcessState.READY
        assert not router._stopping and "a" in router._ttl_handles


async def test_ttl_configuration_is_validated() -> None:
    with pytest.raises(ConfigError, match="idle_ttl"):
        BaseRouter({"a": FakeProcess()}, OneAtATime(), idle_ttl={"zzz": 1.0})
    with pytest.raises(ConfigError, match="idle_ttl"):
        BaseRouter({"a": FakeProcess()}, OneAtATime(), idle_ttl={"a": -1.0})
    with pytest.raises(ConfigError, match="unload_timeout"):
        BaseRouter({"a": FakeProcess()}, OneAtATime(), unload_timeout=0)
    with pytest.raises(ConfigError, match="swap_timeout"):
        BaseRouter({"a": FakeProcess()}, OneAtATime(), swap_timeout=-1)


class TickSpy(FIFOScheduler):
    ticks = 0

    def on_tick(self) -> None:
        type(self).ticks += 1
        super().on_tick()


async def test_the_max_wait_timer_ticks_the_scheduler() -> None:
    TickSpy.ticks = 0
    scheduler = functools.partial(TickSpy, max_wait=0.01)
    procs = {m: FakeProcess(m) for m in "ab"}
    async with BaseRouter(procs, OneAtATime(), scheduler=scheduler) as router:
        async with router.acquire("a"):
            waiting = asyncio.create_task(_use(router, "b"))
            await eventually(lambda: len(router.snapshot().queue) == 1)
            assert router._tick_handle is not None
            await eventually(lambda: TickSpy.ticks >= 1)
        assert await bounded(waiting) == "b"
        assert router._tick_handle is None  # nothing queued: no timer
    assert not other_tasks()
