"""acquire(): the fast path, swaps, joining, collation, admission, positions, preload."""

from __future__ import annotations

import asyncio
import functools

import pytest
from router_helpers import NoEviction, OneAtATime, SerialScheduler, bounded, eventually, other_tasks

from swapcore import (
    BaseRouter,
    ConcurrencyLimitExceeded,
    ModelNotFound,
    ProcessState,
    RouterNotRunning,
    RouterShutdown,
)
from swapcore.events import RequestGranted, RouterEvent
from swapcore.scheduling.fifo import FIFOScheduler
from swapcore.testing.fakes import FakeProcess


def fakes(*names: str, **options: object) -> dict[str, FakeProcess]:
    return {name: FakeProcess(name, **options) for name in names}  # type: ignore[arg-type]


async def test_fast_path_grants_a_ready_model_without_a_new_start() -> None:
    procs = fakes("a")
    async with BaseRouter(procs, OneAtATime()) as router:
        async with router.acquire("a") as lease:
            assert lease.model == "a"
            assert lease.process is procs["a"]
            assert procs["a"].state is ProcessState.READY
            assert router.snapshot().models["a"].in_flight == 1
        async with router.acquire("a"), router.acquire("a"):
            assert router.snapshot().models["a"].in_flight == 2
        # Releases are events: the run loop handles them on its next turn.
        await eventually(lambda: router.snapshot().models["a"].in_flight == 0)
        assert procs["a"].starts == 1
        assert procs["a"].stops == 0


async def test_swap_stops_the_evicted_model_once_and_starts_the_target_once() -> None:
    procs = fakes("a", "b", stop_delay=0.001)
    async with BaseRouter(procs, OneAtATime()) as router:
        await bounded(router.preload("a"))
        async with router.acquire("b") as lease:
            assert lease.model == "b"
            assert procs["a"].state is ProcessState.STOPPED
            assert procs["b"].state is ProcessState.READY
        assert (procs["a"].starts, procs["a"].stops) == (1, 1)
        assert (procs["b"].starts, procs["b"].stops) == (1, 0)
        assert router.running_models() == {"b": ProcessState.READY}


async def test_concurrent_acquirers_of_a_loading_model_share_one_start() -> None:
    procs = fakes("a", auto_ready=False)
    async with BaseRouter(procs, OneAtATime()) as router:

        async def use() -> str:
            async with router.acquire("a") as lease:
                return lease.model

        tasks = [asyncio.create_task(use()) for _ in range(8)]
        await bounded(procs["a"].wait_state(ProcessState.STARTING))
        await eventually(lambda: router.snapshot().models["a"].waiting == 8)
        snap = router.snapshot().models["a"]
        assert snap.swapping and snap.queued == 0 and snap.in_flight == 0
        procs["a"].mark_ready()
        assert await bounded(asyncio.gather(*tasks)) == ["a"] * 8
        assert procs["a"].starts == 1


async def test_collation_serves_a_b_c_a_b_c_with_three_loads() -> None:
    procs = fakes("a", "b", "c", start_delay=0.001)
    grants: list[str] = []

    def record(event: RouterEvent) -> None:
        if isinstance(event, RequestGranted):
            grants.append(event.model)

    async with BaseRouter(procs, OneAtATime(), on_event=record) as router:

        async def use(model: str) -> None:
            async with router.acquire(model):
                await asyncio.sleep(0)

        await bounded(asyncio.gather(*(use(m) for m in "abcabc")))
    assert sum(p.starts for p in procs.values()) == 3
    assert grants == ["a", "a", "b", "b", "c", "c"]


async def test_unknown_model_raises_model_not_found() -> None:
    async with BaseRouter(fakes("a"), OneAtATime()) as router:
        with pytest.raises(ModelNotFound) as caught:
            async with router.acquire("zzz"):
                pass  # pragma: no cover
        assert isinstance(caught.value, LookupError)
        assert router.handles("a") and not router.handles("zzz")
        assert router.models == ("a",)


