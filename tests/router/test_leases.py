"""Bounded leases: lease_timeout takes the model back, exactly once, and says so.

These run on a virtual clock (``run_virtual``): a lease timeout of minutes
passes at once and exactly, so ``held`` values are checked exactly and no
test sleeps in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
from typing import Any

import pytest
from router_helpers import NoEviction, OneAtATime, eventually, run_virtual

from swapcore import (
    BaseRouter,
    ConfigError,
    FIFOScheduler,
    LeaseExpired,
    PolicyError,
    ProcessState,
    RoutingError,
)
from swapcore.events import (
    RequestExpired,
    RequestGranted,
    RequestReleased,
    RouterEvent,
)
from swapcore.sim.record import TraceRecorder
from swapcore.testing._virtual_loop import VirtualTimeLoop
from swapcore.testing.fakes import FakeProcess

FOREVER = 10**6  # seconds a stuck caller would wait; the virtual clock never gets there


def fakes(*names: str) -> dict[str, FakeProcess]:
    return {name: FakeProcess(name) for name in names}


def of(kind: type[RouterEvent], events: list[RouterEvent]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def cancelling(task: asyncio.Task[Any] | None) -> int:
    """The task's pending cancellations (Python 3.11+; 0 on 3.10, which does not count)."""
    assert task is not None
    return task.cancelling() if sys.version_info >= (3, 11) else 0


def in_flight(router: BaseRouter, model: str) -> tuple[int, int]:
    """The router's and the scheduler's in-flight counts for ``model``."""
    scheduler = router._scheduler
    assert isinstance(scheduler, FIFOScheduler)
    return router.snapshot().models[model].in_flight, scheduler.in_flight(model)


