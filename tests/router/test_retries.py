"""start_retries: a start that crashed is started again before its waiters fail."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from router_helpers import OneAtATime, bounded, eventually

from swapcore import (
    BaseRouter,
    ConfigError,
    ModelUnloaded,
    ProcessState,
    RouterShutdown,
    SwapFailed,
)
from swapcore.events import RouterEvent, SwapFinished, SwapRetried, SwapStarted
from swapcore.testing.fakes import FakeProcess, FakeProcessError


async def _use(router: BaseRouter, model: str) -> str:
    async with router.acquire(model) as lease:
        return lease.model


def of(kind: type[RouterEvent], events: list[RouterEvent]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


async def test_a_crashed_start_is_restarted_and_its_waiters_are_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    procs = {"a": FakeProcess("a", crash_start=1)}
    events: list[RouterEvent] = []
    with caplog.at_level(logging.WARNING, logger="swapcore.router"):
        async with BaseRouter(procs, OneAtATime(), on_event=events.append) as router:
            results = await bounded(asyncio.gather(*(_use(router, "a") for _ in range(5))))
    assert results == ["a"] * 5
    assert (procs["a"].starts, procs["a"].ready_count, procs["a"].crashes) == (2, 1, 1)
    [retried] = of(SwapRetried, events)
    assert (retried.model, retried.attempt) == ("a", 2)
    assert retried.error == "FakeProcessError: a: crashed while starting"
    [finished] = of(SwapFinished, events)
    assert finished.error is None and len(of(SwapStarted, events)) == 1
    order = [type(e) for e in events if isinstance(e, (SwapStarted, SwapRetried, SwapFinished))]
    assert order == [SwapStarted, SwapRetried, SwapFinished]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "model 'a' crashed while starting (FakeProcessError: a: crashed while starting); "
        "restarting, attempt 2 of 2"
    ]


async def test_a_crash_during_a_start_in_progress_is_restarted_for_every_waiter() -> None:
    """The measured failure: a model killed while it loads failed every waiter at once."""
    procs = {"a": FakeProcess("a", auto_ready=False)}
    async with BaseRouter(procs, OneAtATime()) as router:
        waiters = [asyncio.create_task(_use(router, "a")) for _ in range(8)]
        await bounded(procs["a"].wait_state(ProcessState.STARTING))
        procs["a"].crash()  # killed while loading
        await eventually(lambda: procs["a"].starts == 2)
        procs["a"].mark_ready()
        assert await bounded(asyncio.gather(*waiters)) == ["a"] * 8


async def test_retries_run_out_and_the_swap_fails_with_the_last_error() -> None:
    procs = {"a": FakeProcess("a", crash_start=3)}
    events: list[RouterEvent] = []
    async with BaseRouter(procs, OneAtATime(), start_retries=2, on_event=events.append) as router:
        with pytest.raises(SwapFailed) as caught:
            await bounded(_use(router, "a"))
        cause = caught.value.__cause__
        assert isinstance(cause, FakeProcessError) and cause.retryable
        assert procs["a"].starts == 3
        assert [e.attempt for e in of(SwapRetried, events)] == [2, 3]
        assert await bounded(_use(router, "a")) == "a"  # the next request starts it afresh


@pytest.mark.parametrize("retries", [0, 1])
async def test_errors_that_are_not_retryable_fail_at_once(retries: int) -> None:
    procs = {"a": FakeProcess("a", fail_start=1), "b": FakeProcess("b", crash_start=1)}
    async with BaseRouter(procs, OneAtATime(), start_retries=retries) as router:
        with pytest.raises(SwapFailed) as caught:
            await bounded(_use(router, "a"))
        assert isinstance(caught.value.__cause__, FakeProcessError)
        assert not caught.value.__cause__.retryable and procs["a"].starts == 1
        if retries == 0:  # no retries at all: a crash fails the swap too
            with pytest.raises(SwapFailed):
                await bounded(_use(router, "b"))
            assert procs["b"].starts == 1


async def test_a_timeout_is_not_retried() -> None:
    procs = {"a": FakeProcess("a", auto_ready=False)}
    async with BaseRouter(procs, OneAtATime(), swap_timeout=0.01) as router:
        with pytest.raises(SwapFailed) as caught:
            await bounded(_use(router, "a"))
        assert isinstance(caught.value.__cause__, TimeoutError)
        assert procs["a"].starts == 1


async def test_any_process_error_with_a_truthy_retryable_attribute_is_retried() -> None:
    class Flaky(FakeProcess):
        """A Process of one's own: the first start raises an error marked retryable."""

        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.calls = 0

        async def ensure_ready(self, timeout: float) -> None:
            self.calls += 1
            if self.calls == 1:
                error = OSError("child exited with status 1")
                error.retryable = 1  # type: ignore[attr-defined]  # truthy is enough
                raise error
            await super().ensure_ready(timeout)

    procs = {"a": Flaky("a")}
    async with BaseRouter(procs, OneAtATime()) as router:
        assert await bounded(_use(router, "a")) == "a"
    assert procs["a"].calls == 2


