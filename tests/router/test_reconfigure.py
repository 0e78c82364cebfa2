"""reconfigure(): added, removed, replaced and unchanged models; planner and settings."""

from __future__ import annotations

import asyncio

import pytest
from router_helpers import NoEviction, OneAtATime, SerialScheduler, bounded, eventually, other_tasks

from swapcore import (
    BaseRouter,
    ConcurrencyLimitExceeded,
    ConfigError,
    ModelNotFound,
    ModelUnloaded,
    ProcessState,
)
from swapcore.router import Lease
from swapcore.testing.fakes import FakeProcess


async def _hold(router: BaseRouter, model: str, release: asyncio.Event) -> Lease:
    async with router.acquire(model) as lease:
        await release.wait()
        return lease


async def _use(router: BaseRouter, model: str) -> Lease:
    async with router.acquire(model) as lease:
        return lease


async def test_unchanged_models_keep_their_process_and_added_ones_serve() -> None:
    a = FakeProcess("a")
    async with BaseRouter({"a": a}, NoEviction()) as router:
        await bounded(_use(router, "a"))
        b = FakeProcess("b")
        await bounded(router.reconfigure({"a": a, "b": b}))
        assert router.models == ("a", "b")
        assert (await bounded(_use(router, "b"))).process is b
        lease = await bounded(_use(router, "a"))
        assert lease.process is a
        assert (a.starts, a.stops, a.state) == (1, 0, ProcessState.READY)
    assert not other_tasks()


async def test_a_replaced_model_serves_its_lease_then_restarts_with_the_new_process() -> None:
    old, new = FakeProcess("a"), FakeProcess("a")
    async with BaseRouter({"a": old}, NoEviction()) as router:
        release = asyncio.Event()
        holder = asyncio.create_task(_hold(router, "a", release))
        await eventually(lambda: router.snapshot().models["a"].in_flight == 1)
        await bounded(router.reconfigure({"a": new}))
        waiter = asyncio.create_task(_use(router, "a"))
        await eventually(lambda: router.snapshot().models["a"].queued == 1)
        # The lease keeps the old process; nothing stops it, nothing starts the new one.
        assert (old.state, old.stops, new.starts) == (ProcessState.READY, 0, 0)
        assert not waiter.done()
        release.set()
        assert (await bounded(holder)).process is old
        assert (await bounded(waiter)).process is new
        assert (old.stops, old.state, new.starts) == (1, ProcessState.STOPPED, 1)
        assert (await bounded(_use(router, "a"))).process is new
    assert not other_tasks()


async def test_a_cancelled_caller_does_not_stop_the_reconfiguration() -> None:
    a, b = FakeProcess("a"), FakeProcess("b")
    async with BaseRouter({"a": a}, NoEviction()) as router:
        caller = asyncio.create_task(router.reconfigure({"a": a, "b": b}))
        await asyncio.sleep(0)  # posted, not yet handled
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await bounded(router._settled())
        assert router.models == ("a", "b")
        assert (await bounded(_use(router, "b"))).process is b
    assert not other_tasks()


async def test_a_stopped_model_is_replaced_at_once() -> None:
    old, new = FakeProcess("a"), FakeProcess("a")
    async with BaseRouter({"a": old}, NoEviction()) as router:
        await bounded(router.reconfigure({"a": new}))
        assert (await bounded(_use(router, "a"))).process is new
        assert (old.starts, old.stops) == (0, 0)
    assert not other_tasks()


async def test_a_removed_model_finishes_its_lease_fails_its_queue_then_stops() -> None:
    a, b = FakeProcess("a"), FakeProcess("b")
    async with BaseRouter({"a": a, "b": b}, OneAtATime()) as router:
        release = asyncio.Event()
        holder = asyncio.create_task(_hold(router, "a", release))
        await eventually(lambda: router.snapshot().models["a"].in_flight == 1)
        queued = asyncio.create_task(_use(router, "b"))  # would evict the busy "a": queued
        await eventually(lambda: router.snapshot().models["b"].queued == 1)
        await bounded(router.reconfigure({"a": a}))
        with pytest.raises(ModelUnloaded, match="'b'"):
            await bounded(queued)
        await bounded(router.reconfigure({}))
        assert router.models == () and not router.handles("a")
        with pytest.raises(ModelNotFound):
            await bounded(_use(router, "a"))
        assert a.state is ProcessState.READY  # the lease still runs on it
        release.set()
        assert (await bounded(holder)).process is a
        await bounded(router._settled())
        assert (a.stops, a.state) == (1, ProcessState.STOPPED)
        assert router.snapshot().models == {}
    assert not other_tasks()


async def test_removing_a_model_during_its_swap_fails_the_waiters_and_stops_it() -> None:
    a = FakeProcess("a", auto_ready=False)
    async with BaseRouter({"a": a}, NoEviction()) as router:
        waiter = asyncio.create_task(_use(router, "a"))
        await bounded(a.wait_state(ProcessState.STARTING))
        await bounded(router.reconfigure({}))
        with pytest.raises(ModelUnloaded, match="'a'"):
            await bounded(waiter)
        await bounded(router._settled())
        assert a.state is ProcessState.STOPPED and router.models == ()
    assert not other_tasks()


