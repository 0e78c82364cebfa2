"""FakeProcess follows the Process contract; check_process accepts it and rejects broken ones."""

from __future__ import annotations

import asyncio

import pytest

from swapcore import Process, ProcessState
from swapcore.testing.fakes import FakeProcess, FakeProcessError
from swapcore.testing.process_checks import check_process

STOPPED, STARTING, READY, STOPPING, SHUTDOWN = (
    ProcessState.STOPPED,
    ProcessState.STARTING,
    ProcessState.READY,
    ProcessState.STOPPING,
    ProcessState.SHUTDOWN,
)


async def bounded(awaitable: object, timeout: float = 5.0) -> object:
    return await asyncio.wait_for(awaitable, timeout)  # type: ignore[arg-type]


async def test_start_and_stop_with_counters() -> None:
    fake = FakeProcess("m")
    assert isinstance(fake, Process)
    assert fake.state is STOPPED and "m" in repr(fake)
    await bounded(fake.ensure_ready(1.0))
    await bounded(fake.ensure_ready(1.0))
    assert fake.state is READY
    assert (fake.starts, fake.ready_count, fake.stops) == (1, 1, 0)
    await bounded(fake.stop(1.0))
    await bounded(fake.stop(1.0))
    assert fake.state is STOPPED
    assert fake.stops == 1


async def test_concurrent_callers_share_one_start_and_one_stop() -> None:
    fake = FakeProcess(start_delay=0.001, stop_delay=0.001)
    await bounded(asyncio.gather(*(fake.ensure_ready(1.0) for _ in range(5))))
    assert fake.starts == 1
    await bounded(asyncio.gather(*(fake.stop(1.0) for _ in range(5))))
    assert fake.stops == 1


async def test_manual_readiness() -> None:
    fake = FakeProcess(auto_ready=False)
    with pytest.raises(RuntimeError, match="mark_ready"):
        fake.mark_ready()
    waiter = asyncio.create_task(fake.ensure_ready(5.0))
    await bounded(fake.wait_state(STARTING))
    assert not waiter.done()
    fake.mark_ready()
    await bounded(waiter)
    assert fake.state is READY


async def test_a_timed_out_caller_leaves_the_start_running() -> None:
    fake = FakeProcess(auto_ready=False)
    with pytest.raises(TimeoutError):
        await fake.ensure_ready(0.001)
    assert fake.state is STARTING
    waiter = asyncio.create_task(fake.ensure_ready(5.0))
    await asyncio.sleep(0)
    fake.mark_ready()
    await bounded(waiter)
    assert fake.starts == 1


async def test_scripted_failures() -> None:
    fake = FakeProcess(fail_start=2)
    for _ in range(2):
        with pytest.raises(FakeProcessError):
            await bounded(fake.ensure_ready(1.0))
        assert fake.state is STOPPED
    await bounded(fake.ensure_ready(1.0))
    assert (fake.starts, fake.ready_count) == (3, 1)

    boom = OSError("no GPU")
    fake = FakeProcess(fail_start=boom)
    with pytest.raises(OSError) as caught:
        await bounded(fake.ensure_ready(1.0))
    assert caught.value is boom
    await bounded(fake.ensure_ready(1.0))  # the instance fails one start only


async def test_ensure_ready_during_a_stop_waits_then_starts() -> None:
    fake = FakeProcess(stop_delay=0.01)
    await bounded(fake.ensure_ready(1.0))
    stopping = asyncio.create_task(fake.stop(1.0))
    await bounded(fake.wait_state(STOPPING))
    await bounded(fake.ensure_ready(1.0))
    assert fake.state is READY
    await bounded(stopping)
    assert (fake.starts, fake.stops) == (2, 1)


async def test_a_stop_during_a_start_aborts_it_and_its_waiters_start_again() -> None:
    fake = FakeProcess(auto_ready=False, stop_delay=0.001)
    waiter = asyncio.create_task(fake.ensure_ready(5.0))
    await bounded(fake.wait_state(STARTING))
    await bounded(fake.stop(1.0))
    await bounded(fake.wait_state(STARTING))  # the waiter started it again
    assert fake.starts == 2
    fake.mark_ready()
    await bounded(waiter)
    assert fake.state is READY


async def test_stop_takes_at_most_its_timeout() -> None:
    fake = FakeProcess(stop_delay=3600.0)
    await bounded(fake.ensure_ready(1.0))
    await bounded(fake.stop(0.001))  # the timeout plays the forced kill
    assert fake.state is STOPPED


