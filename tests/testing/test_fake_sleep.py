"""FakeProcess's sleeping tier: sleep, wake, failed wakes, crashes while asleep."""

from __future__ import annotations

import asyncio

import pytest

from swapcore import Process, ProcessState
from swapcore.process import SleepingProcess, can_sleep
from swapcore.testing.fakes import FakeProcess, FakeProcessError

READY, SLEEPING, STOPPED, STOPPING, STARTING = (
    ProcessState.READY,
    ProcessState.SLEEPING,
    ProcessState.STOPPED,
    ProcessState.STOPPING,
    ProcessState.STARTING,
)


async def bounded(awaitable: object, timeout: float = 5.0) -> object:
    return await asyncio.wait_for(awaitable, timeout)  # type: ignore[arg-type]


def test_states() -> None:
    assert not SLEEPING.is_running and SLEEPING.is_resident
    assert READY.is_running and READY.is_resident
    assert not STOPPED.is_resident


async def test_sleep_then_wake_keeps_the_process() -> None:
    fake = FakeProcess("m", sleep_level=1)
    assert isinstance(fake, Process) and isinstance(fake, SleepingProcess) and can_sleep(fake)
    await bounded(fake.ensure_ready(1.0))
    await bounded(fake.sleep(1.0))
    assert fake.state is SLEEPING
    await bounded(fake.sleep(1.0))  # idempotent
    assert fake.sleeps == 1
    await bounded(fake.ensure_ready(1.0))
    assert fake.state is READY
    assert (fake.starts, fake.wakes, fake.stops) == (1, 1, 0)


async def test_transitions_show_as_stopping_and_starting() -> None:
    fake = FakeProcess("m", sleep_level=2, sleep_delay=0.01, wake_delay=0.01)
    await bounded(fake.ensure_ready(1.0))
    falling = asyncio.ensure_future(fake.sleep(1.0))
    await bounded(fake.wait_state(STOPPING))
    await bounded(falling)
    waking = asyncio.ensure_future(fake.ensure_ready(1.0))
    await bounded(fake.wait_state(STARTING))
    await bounded(waking)
    assert fake.state is READY and fake.wakes == 1


async def test_ensure_ready_while_falling_asleep_wakes_it_after() -> None:
    fake = FakeProcess("m", sleep_level=1, sleep_delay=0.01)
    await bounded(fake.ensure_ready(1.0))
    falling = asyncio.ensure_future(fake.sleep(1.0))
    await bounded(fake.wait_state(STOPPING))
    await bounded(fake.ensure_ready(1.0))
    await bounded(falling)
    assert fake.state is READY and (fake.sleeps, fake.wakes) == (1, 1)


async def test_a_failed_wake_falls_back_to_a_cold_start() -> None:
    fake = FakeProcess("m", sleep_level=1, fail_wake=1)
    await bounded(fake.ensure_ready(1.0))
    await bounded(fake.sleep(1.0))
    await bounded(fake.ensure_ready(1.0))
    assert fake.state is READY
    assert (fake.failed_wakes, fake.wakes, fake.starts) == (1, 0, 2)


async def test_stop_from_sleep_and_crash_while_asleep() -> None:
    fake = FakeProcess("m", sleep_level=1)
    await bounded(fake.ensure_ready(1.0))
    await bounded(fake.sleep(1.0))
    await bounded(fake.stop(1.0))
    assert fake.state is STOPPED and fake.stops == 1
    await bounded(fake.ensure_ready(1.0))
    await bounded(fake.sleep(1.0))
    fake.crash()
    assert fake.state is STOPPED and fake.crashed
    await bounded(fake.ensure_ready(1.0))
    assert fake.starts == 3


async def test_sleep_refusals_leave_the_state_alone() -> None:
    plain = FakeProcess("p")
    assert not can_sleep(plain)
    await bounded(plain.ensure_ready(1.0))
    with pytest.raises(FakeProcessError, match="does not sleep"):
        await bounded(plain.sleep(1.0))
    fake = FakeProcess("m", sleep_level=1, fail_sleep=1)
    with pytest.raises(FakeProcessError, match="cannot sleep while stopped"):
        await bounded(fake.sleep(1.0))
    await bounded(fake.ensure_ready(1.0))
    with pytest.raises(FakeProcessError, match="scripted sleep failure"):
        await bounded(fake.sleep(1.0))
    assert fake.state is READY
    await bounded(fake.sleep(1.0))
    assert fake.state is SLEEPING


async def test_a_crash_while_falling_asleep_fails_the_sleep() -> None:
    fake = FakeProcess("m", sleep_level=1, auto_ready=True, sleep_delay=10.0)
    await bounded(fake.ensure_ready(1.0))
    falling = asyncio.ensure_future(fake.sleep(20.0))
    await bounded(fake.wait_state(STOPPING))
    fake.crash()
    with pytest.raises(FakeProcessError, match="did not fall asleep"):
        await bounded(falling)
    assert fake.state is STOPPED


def test_bad_sleep_level() -> None:
    with pytest.raises(ValueError, match="sleep_level"):
        FakeProcess("m", sleep_level=3)