async def test_a_removed_model_added_again_waits_for_its_old_process_to_stop() -> None:
    old, new = FakeProcess("a"), FakeProcess("a")
    async with BaseRouter({"a": old}, NoEviction()) as router:
        release = asyncio.Event()
        holder = asyncio.create_task(_hold(router, "a", release))
        await eventually(lambda: router.snapshot().models["a"].in_flight == 1)
        await bounded(router.reconfigure({}))
        await bounded(router.reconfigure({"a": new}))
        waiter = asyncio.create_task(_use(router, "a"))
        await eventually(lambda: router.snapshot().models["a"].queued == 1)
        assert new.starts == 0
        release.set()
        await bounded(holder)
        assert (await bounded(waiter)).process is new
        assert old.state is ProcessState.STOPPED
    assert not other_tasks()


async def test_a_new_planner_decides_for_the_queue_it_finds() -> None:
    a, b = FakeProcess("a"), FakeProcess("b")
    async with BaseRouter({"a": a, "b": b}, OneAtATime()) as router:
        release = asyncio.Event()
        holder = asyncio.create_task(_hold(router, "a", release))
        await eventually(lambda: router.snapshot().models["a"].in_flight == 1)
        queued = asyncio.create_task(_use(router, "b"))
        await eventually(lambda: router.snapshot().models["b"].queued == 1)
        planner = NoEviction()
        await bounded(router.reconfigure({"a": a, "b": b}, planner))
        assert router.planner is planner
        assert (await bounded(queued)).process is b  # served beside the busy "a"
        assert a.state is ProcessState.READY
        release.set()
        await bounded(holder)
    assert not other_tasks()


async def test_scheduler_settings_apply_to_later_requests() -> None:
    a = FakeProcess("a")
    async with BaseRouter({"a": a}, NoEviction()) as router:
        await bounded(
            router.reconfigure({"a": a}, scheduler_options={"concurrency_limits": {"a": 1}})
        )
        release = asyncio.Event()
        holder = asyncio.create_task(_hold(router, "a", release))
        await eventually(lambda: router.snapshot().models["a"].in_flight == 1)
        with pytest.raises(ConcurrencyLimitExceeded):
            await bounded(_use(router, "a"))
        release.set()
        await bounded(holder)
    assert not other_tasks()


async def test_a_new_idle_ttl_unloads_a_model_already_idle() -> None:
    a, b = FakeProcess("a"), FakeProcess("b")
    async with BaseRouter({"a": a, "b": b}, NoEviction()) as router:
        await bounded(router.preload("a", "b"))
        await bounded(router.reconfigure({"a": a, "b": b}, idle_ttl={"a": 0.01}))
        await bounded(a.wait_state(ProcessState.STOPPED))
        assert b.state is ProcessState.READY
        await bounded(router.reconfigure({"a": a, "b": b}))  # idle_ttl kept
        await bounded(_use(router, "a"))
        await bounded(a.wait_state(ProcessState.STOPPED))
        assert (a.starts, a.stops) == (2, 2)
    assert not other_tasks()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"swap_timeout": 0}, "swap_timeout"),
        ({"idle_ttl": {"nope": 5}}, "idle_ttl: 'nope'"),
        ({"scheduler_options": {"max_wait": -1}}, "max_wait"),
    ],
)
async def test_an_invalid_configuration_changes_nothing(options: dict, match: str) -> None:
    a, b = FakeProcess("a"), FakeProcess("b")
    planner = OneAtATime()
    async with BaseRouter({"a": a}, planner) as router:
        await bounded(_use(router, "a"))
        with pytest.raises(ConfigError, match=match):
            await bounded(router.reconfigure({"b": b}, NoEviction(), **options))
        assert router.models == ("a",) and router.planner is planner
        assert (await bounded(_use(router, "a"))).process is a
        assert (a.stops, b.starts) == (0, 0)
    assert not other_tasks()


async def test_a_scheduler_without_reconfigure_refuses_a_new_planner() -> None:
    a = FakeProcess("a")
    async with BaseRouter({"a": a}, NoEviction(), scheduler=SerialScheduler) as router:
        with pytest.raises(ConfigError, match="SerialScheduler has no reconfigure"):
            await bounded(router.reconfigure({"a": a}, OneAtATime()))
        b = FakeProcess("b")
        await bounded(router.reconfigure({"a": a, "b": b}))  # processes alone are fine
        assert (await bounded(_use(router, "b"))).process is b
    assert not other_tasks()


async def test_shutdown_with_a_replacement_pending_leaves_nothing_behind() -> None:
    old, new = FakeProcess("a"), FakeProcess("a")
    router = BaseRouter({"a": old}, NoEviction())
    async with router:
        release = asyncio.Event()
        holder = asyncio.create_task(_hold(router, "a", release))
        await eventually(lambda: router.snapshot().models["a"].in_flight == 1)
        await bounded(router.reconfigure({"a": new}))
        waiter = asyncio.create_task(_use(router, "a"))
        await eventually(lambda: router.snapshot().models["a"].queued == 1)
    release.set()
    await bounded(holder)
    with pytest.raises(Exception, match="shut"):
        await bounded(waiter)
    assert old.state is ProcessState.STOPPED and new.starts == 0
    assert not other_tasks()
