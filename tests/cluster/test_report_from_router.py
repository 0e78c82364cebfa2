"""report_from_router on a real BaseRouter driven with swapcore.testing fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from swapcore import BaseRouter, GroupPlanner, MemoryBudgetPlanner, ProcessState, ReplicaReport
from swapcore.cluster import report_from_router
from swapcore.planners.base import SwapPlanner
from swapcore.planners.placement import PlacementPlanner
from swapcore.testing import FakeProcess

T = TypeVar("T")
LIMIT = 5.0  # every wait here is bounded by this many seconds


async def bounded(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, LIMIT)


async def eventually(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until ``predicate()`` holds (bounded; no timed sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIMIT
    while not predicate():
        assert loop.time() < deadline, "condition not reached within the bound"
        await asyncio.sleep(0)


async def use(router: BaseRouter, model: str) -> None:
    async with router.acquire(model):
        pass


class HeldStop(FakeProcess):
    """A fake whose stops wait until the test lets them go."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.release = asyncio.Event()
        self.stopping = False  # a stop was asked for

    async def stop(self, timeout: float) -> None:
        self.stopping = True
        await self.release.wait()
        await super().stop(timeout)


class OneAtATime(SwapPlanner):
    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return [m for m in running if m != target]


def fakes(*models: str) -> dict[str, FakeProcess]:
    return {m: FakeProcess(m) for m in models}


def memory() -> MemoryBudgetPlanner:
    # a and b fit together; c fits only alone.
    return MemoryBudgetPlanner({"a": 10, "b": 10, "c": 15}, budget=24)


async def test_an_idle_router_reports_room_for_everything() -> None:
    async with BaseRouter(fakes("a", "b", "c"), memory()) as router:
        report = report_from_router("r0", router)
    assert report == ReplicaReport(
        "r0",
        models={"a", "b", "c"},
        would_evict={"a": (), "b": (), "c": ()},
        free_memory=24.0,
        sizes={"a": 10.0, "b": 10.0, "c": 15.0},
    )


async def test_after_a_swap_the_model_is_ready_and_evictions_follow_the_planner() -> None:
    async with BaseRouter(fakes("a", "b", "c"), memory()) as router:
        await bounded(use(router, "a"))
        await bounded(eventually(lambda: router.snapshot().models["a"].in_flight == 0))
        report = report_from_router("r0", router)
        assert report.ready == {"a"} and not report.loading and not report.busy
        assert isinstance(report.free_memory, float)
        assert report.would_evict == {"b": (), "c": ("a",)}
        assert (report.queued, report.in_flight, report.free_memory) == (0, 0, 14.0)
        await bounded(use(router, "c"))
        report = report_from_router("r0", router)
        assert report.ready == {"c"}
        assert report.would_evict == {"a": ("c",), "b": ("c",)}
        assert report.free_memory == 9.0


async def test_a_request_in_flight_makes_its_model_busy_and_unevictable() -> None:
    async with BaseRouter(fakes("a", "b", "c"), memory()) as router:
        async with router.acquire("a"):
            report = report_from_router("r0", router)
            assert report.busy == {"a"} and report.in_flight == 1 and report.queued == 0
            # c would have to evict the busy a: it cannot load now.
            assert report.would_evict == {"b": ()}
        await bounded(eventually(lambda: router.snapshot().models["a"].in_flight == 0))
        report = report_from_router("r0", router)
        assert not report.busy and report.in_flight == 0
        assert report.would_evict == {"b": (), "c": ("a",)}