async def test_the_evictions_are_not_redone() -> None:
    procs = {"a": FakeProcess("a"), "b": FakeProcess("b", crash_start=1)}
    events: list[RouterEvent] = []
    async with BaseRouter(procs, OneAtATime(), on_event=events.append) as router:
        await bounded(router.preload("a"))
        assert await bounded(_use(router, "b")) == "b"
        assert (procs["a"].stops, procs["b"].starts) == (1, 2)
        swap = [e for e in of(SwapStarted, events) if e.model == "b"]
        assert [e.evict for e in swap] == [("a",)]


async def test_unload_during_a_restart_fails_its_waiters_and_stops_the_model() -> None:
    procs = {"a": FakeProcess("a", auto_ready=False, crash_start=1)}
    events: list[RouterEvent] = []
    async with BaseRouter(procs, OneAtATime(), on_event=events.append) as router:
        waiters = [asyncio.create_task(_use(router, "a")) for _ in range(3)]
        await bounded(procs["a"].wait_state(ProcessState.STARTING))
        procs["a"].mark_ready()  # the first start crashes
        await eventually(lambda: procs["a"].starts == 2)  # the restart is under way
        await bounded(router.unload("a"))
        for waiter in waiters:
            with pytest.raises(ModelUnloaded):
                await bounded(waiter)
        assert procs["a"].state is ProcessState.STOPPED
        [finished] = of(SwapFinished, events)
        assert finished.error == "model 'a' was unloaded"
        retried = of(SwapRetried, events)
        assert [e.attempt for e in retried] == [2]
        assert events.index(retried[0]) < events.index(finished)
        assert await bounded(asyncio.gather(_use(router, "a"), _mark_ready_soon(procs["a"])))


async def _mark_ready_soon(fake: FakeProcess) -> bool:
    await fake.wait_state(ProcessState.STARTING)
    fake.mark_ready()
    return True


async def test_shutdown_during_a_restart_fails_its_waiters() -> None:
    procs = {"a": FakeProcess("a", auto_ready=False, crash_start=1)}
    router = BaseRouter(procs, OneAtATime())
    async with router:
        waiter = asyncio.create_task(_use(router, "a"))
        await bounded(procs["a"].wait_state(ProcessState.STARTING))
        procs["a"].mark_ready()
        await eventually(lambda: procs["a"].starts == 2)
    with pytest.raises(RouterShutdown):
        await bounded(waiter)
    assert procs["a"].state is ProcessState.STOPPED


@pytest.mark.parametrize("value", [-1, 1.5, True, "1", None])
def test_an_invalid_start_retries_is_a_config_error_naming_it(value: Any) -> None:
    with pytest.raises(ConfigError, match="start_retries"):
        BaseRouter({"a": FakeProcess("a")}, OneAtATime(), start_retries=value)