async def test_crash() -> None:
    fake = FakeProcess()
    fake.crash()  # stopped: nothing happens
    assert not fake.crashed
    await bounded(fake.ensure_ready(1.0))
    fake.crash()
    assert fake.state is STOPPED and fake.crashed and fake.crashes == 1

    fake = FakeProcess(auto_ready=False)
    waiter = asyncio.create_task(fake.ensure_ready(5.0))
    await bounded(fake.wait_state(STARTING))
    fake.crash()
    with pytest.raises(FakeProcessError, match="crashed") as caught:
        await bounded(waiter)
    assert caught.value.retryable  # it died on its own before it was ready


async def test_crash_start_scripts_retryable_start_crashes() -> None:
    fake = FakeProcess(crash_start=2)
    for _ in range(2):
        with pytest.raises(FakeProcessError, match="crashed while starting") as caught:
            await bounded(fake.ensure_ready(1.0))
        assert caught.value.retryable and fake.state is STOPPED
    await bounded(fake.ensure_ready(1.0))
    assert (fake.starts, fake.ready_count, fake.crashes, fake.crash_start) == (3, 1, 2, 0)
    assert fake.crashed


async def test_fail_start_goes_before_crash_start_and_is_not_retryable() -> None:
    fake = FakeProcess(fail_start=1, crash_start=1)
    with pytest.raises(FakeProcessError, match="scripted start failure") as caught:
        await bounded(fake.ensure_ready(1.0))
    assert not caught.value.retryable and fake.crashes == 0
    with pytest.raises(FakeProcessError, match="crashed while starting"):
        await bounded(fake.ensure_ready(1.0))
    await bounded(fake.ensure_ready(1.0))
    assert fake.state is READY


def test_fake_process_error_is_not_retryable_by_default() -> None:
    assert FakeProcessError("x").retryable is False
    assert FakeProcessError("x", retryable=True).retryable is True
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="crash_start"):
            FakeProcess(crash_start=bad)  # type: ignore[arg-type]


async def test_shutdown_is_final() -> None:
    fake = FakeProcess(auto_ready=False)
    waiter = asyncio.create_task(fake.ensure_ready(5.0))
    await bounded(fake.wait_state(STARTING))
    await bounded(fake.shutdown())
    assert fake.state is SHUTDOWN
    with pytest.raises(FakeProcessError):
        await bounded(waiter)
    with pytest.raises(FakeProcessError, match="shut down"):
        await fake.ensure_ready(1.0)
    await bounded(fake.stop(1.0))
    assert fake.state is SHUTDOWN


async def test_wait_state_can_be_cancelled() -> None:
    fake = FakeProcess()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(fake.wait_state(READY), 0.001)
    assert fake._watchers == []


def test_delays_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        FakeProcess(start_delay=-1)


# -- check_process -------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"start_delay": 0.001},
        {"stop_delay": 0.001},
        {"start_delay": 0.001, "stop_delay": 0.002},
    ],
)
async def test_check_process_accepts_fake_process(options: dict[str, float]) -> None:
    fake = FakeProcess(**options)  # type: ignore[arg-type]
    await check_process(fake)
    assert fake.state is STOPPED


class GatesOnState(FakeProcess):
    """The llama-swap #946 bug: "if state == stopped: start", else assume it is fine."""

    async def ensure_ready(self, timeout: float) -> None:
        if self.state is STOPPED:
            await super().ensure_ready(timeout)


class RefusesSecondStop(FakeProcess):
    async def stop(self, timeout: float) -> None:
        if self.state is STOPPED:
            raise RuntimeError("not running")
        await super().stop(timeout)


class NeverReady(FakeProcess):
    async def ensure_ready(self, timeout: float) -> None:
        return None


class Hangs(FakeProcess):
    async def stop(self, timeout: float) -> None:
        await asyncio.Event().wait()


class NoStop:
    state = STOPPED

    async def ensure_ready(self, timeout: float) -> None:
        return None


@pytest.mark.parametrize(
    ("process", "rule"),
    [
        (GatesOnState(stop_delay=0.01), "ensure_ready during stop"),
        (RefusesSecondStop(), "stop is idempotent"),
        (NeverReady(), "start from stopped"),
        (Hangs(), "returns in time"),
        (NoStop(), "protocol"),
    ],
)
async def test_check_process_rejects_broken_processes(process: object, rule: str) -> None:
    with pytest.raises(AssertionError, match=f"\\[{rule}\\]"):
        await check_process(process, timeout=0.05)  # type: ignore[arg-type]