async def test_during_a_swap_the_target_is_loading_and_its_requests_are_counted() -> None:
    procs = fakes("a", "b", "c")
    procs["c"].auto_ready = False  # its start waits for mark_ready()
    async with BaseRouter(procs, memory()) as router:
        await bounded(use(router, "a"))
        first = asyncio.ensure_future(use(router, "c"))
        second = asyncio.ensure_future(use(router, "c"))
        await bounded(eventually(lambda: procs["c"].state is ProcessState.STARTING))
        await bounded(eventually(lambda: router.snapshot().models["c"].waiting == 2))
        report = report_from_router("r0", router)
        assert report.loading == {"c"} and not report.ready
        assert report.queued == 2 and report.in_flight == 0
        # Loading a or b would evict the loading c: neither can load now.
        assert report.would_evict == {}
        assert report.free_memory == 9.0
        procs["c"].mark_ready()
        await bounded(asyncio.gather(first, second))
        report = report_from_router("r0", router)
        assert report.ready == {"c"} and not report.loading and report.queued == 0


async def test_a_swap_whose_target_has_not_started_still_claims_its_memory() -> None:
    procs: dict[str, FakeProcess] = {"a": HeldStop("a"), "b": FakeProcess("b")}
    procs["c"] = FakeProcess("c")
    held = procs["a"]
    assert isinstance(held, HeldStop)
    async with BaseRouter(procs, memory()) as router:
        try:
            await bounded(use(router, "a"))
            swap = asyncio.ensure_future(use(router, "c"))
            await bounded(eventually(lambda: router.snapshot().models["c"].swapping))
            await bounded(eventually(lambda: held.stopping))
            assert procs["c"].state is ProcessState.STOPPED  # its start waits for a's stop
            report = report_from_router("r0", router)
            # a's process has not begun to stop (it is still ready); c is loading.
            assert report.ready == {"a"} and report.loading == {"c"} and report.queued == 1
            # a still holds its memory and c claims its own: 24 - 10 - 15 < 0.
            assert report.free_memory == 0.0
            # b would evict the loading c: it cannot load now.
            assert report.would_evict == {}
        finally:
            held.release.set()
        await bounded(swap)
        report = report_from_router("r0", router)
        assert report.ready == {"c"} and report.free_memory == 9.0


async def test_sleeping_models_are_reported_apart_from_running_ones() -> None:
    procs = {m: FakeProcess(m, sleep_level=1) for m in ("a", "b")}
    async with BaseRouter(procs, OneAtATime()) as router:
        await bounded(use(router, "a"))
        await bounded(use(router, "b"))
        report = report_from_router("r0", router)
        assert report.sleeping == {"a"} and report.ready == {"b"}
        assert report.would_evict == {"a": ("b",)}
        assert report.free_memory is None  # the planner declares no sizes


async def test_free_memory_with_placement_is_the_room_over_every_device() -> None:
    planner = PlacementPlanner({"a": 10, "b": 10, "c": 15}, {"gpu0": 16, "gpu1": 16})
    async with BaseRouter(fakes("a", "b", "c"), planner) as router:
        assert report_from_router("r0", router).free_memory == 32.0
        await bounded(use(router, "a"))
        report = report_from_router("r0", router)
        assert report.free_memory == 22.0
        assert report.would_evict["b"] == ()


async def test_free_memory_is_unknown_with_groups() -> None:
    planner = GroupPlanner({}, models=["a", "b"])
    async with BaseRouter(fakes("a", "b"), planner) as router:
        await bounded(use(router, "a"))
        report = report_from_router("r0", router)
    assert report.free_memory is None
    assert report.ready == {"a"} and report.would_evict == {"b": ("a",)}


async def test_an_infinite_budget_reports_no_free_memory() -> None:
    planner = MemoryBudgetPlanner({"a": 10}, budget=float("inf"))
    async with BaseRouter(fakes("a"), planner) as router:
        assert report_from_router("r0", router).free_memory is None


class Faulty(SwapPlanner):
    """Raises for b, names a model that is not running for c."""

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        if target == "b":
            raise RuntimeError("no")
        if target == "c":
            return ["ghost"]
        return []


async def test_a_planner_fault_leaves_the_model_out() -> None:
    async with BaseRouter(fakes("a", "b", "c"), Faulty()) as router:
        report = report_from_router("r0", router)
    assert report.would_evict == {"a": ()}