def test_an_expired_lease_frees_its_model_and_the_waiting_swap_proceeds(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    procs = fakes("a", "b")
    events: list[RouterEvent] = []

    async def main(loop: VirtualTimeLoop) -> None:
        router = BaseRouter(procs, OneAtATime(), on_event=events.append, lease_timeout=30.0)
        async with router:
            stuck = asyncio.Event()  # never set: a caller that never lets go

            async def hog() -> None:
                async with router.acquire("a"):
                    await stuck.wait()

            holder = asyncio.create_task(hog())
            await eventually(lambda: router.snapshot().models["a"].in_flight == 1)
            granted_at = loop.time()
            async with router.acquire("b") as lease:  # must evict busy 'a': waits for the expiry
                assert lease.model == "b"
                assert loop.time() == granted_at + 30.0
                assert procs["a"].state is ProcessState.STOPPED
            with pytest.raises(LeaseExpired) as caught:
                await holder
            assert isinstance(caught.value.__cause__, asyncio.CancelledError)
            assert "request 1 on 'a' expired" in str(caught.value)
            assert in_flight(router, "a") == (0, 0)

    with caplog.at_level(logging.WARNING, logger="swapcore.router"):
        run_virtual(monkeypatch, main)
    [expired] = of(RequestExpired, events)
    assert (expired.model, expired.request_id) == ("a", 1)
    assert expired.held == pytest.approx(30.0)
    assert [e.request_id for e in of(RequestReleased, events)] == [2]  # b only
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("lease of request 1 on 'a' expired after 30.000s" in m for m in warnings)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_leaving_the_block_raises_lease_expired_and_the_task_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    procs = fakes("a")

    async def main(loop: VirtualTimeLoop) -> None:
        async with BaseRouter(procs, OneAtATime()) as router:  # no on_event: the lean path
            with pytest.raises(LeaseExpired) as caught:
                async with router.acquire("a", lease_timeout=5.0):
                    await asyncio.sleep(FOREVER)
            assert isinstance(caught.value.__cause__, asyncio.CancelledError)
            assert cancelling(asyncio.current_task()) == 0  # the router's cancel was consumed
            await asyncio.sleep(1.0)  # not cancelled any more: the task goes on
            async with router.acquire("a") as lease:  # the model is free again
                assert lease.model == "a"
            await eventually(lambda: in_flight(router, "a") == (0, 0))

    run_virtual(monkeypatch, main)


def test_a_lease_released_in_time_is_unaffected(monkeypatch: pytest.MonkeyPatch) -> None:
    procs = fakes("a")
    events: list[RouterEvent] = []

    async def main(loop: VirtualTimeLoop) -> None:
        async with BaseRouter(procs, OneAtATime(), on_event=events.append) as router:
            async with router.acquire("a", lease_timeout=5.0):
                await asyncio.sleep(4.0)
            await asyncio.sleep(60.0)  # long past the timeout: nothing happens
            assert in_flight(router, "a") == (0, 0)

    run_virtual(monkeypatch, main)
    assert of(RequestExpired, events) == []
    [released] = of(RequestReleased, events)
    assert released.held == pytest.approx(4.0)


def test_a_block_that_swallows_the_cancellation_ends_as_it_ends_and_releases_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    procs = fakes("a")
    events: list[RouterEvent] = []

    async def main(loop: VirtualTimeLoop) -> None:
        async with BaseRouter(procs, OneAtATime(), on_event=events.append) as router:
            async with router.acquire("a", lease_timeout=5.0):
                # A caller that swallows it: the lease is gone all the same.
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(FOREVER)
            assert cancelling(asyncio.current_task()) == 0
            with pytest.raises(ConnectionError):
                async with router.acquire("a", lease_timeout=5.0):
                    try:
                        await asyncio.sleep(FOREVER)
                    except asyncio.CancelledError:
                        raise ConnectionError("upstream closed") from None
            await asyncio.sleep(1.0)
            assert in_flight(router, "a") == (0, 0)

    with caplog.at_level(logging.ERROR):
        run_virtual(monkeypatch, main)
    assert [e.request_id for e in of(RequestExpired, events)] == [1, 2]
    assert of(RequestReleased, events) == []  # never released a second time
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_cancellation_from_elsewhere_before_the_expiry_stays_a_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    procs = fakes("a")
    events: list[RouterEvent] = []

    async def main(loop: VirtualTimeLoop) -> None:
        async with BaseRouter(procs, OneAtATime(), on_event=events.append) as router:

            async def hold() -> None:
                async with router.acquire("a", lease_timeout=5.0):
                    await asyncio.sleep(FOREVER)

            holder = asyncio.create_task(hold())
            await asyncio.sleep(1.0)
            holder.cancel()
            with pytest.raises(asyncio.CancelledError):
                await holder
            await asyncio.sleep(10.0)
            assert in_flight(router, "a") == (0, 0)

            # An outer timeout shorter than the lease: TimeoutError, as ever.
            async def hold_briefly() -> None:
                async with router.acquire("a", lease_timeout=5.0):
                    await asyncio.sleep(FOREVER)

            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(hold_briefly(), 2.0)
            await asyncio.sleep(10.0)
            assert in_flight(router, "a") == (0, 0)

    run_virtual(monkeypatch, main)
    assert of(RequestExpired, events) == []
    assert len(of(RequestReleased, events)) == 2


def test_a_cancellation_from_elsewhere_in_the_expiry_turn_is_not_mistaken_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    procs = fakes("a")
    holder: asyncio.Task[None] | None = None

    def cancel_it_too(event: RouterEvent) -> None:
        if isinstance(event, RequestExpired) and holder is not None:
            holder.cancel()  # someone else cancels the same task in the same turn

    async def main(loop: VirtualTimeLoop) -> None:
        nonlocal holder
        async with BaseRouter(procs, OneAtATime(), on_event=cancel_it_too) as router:

            async def hold() -> None:
                async with router.acquire("a", lease_timeout=5.0):
                    await asyncio.sleep(FOREVER)

            holder = asyncio.create_task(hold())
            with pytest.raises(asyncio.CancelledError):
                await holder
            assert holder.cancelled()
            await eventually(lambda: in_flight(router, "a") == (0, 0))

    run_virtual(monkeypatch, main)


def test_the_router_default_applies_unless_acquire_gives_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    procs = fakes("a")
    events: list[RouterEvent] = []

    async def main(loop: VirtualTimeLoop) -> None:
        router = BaseRouter(procs, OneAtATime(), on_event=events.append, lease_timeout=100.0)
        async with router:
            for timeout in (None, 5.0):
                with pytest.raises(LeaseExpired):
                    async with router.acquire("a", lease_timeout=timeout):
                        await asyncio.sleep(FOREVER)
            await router.preload("a")  # acquire-and-release: well within the default

    run_virtual(monkeypatch, main)
    assert [round(e.held, 6) for e in of(RequestExpired, events)] == [100.0, 5.0]


def test_leases_with_different_timeouts_expire_in_deadline_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    procs = {"a": FakeProcess("a")}
    events: list[RouterEvent] = []
    expired_at: dict[int, float] = {}

    async def main(loop: VirtualTimeLoop) -> None:
        def on_event(event: RouterEvent) -> None:
            events.append(event)
            if isinstance(event, RequestExpired):
                expired_at[event.request_id] = loop.time()

        async with BaseRouter(procs, NoEviction(), on_event=on_event) as router:

            async def hold(timeout: float) -> None:
                with pytest.raises(LeaseExpired):
                    async with router.acquire("a", lease_timeout=timeout):
                        await asyncio.sleep(FOREVER)

            start = loop.time()
            await asyncio.gather(*(hold(t) for t in (5.0, 3.0, 8.0, 3.0, 5.0)))
            assert {rid: at - start for rid, at in expired_at.items()} == pytest.approx(
                {1: 5.0, 2: 3.0, 3: 8.0, 4: 3.0, 5: 5.0}
            )
            assert in_flight(router, "a") == (0, 0)

    run_virtual(monkeypatch, main)
    assert [e.request_id for e in of(RequestExpired, events)] == [2, 4, 1, 5, 3]


def test_a_lease_granted_by_an_expiry_gets_its_own_full_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    procs = fakes("a", "b")
    events: list[RouterEvent] = []

    async def main(loop: VirtualTimeLoop) -> None:
        router = BaseRouter(procs, OneAtATime(), on_event=events.append, lease_timeout=5.0)
        async with router:

            async def hold(model: str) -> float:
                with pytest.raises(LeaseExpired):
                    async with router.acquire(model):
                        await asyncio.sleep(FOREVER)
                return loop.time()

            start = loop.time()
            first = asyncio.create_task(hold("a"))
            await eventually(lambda: router.snapshot().models["a"].in_flight == 1)
            ends = await asyncio.gather(first, hold("b"))  # b waits for a's expiry
            assert [end - start for end in ends] == pytest.approx([5.0, 10.0])

    run_virtual(monkeypatch, main)
    assert [e.held for e in of(RequestExpired, events)] == pytest.approx([5.0, 5.0])


def test_released_leases_are_swept_from_the_deadline_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    procs = fakes("a")

    async def main(loop: VirtualTimeLoop) -> None:
        async with BaseRouter(procs, OneAtATime(), lease_timeout=30.0) as router:

            async def hold_forever() -> None:
                async with router.acquire("a"):
                    await asyncio.sleep(FOREVER)

            holder = asyncio.create_task(hold_forever())  # the head of the queue stays live
            await eventually(lambda: router.snapshot().models["a"].in_flight == 1)
            for _ in range(600):  # a sweep at 256 released tickets
                async with router.acquire("a"):
                    pass
            await asyncio.sleep(0)
            queued = sum(map(len, router._deadlines.values()))
            assert queued <= 300, f"{queued} tickets in the deadline queues for 1 live lease"
            with pytest.raises(LeaseExpired):
                await holder  # still taken back on time
            await eventually(lambda: in_flight(router, "a") == (0, 0))
            await asyncio.sleep(60.0)
            assert router._deadlines == {} and router._stale_leases == 0

    run_virtual(monkeypatch, main)


def test_a_grant_that_expires_before_its_caller_resumes_raises_lease_expired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The expiry is handled before the caller's task resumes from its grant."""
    procs = fakes("a")
    events: list[RouterEvent] = []
    router = BaseRouter(procs, OneAtATime(), on_event=events.append)
    acquisition = router.acquire("a", lease_timeout=5.0)

    def expire_at_once(event: RouterEvent) -> None:
        events.append(event)
        if isinstance(event, RequestGranted):
            ticket = acquisition._ticket  # type: ignore[attr-defined]
            router._post(router._on_expire_event, ticket)  # runs in this same batch

    router._on_event = expire_at_once

    async def main(loop: VirtualTimeLoop) -> None:
        async with router:
            with pytest.raises(LeaseExpired):
                async with acquisition:
                    raise AssertionError("the block must not run")
            assert cancelling(asyncio.current_task()) == 0
            await eventually(lambda: in_flight(router, "a") == (0, 0))

    run_virtual(monkeypatch, main)
    assert len(of(RequestExpired, events)) == 1 and of(RequestReleased, events) == []


def test_a_lease_held_across_shutdown_still_expires_once(monkeypatch: pytest.MonkeyPatch) -> None:
    procs = fakes("a")
    events: list[RouterEvent] = []

    async def main(loop: VirtualTimeLoop) -> None:
        router = BaseRouter(procs, OneAtATime(), on_event=events.append, lease_timeout=5.0)
        async with router:
            held = asyncio.Event()

            async def hold() -> None:
                async with router.acquire("a"):
                    held.set()
                    await asyncio.sleep(FOREVER)

            holder = asyncio.create_task(hold())
            await held.wait()
        with pytest.raises(LeaseExpired):  # the router is closed; the bound still holds
            await holder

    run_virtual(monkeypatch, main)
    assert len(of(RequestExpired, events)) == 1


def test_the_trace_recorder_records_an_expired_request_as_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    procs = fakes("a")

    async def main(loop: VirtualTimeLoop) -> TraceRecorder:
        recorder = TraceRecorder(clock=loop.time)
        async with BaseRouter(procs, OneAtATime(), on_event=recorder, lease_timeout=7.0) as router:
            await asyncio.sleep(2.0)
            with pytest.raises(LeaseExpired):
                async with router.acquire("a"):
                    await asyncio.sleep(FOREVER)
        return recorder

    recorder = run_virtual(monkeypatch, main)
    [arrival] = recorder.arrivals
    assert (arrival.at, arrival.model, arrival.service) == (
        pytest.approx(2.0),
        "a",
        pytest.approx(7.0),
    )
    assert recorder.in_flight == 0


@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan, "30", True])
def test_an_invalid_lease_timeout_is_a_config_error_naming_it(value: Any) -> None:
    with pytest.raises(ConfigError, match="lease_timeout"):
        BaseRouter(fakes("a"), OneAtATime(), lease_timeout=value)


@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan])
async def test_acquire_refuses_an_invalid_lease_timeout_at_once(value: float) -> None:
    async with BaseRouter(fakes("a"), OneAtATime()) as router:
        with pytest.raises(ConfigError, match="lease_timeout"):
            router.acquire("a", lease_timeout=value)


def test_lease_expired_and_policy_error_are_routing_errors() -> None:
    assert issubclass(LeaseExpired, RoutingError) and issubclass(PolicyError, RoutingError)
