"""Planner and scheduler hooks that raise fail only their request; the router keeps serving.

Every test bounds its waits: a request left hanging by a fault fails the test.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Collection, Sequence

import pytest
from router_helpers import OneAtATime, SerialScheduler, bounded, eventually

from swapcore import (
    BaseRouter,
    CostAwareScheduler,
    FIFOScheduler,
    PolicyError,
    ProcessState,
    SwapPlanner,
)
from swapcore.events import RequestRejected, RouterEvent
from swapcore.scheduling.effects import SchedulerFactory
from swapcore.testing import FakeProcess, FaultyPlanner, InjectedFault


async def _use(router: BaseRouter, model: str) -> str:
    async with router.acquire(model) as lease:
        await asyncio.sleep(0)
        return lease.model


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


class BrokenRecency(SwapPlanner):
    """One model at a time; its recency hook fails once, on the first serve of ``model``."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.failed = False

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return [m for m in running if m != target]

    def on_serve(self, model: str, now: float) -> None:
        if model == self.model and not self.failed:
            self.failed = True
            raise KeyError(model)


@pytest.mark.parametrize("scheduler", [FIFOScheduler, CostAwareScheduler])
async def test_on_serve_raising_fails_one_waiter_and_nobody_hangs(
    scheduler: SchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The measured bug: the other waiters of the swap hung forever."""
    procs = {m: FakeProcess(m, auto_ready=False) for m in "ab"}
    events: list[RouterEvent] = []
    router = BaseRouter(procs, BrokenRecency("a"), scheduler=scheduler, on_event=events.append)
    with caplog.at_level(logging.ERROR):
        async with router:
            waiters = [asyncio.create_task(_use(router, "a")) for _ in range(4)]
            await bounded(procs["a"].wait_state(ProcessState.STARTING))
            procs["a"].mark_ready()
            outcomes = await bounded(asyncio.gather(*waiters, return_exceptions=True))
            failed = [o for o in outcomes if isinstance(o, BaseException)]
            assert outcomes.count("a") == 3 and len(failed) == 1
            [error] = failed
            assert isinstance(error, PolicyError) and isinstance(error.__cause__, KeyError)
            assert str(error).startswith("planner BrokenRecency.on_serve('a', ")
            # The router keeps serving, the other model included.
            after = asyncio.create_task(_use(router, "b"))
            await bounded(procs["b"].wait_state(ProcessState.STARTING))
            procs["b"].mark_ready()
            assert await bounded(after) == "b"
            await eventually(lambda: router.snapshot().models["a"].in_flight == 0)
    [record] = errors(caplog)
    assert record.name == "swapcore.scheduling"
    assert "BrokenRecency.on_serve('a'," in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], KeyError)
    assert "event handler" not in caplog.text
    rejected = [e for e in events if isinstance(e, RequestRejected)]
    assert [type(e.error) for e in rejected] == [PolicyError]


async def test_eviction_for_raising_fails_that_request_while_others_are_served() -> None:
    procs = {m: FakeProcess(m) for m in "abc"}
    planner = FaultyPlanner(OneAtATime())
    async with BaseRouter(procs, planner) as router:
        await bounded(router.preload("a"))
        planner.arm("eviction_for", target="b")
        results = await bounded(
            asyncio.gather(
                _use(router, "a"), _use(router, "b"), _use(router, "c"), return_exceptions=True
            )
        )
        assert results[0] == "a" and results[2] == "c"
        assert isinstance(results[1], PolicyError)
        assert isinstance(results[1].__cause__, InjectedFault)
        assert await bounded(_use(router, "b")) == "b"  # the planner recovered
        snapshot = router.snapshot()
        assert snapshot.queue == () and all(m.in_flight == 0 for m in snapshot.models.values())


async def test_on_swap_start_raising_fails_the_request_and_loads_nothing() -> None:
    procs = {m: FakeProcess(m) for m in "ab"}
    planner = FaultyPlanner(OneAtATime())
    async with BaseRouter(procs, planner) as router:
        planner.arm("on_swap_start", target="b")
        with pytest.raises(PolicyError, match=r"FaultyPlanner\.on_swap_start\('b', \[\]\)"):
            await bounded(_use(router, "b"))
        assert procs["b"].starts == 0
        assert await bounded(_use(router, "b")) == "b"


# -- a scheduler of one's own that raises -------------------------------------------------


class Moody(SerialScheduler):
    """SerialScheduler with hooks that raise on cue (``fail`` names them)."""

    def __init__(self, planner: SwapPlanner, effects: object) -> None:
        super().__init__(planner, effects)  # type: ignore[arg-type]
        self.fail: set[str] = set()
        self.cancelled: list[int] = []

    def on_request(self, request: object) -> None:
        if "on_request" in self.fail:
            self.fail.discard("on_request")
            raise ValueError("bad bookkeeping")
        super().on_request(request)  # type: ignore[arg-type]

    def on_cancel(self, request: object) -> None:
        self.cancelled.append(request.id)  # type: ignore[attr-defined]
        super().on_cancel(request)  # type: ignore[arg-type]

    def on_swap_done(self, model: str, error: BaseException | None) -> None:
        if "on_swap_done" in self.fail:
            self.fail.discard("on_swap_done")
            raise ValueError("lost the waiters")
        super().on_swap_done(model, error)

    def on_serve_done(self, model: str) -> None:
        super().on_serve_done(model)
        if "on_serve_done" in self.fail:  # after its work: a metrics bug, say
            self.fail.discard("on_serve_done")
            raise ValueError("metrics")

    def on_unload(self, models: Collection[str]) -> None:
        if "on_unload" in self.fail:
            self.fail.discard("on_unload")
            raise ValueError("unload bookkeeping")
        super().on_unload(models)

    def next_deadline(self) -> float | None:
        if "next_deadline" in self.fail:
            raise ValueError("no clock")
        return None


def moody_router(procs: dict[str, FakeProcess]) -> tuple[BaseRouter, Moody]:
    built: list[Moody] = []

    def factory(planner: SwapPlanner, effects: object) -> Moody:
        built.append(Moody(planner, effects))
        return built[0]

    return BaseRouter(procs, OneAtATime(), scheduler=factory), built[0]  # type: ignore[arg-type]


async def test_a_scheduler_on_request_that_raises_fails_that_request_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router, scheduler = moody_router({"a": FakeProcess("a")})
    with caplog.at_level(logging.ERROR, logger="swapcore.router"):
        async with router:
            scheduler.fail.add("on_request")
            with pytest.raises(PolicyError) as caught:
                await bounded(_use(router, "a"))
            assert str(caught.value) == (
                "scheduler Moody.on_request(request 1 for 'a') raised ValueError: bad bookkeeping"
            )
            assert isinstance(caught.value.__cause__, ValueError)
            assert scheduler.cancelled == [1]  # told the request is gone
            assert await bounded(_use(router, "a")) == "a"
    [record] = errors(caplog)
    assert record.getMessage().startswith("scheduler Moody.on_request(request 1 for 'a') raised")
    assert record.exc_info is not None and "event handler" not in caplog.text


async def test_a_scheduler_on_swap_done_that_raises_fails_the_swaps_waiters() -> None:
    procs = {"a": FakeProcess("a", auto_ready=False)}
    router, scheduler = moody_router(procs)
    async with router:
        waiter = asyncio.create_task(_use(router, "a"))
        await bounded(procs["a"].wait_state(ProcessState.STARTING))
        scheduler.fail.add("on_swap_done")
        procs["a"].mark_ready()
        with pytest.raises(PolicyError, match=r"Moody\.on_swap_done\('a', None\)"):
            await bounded(waiter)
        view = router.snapshot().models["a"]
        assert (view.waiting, view.queued, view.swapping) == (0, 0, False)
        assert scheduler.cancelled == [1]  # told its waiter is gone
    # What Moody does next is up to Moody (it still thinks its swap runs); the
    # router's own books are clean and it shuts down without hanging.


async def test_scheduler_hooks_that_raise_after_their_work_are_logged_and_survived(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router, scheduler = moody_router({"a": FakeProcess("a"), "b": FakeProcess("b")})
    with caplog.at_level(logging.ERROR, logger="swapcore.router"):
        async with router:
            scheduler.fail.update({"on_serve_done", "next_deadline"})
            assert await bounded(_use(router, "a")) == "a"
            assert await bounded(_use(router, "b")) == "b"
            assert await bounded(_use(router, "a")) == "a"
    messages = [r.getMessage() for r in errors(caplog)]
    assert any(m.startswith("scheduler Moody.on_serve_done('a') raised") for m in messages)
    # Asked after every batch of events, a raising next_deadline is given up on once.
    deadline = [m for m in messages if "Moody.next_deadline()" in m]
    assert len(deadline) == 1 and "stops asking" in deadline[0]


async def test_a_scheduler_on_unload_that_raises_fails_the_models_requests() -> None:
    procs = {"a": FakeProcess("a", auto_ready=False)}
    router, scheduler = moody_router(procs)
    async with router:
        waiter = asyncio.create_task(_use(router, "a"))
        await bounded(procs["a"].wait_state(ProcessState.STARTING))
        scheduler.fail.add("on_unload")
        await bounded(router.unload("a"))
        with pytest.raises(PolicyError, match=r"Moody\.on_unload\(\['a'\]\)"):
            await bounded(waiter)
        assert procs["a"].state is ProcessState.STOPPED


async def test_a_user_planner_fault_is_named_in_the_log_not_an_internal_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Picky(SwapPlanner):
        def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
            if target == "b":
                raise ValueError("boom")
            return [m for m in running if m != target]

    procs = {m: FakeProcess(m) for m in "ab"}
    scheduler = functools.partial(FIFOScheduler, max_wait=30.0)
    with caplog.at_level(logging.ERROR):
        async with BaseRouter(procs, Picky(), scheduler=scheduler) as router:
            await bounded(router.preload("a"))
            with pytest.raises(PolicyError) as caught:
                await bounded(_use(router, "b"))
            assert str(caught.value) == (
                "planner Picky.eviction_for('b', ['a']) raised ValueError: boom"
            )
    [record] = errors(caplog)
    assert "planner Picky.eviction_for('b', ['a']) raised ValueError: boom" in record.getMessage()
    assert "event handler" not in caplog.text