async def test_acquire_outside_the_router_lifetime() -> None:
    router = BaseRouter(fakes("a"), OneAtATime())
    with pytest.raises(RouterNotRunning):
        async with router.acquire("a"):
            pass  # pragma: no cover
    with pytest.raises(RouterNotRunning):
        await router.unload()
    async with router:
        pass
    with pytest.raises(RouterShutdown):
        async with router.acquire("a"):
            pass  # pragma: no cover
    with pytest.raises(RouterShutdown):
        await router.preload("a")
    with pytest.raises(RouterNotRunning):
        async with router:
            pass  # pragma: no cover


async def test_concurrency_limit_rejects_at_once() -> None:
    scheduler = functools.partial(FIFOScheduler, default_concurrency_limit=2)
    async with BaseRouter(fakes("a"), OneAtATime(), scheduler=scheduler) as router:
        async with router.acquire("a"), router.acquire("a"):
            with pytest.raises(ConcurrencyLimitExceeded):
                async with router.acquire("a"):
                    pass  # pragma: no cover
            assert router.snapshot().models["a"].in_flight == 2
        async with router.acquire("a"):
            pass


async def test_queue_positions_reach_on_position_and_the_snapshot() -> None:
    procs = fakes("a", "b", "c")
    positions: dict[str, list[int]] = {"b": [], "c": [], "d": []}
    async with BaseRouter(procs, OneAtATime()) as router:
        async with router.acquire("a"):  # a is busy: b and c must queue behind it
            tasks = {}
            for model in ("b", "c"):
                callback = positions[model].append
                tasks[model] = asyncio.create_task(_use(router, model, on_position=callback))
            await eventually(lambda: len(router.snapshot().queue) == 2)
            snap = router.snapshot()
            assert [model for _, model in snap.queue] == ["b", "c"]
            assert snap.models["b"].queued == 1 and snap.models["c"].queued == 1
            assert positions["b"] == [1] and positions["c"] == [2]
        await bounded(asyncio.gather(*tasks.values()))
        assert positions["c"][0] == 2 and positions["c"][-1] == 1


async def test_priority_puts_a_request_ahead_in_the_queue() -> None:
    async with BaseRouter(fakes("a", "b", "c"), OneAtATime()) as router:
        async with router.acquire("a"):
            low = asyncio.create_task(_use(router, "b"))
            await eventually(lambda: len(router.snapshot().queue) == 1)
            high = asyncio.create_task(_use(router, "c", priority=5))
            await eventually(lambda: len(router.snapshot().queue) == 2)
            assert [model for _, model in router.snapshot().queue] == ["c", "b"]
        await bounded(asyncio.gather(low, high))


async def test_leaving_the_block_with_an_exception_ends_the_request() -> None:
    async with BaseRouter(fakes("a"), OneAtATime()) as router:
        with pytest.raises(ZeroDivisionError):
            async with router.acquire("a"):
                1 / 0  # noqa: B018
        await eventually(lambda: router.snapshot().models["a"].in_flight == 0)


async def test_preload_loads_through_the_swap_path() -> None:
    procs = fakes("a", "b", "c")
    async with BaseRouter(procs, NoEviction()) as router:
        with pytest.raises(ModelNotFound):
            await router.preload("a", "nope")
        assert procs["a"].starts == 0  # nothing loads when one name is unknown
        await bounded(router.preload("a", "b"))
        assert router.running_models() == {"a": ProcessState.READY, "b": ProcessState.READY}
        assert router.snapshot().models["a"].in_flight == 0


async def test_a_custom_scheduler_without_timers_drives_the_router() -> None:
    procs = fakes("a", "b", start_delay=0.001)
    async with BaseRouter(procs, OneAtATime(), scheduler=SerialScheduler) as router:
        await bounded(asyncio.gather(*(_use(router, m) for m in "abab")))
        await bounded(router.unload("b"))
        assert router.running_models() == {}
    assert not other_tasks()


async def _use(
    router: BaseRouter,
    model: str,
    *,
    priority: int | None = None,
    on_position: object = None,
) -> str:
    async with router.acquire(model, priority=priority, on_position=on_position) as lease:  # type: ignore[arg-type]
        await asyncio.sleep(0)
        return lease.model
