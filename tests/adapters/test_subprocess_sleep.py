"""SubprocessProcess's sleeping tier against a real vLLM-like server subprocess.

The server is ``sleep_server.py`` (standard library only), run through
``cmd`` exactly as a model server would be. Every wait is bounded; nothing
asserts a duration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp")

from swapcore import ConfigError, ProcessState, SwapcoreError
from swapcore.adapters.subprocess import ProcessSleepError, ProcessStartError, SubprocessProcess
from swapcore.process import SleepingProcess, can_sleep
from system_helpers import alive, free_port

S = ProcessState
SERVER = str(Path(__file__).with_name("sleep_server.py"))
READY_TIMEOUT = 30.0  # generous: the machine is shared; no test asserts a duration
STOP_TIMEOUT = 10.0
LOGGER = "swapcore.adapters.subprocess"


def server_cmd(*extra: str) -> list[str]:
    return [sys.executable, SERVER, "--port", "${PORT}", *extra]


def with_helper(*extra: str) -> list[str]:
    """The server behind a shell that forks a helper first (``child=PID`` in the output)."""
    script = 'sleep 300 & echo "child=$!"; s="$1"; p="$2"; shift 2; exec "$0" "$s" --port "$p" "$@"'
    return ["sh", "-c", script, sys.executable, SERVER, "${PORT}", *extra]


def helper_pid(process: SubprocessProcess) -> int:
    line = next(line for line in process.output_tail() if line.startswith("child="))
    return int(line.removeprefix("child="))


def gone(pid: int) -> bool:
    """True once ``pid`` is dead (a zombie nobody reaps counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def lines_with(process: SubprocessProcess, prefix: str) -> list[str]:
    return [line for line in process.output_tail() if line.startswith(prefix)]


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def bounded(awaitable: Any, timeout: float = READY_TIMEOUT * 2) -> Any:
    return await asyncio.wait_for(awaitable, timeout)


def state_of(process: SubprocessProcess) -> ProcessState:
    """The state, read afresh (keeps mypy from narrowing it across awaits)."""
    return process.state


async def http(method: str, url: str) -> tuple[int, Any]:
    """One request with the standard library, in a thread: (status, JSON body)."""

    def call() -> tuple[int, Any]:
        request = urllib.request.Request(
            url, method=method, data=b"{}" if method == "POST" else None
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    return await asyncio.to_thread(call)


class Recorder:
    """An on_state_change callback that records transitions."""

    def __init__(self) -> None:
        self.changes: list[tuple[ProcessState, ProcessState]] = []
        self.stopped = asyncio.Event()

    def __call__(self, old: ProcessState, new: ProcessState) -> None:
        self.changes.append((old, new))
        if new is S.STOPPED:
            self.stopped.set()


Factory = Callable[..., SubprocessProcess]


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    """Builds sleep-capable processes and stops every one after the test, pass or fail."""
    created: list[SubprocessProcess] = []

    def factory(**kwargs: Any) -> SubprocessProcess:
        kwargs.setdefault("name", "m")
        kwargs.setdefault("cmd", server_cmd())
        kwargs.setdefault("health_interval", 0.05)
        kwargs.setdefault("sleep_level", 1)
        kwargs.setdefault("port", free_port())
        process = SubprocessProcess(**kwargs)
        created.append(process)
        return process

    yield factory
    for process in created:
        await asyncio.wait_for(process.stop(STOP_TIMEOUT), STOP_TIMEOUT * 2)


async def ready(process: SubprocessProcess) -> int:
    await bounded(process.ensure_ready(READY_TIMEOUT))
    assert process.pid is not None
    return process.pid


# ------------------------------------------------------------- sleep, wake


async def test_sleep_keeps_the_child_and_wake_brings_it_back(make: Factory) -> None:
    recorder = Recorder()
    process = make(on_state_change=recorder)
    assert isinstance(process, SleepingProcess) and can_sleep(process)
    assert process.sleep_level == 1
    pid = await ready(process)

    await bounded(process.sleep(STOP_TIMEOUT))
    assert state_of(process) is S.SLEEPING and process.pid == pid and process.sleeps == 1
    assert lines_with(process, "sleep") == ["sleep path=/sleep level=1 body={}"]
    # Asleep as vLLM is: alive and healthy, refusing generation.
    assert (await http("GET", process.url + "/is_sleeping"))[1] == {"is_sleeping": True}
    assert (await http("GET", process.url + "/health"))[0] == 200
    assert (await http("POST", process.url + "/v1/chat/completions"))[0] == 503
    await bounded(process.sleep(STOP_TIMEOUT))  # asleep: returns at once
    assert process.sleeps == 1

    await bounded(process.ensure_ready(READY_TIMEOUT))
    assert state_of(process) is S.READY and process.pid == pid
    assert process.wakes == 1 and process.failed_wakes == 0
    assert (await http("GET", process.url + "/is_sleeping"))[1] == {"is_sleeping": False}
    assert (await http("POST", process.url + "/v1/chat/completions"))[0] == 200
    assert recorder.changes[-4:] == [
        (S.READY, S.STOPPING),
        (S.STOPPING, S.SLEEPING),
        (S.SLEEPING, S.STARTING),
        (S.STARTING, S.READY),
    ]
    assert set(process.durations) == {"load", "sleep", "wake"}
    assert all(seconds >= 0 for seconds in process.durations.values())

    await bounded(process.stop(STOP_TIMEOUT))
    assert "stop" in process.durations and process.exit_code == 0


async def test_concurrent_callers_share_one_wake(make: Factory) -> None:
    process = make(cmd=server_cmd("--wake-time", "0.3"))
    pid = await ready(process)
    await bounded(process.sleep(STOP_TIMEOUT))
    await bounded(asyncio.gather(*(process.ensure_ready(READY_TIMEOUT) for _ in range(5))))
    assert process.state is S.READY and process.pid == pid
    assert len(lines_with(process, "wake")) == 1 and process.wakes == 1


async def test_endpoint_templates(make: Factory) -> None:
    sglang = make(
        sleep_endpoint="/release_memory_occupation",
        wake_endpoint="/resume_memory_occupation",
    )
    await ready(sglang)
    await bounded(sglang.sleep(STOP_TIMEOUT))
    await bounded(sglang.ensure_ready(READY_TIMEOUT))
    assert lines_with(sglang, "sleep") == ["sleep path=/release_memory_occupation level=1 body={}"]
    assert lines_with(sglang, "wake") == ["wake path=/resume_memory_occupation"]

    level_two = make(name="two", sleep_level=2, sleep_endpoint="/sleep?level={level}&tag=x")
    await ready(level_two)
    await bounded(level_two.sleep(STOP_TIMEOUT))
    assert lines_with(level_two, "sleep") == ["sleep path=/sleep level=2 body={}"]


# ---------------------------------------------------------- refused sleeps


async def test_a_refused_sleep_raises_and_leaves_it_ready(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    process = make(cmd=server_cmd("--refuse-sleep"))
    pid = await ready(process)
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        pytest.raises(ProcessSleepError) as info,
    ):
        await bounded(process.sleep(STOP_TIMEOUT))
    error = info.value
    assert isinstance(error, SwapcoreError)
    assert error.model == "m" and "HTTP 500" in error.reason
    assert str(error) == "model 'm' could not sleep: the sleep call answered HTTP 500"
    assert SERVER not in str(error) and "--port" not in str(error)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
    assert "could not sleep" in caplog.text
    assert state_of(process) is S.READY and process.pid == pid and process.sleeps == 0
    assert (await http("POST", process.url + "/v1/chat/completions"))[0] == 200


async def test_a_missing_sleep_endpoint_hints_at_the_flags(make: Factory) -> None:
    process = make(sleep_endpoint="/no-such-call")
    await ready(process)
    with pytest.raises(ProcessSleepError, match=r"HTTP 404.*VLLM_SERVER_DEV_MODE=1"):
        await bounded(process.sleep(STOP_TIMEOUT))
    assert state_of(process) is S.READY


async def test_a_sleep_without_an_answer_is_bounded(make: Factory) -> None:
    process = make(cmd=server_cmd("--sleep-time", "3600"))
    await ready(process)
    with pytest.raises(ProcessSleepError, match=r"no answer within 0\.5 s"):
        await bounded(process.sleep(0.5))
    assert state_of(process) is S.READY


async def test_sleep_needs_a_ready_process_with_a_level(make: Factory) -> None:
    process = make()
    with pytest.raises(ProcessSleepError, match="it is stopped, not ready"):
        await process.sleep(STOP_TIMEOUT)
    never = make(name="never", sleep_level=None)
    assert isinstance(never, SleepingProcess) and not can_sleep(never)
    await ready(never)
    with pytest.raises(ProcessSleepError, match="no sleep level"):
        await never.sleep(STOP_TIMEOUT)
    assert state_of(never) is S.READY


# ------------------------------------------------------------ failed wakes


@pytest.mark.parametrize("wake", ["500", "exit"])
async def test_a_failed_wake_falls_back_to_a_cold_start(
    make: Factory, caplog: pytest.LogCaptureFixture, wake: str
) -> None:
    recorder = Recorder()
    process = make(cmd=with_helper("--wake", wake), on_state_change=recorder)
    pid = await ready(process)
    helper = helper_pid(process)
    await bounded(process.sleep(STOP_TIMEOUT))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await bounded(process.ensure_ready(READY_TIMEOUT))
    assert state_of(process) is S.READY
    assert process.pid not in (None, pid)
    assert process.failed_wakes == 1 and process.wakes == 0
    await wait_until(lambda: gone(pid) and gone(helper), "the old group to die")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "'m': could not wake" in warnings[0]
    assert "starting it cold" in warnings[0] and SERVER not in warnings[0]
    # The fallback is one start, seen by the router as STARTING until READY.
    assert recorder.changes[-2:] == [(S.SLEEPING, S.STARTING), (S.STARTING, S.READY)]
    assert (await http("POST", process.url + "/v1/chat/completions"))[0] == 200


async def test_a_wake_that_uses_up_the_timeout_fails_without_a_cold_start(
    make: Factory,
) -> None:
    process = make(cmd=server_cmd("--wake", "hang"))
    pid = await ready(process)
    await bounded(process.sleep(STOP_TIMEOUT))
    with pytest.raises(ProcessStartError, match=r"could not wake .*no time was left") as info:
        await bounded(process.ensure_ready(0.5))
    assert "no answer within" in str(info.value)
    assert state_of(process) is S.STOPPED and process.pid is None
    await wait_until(lambda: gone(pid), "the server that did not wake to die")
    await bounded(process.ensure_ready(READY_TIMEOUT))  # a later call starts it cold
    assert state_of(process) is S.READY


# ------------------------------------------------- deaths, stops, races


async def test_a_child_killed_while_asleep_is_stopped(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    process = make(on_state_change=recorder)
    pid = await ready(process)
    await bounded(process.sleep(STOP_TIMEOUT))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        os.kill(pid, signal.SIGKILL)
        await bounded(recorder.stopped.wait())
        assert state_of(process) is S.STOPPED and process.pid is None
        assert process.exit_code == -signal.SIGKILL
        assert recorder.changes[-1] == (S.SLEEPING, S.STOPPED)
        await bounded(process.stop(STOP_TIMEOUT))  # joins the crash report
    assert "exited unexpectedly while asleep" in caplog.text
    await bounded(process.ensure_ready(READY_TIMEOUT))  # starts cold
    assert process.pid not in (None, pid) and process.wakes == 0


async def test_stop_from_sleeping_kills_the_group(make: Factory) -> None:
    recorder = Recorder()
    process = make(cmd=with_helper(), on_state_change=recorder)
    pid = await ready(process)
    helper = helper_pid(process)
    await bounded(process.sleep(STOP_TIMEOUT))
    await bounded(process.stop(STOP_TIMEOUT))
    assert state_of(process) is S.STOPPED and process.pid is None
    assert recorder.changes[-2:] == [(S.SLEEPING, S.STOPPING), (S.STOPPING, S.STOPPED)]
    assert process.exit_code == 0  # the server stopped gracefully on SIGTERM
    await wait_until(lambda: gone(pid) and gone(helper), "the whole group to die")
    assert not alive(helper) or gone(helper)


async def test_stop_while_falling_asleep_waits_then_stops(make: Factory) -> None:
    process = make(cmd=server_cmd("--sleep-time", "0.3"))
    pid = await ready(process)
    sleeping = asyncio.ensure_future(process.sleep(STOP_TIMEOUT))
    await wait_until(lambda: lines_with(process, "sleep") != [], "the sleep call")
    assert process.state is S.STOPPING
    await bounded(process.stop(STOP_TIMEOUT))
    await bounded(sleeping)  # the sleep itself succeeded before the stop
    assert state_of(process) is S.STOPPED and process.sleeps == 1
    await wait_until(lambda: gone(pid), "the server to die")


async def test_ensure_ready_while_falling_asleep_waits_then_wakes(make: Factory) -> None:
    process = make(cmd=server_cmd("--sleep-time", "0.3"))
    pid = await ready(process)
    sleeping = asyncio.ensure_future(process.sleep(STOP_TIMEOUT))
    await wait_until(lambda: lines_with(process, "sleep") != [], "the sleep call")
    await bounded(process.ensure_ready(READY_TIMEOUT))
    await bounded(sleeping)
    assert state_of(process) is S.READY and process.pid == pid
    assert process.sleeps == 1 and process.wakes == 1


async def test_stop_during_a_wake_aborts_it(make: Factory) -> None:
    process = make(cmd=server_cmd("--wake-time", "3600"))
    pid = await ready(process)
    await bounded(process.sleep(STOP_TIMEOUT))
    waking = asyncio.ensure_future(process.ensure_ready(READY_TIMEOUT))
    await wait_until(lambda: lines_with(process, "wake") != [], "the wake call")
    assert process.state is S.STARTING
    await bounded(process.stop(STOP_TIMEOUT))
    with pytest.raises(ProcessStartError, match="stopped while starting"):
        await bounded(waking)
    assert state_of(process) is S.STOPPED and process.pid is None
    await wait_until(lambda: gone(pid), "the server to die")


async def test_a_cancelled_sleep_caller_leaves_the_sleep_running(make: Factory) -> None:
    process = make(cmd=server_cmd("--sleep-time", "0.3"))
    pid = await ready(process)
    caller = asyncio.ensure_future(process.sleep(STOP_TIMEOUT))
    await wait_until(lambda: lines_with(process, "sleep") != [], "the sleep call")
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await wait_until(lambda: process.state is S.SLEEPING, "the sleep to complete")
    assert process.pid == pid and process.sleeps == 1


async def test_concurrent_sleeps_share_one_call(make: Factory) -> None:
    process = make(cmd=server_cmd("--sleep-time", "0.2"))
    await ready(process)
    await bounded(asyncio.gather(*(process.sleep(STOP_TIMEOUT) for _ in range(3))))
    assert process.state is S.SLEEPING and process.sleeps == 1
    assert len(lines_with(process, "sleep")) == 1


async def test_shutdown_from_sleeping(make: Factory) -> None:
    process = make()
    pid = await ready(process)
    await bounded(process.sleep(STOP_TIMEOUT))
    await bounded(process.shutdown(STOP_TIMEOUT))
    assert state_of(process) is S.SHUTDOWN
    await wait_until(lambda: gone(pid), "the server to die")
    with pytest.raises(ProcessSleepError, match="shutting down"):
        await process.sleep(STOP_TIMEOUT)


# ------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sleep_level": 3}, "sleep_level"),
        ({"sleep_level": 0}, "sleep_level"),
        ({"sleep_level": True}, "sleep_level"),
        ({"sleep_level": "1"}, "sleep_level"),
        ({"sleep_endpoint": "sleep"}, "sleep_endpoint"),
        ({"sleep_endpoint": 5}, "sleep_endpoint"),
        ({"sleep_endpoint": "/sleep now"}, "sleep_endpoint"),
        ({"wake_endpoint": ""}, "wake_endpoint"),
    ],
)
def test_invalid_sleep_options_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    options: dict[str, Any] = {"name": "m", "cmd": "server", "port": 5800, **kwargs}
    with pytest.raises(ConfigError, match=f"'m': {field}: "):
        SubprocessProcess(**options)


# ------------------------------------------------------------ contract kit


async def test_a_sleep_capable_process_passes_the_contract_checks(make: Factory) -> None:
    from swapcore.testing.process_checks import check_process

    process = make()
    await bounded(check_process(process, timeout=READY_TIMEOUT / 2), READY_TIMEOUT * 4)
    assert process.state is S.STOPPED
    # And after a sleep and a wake it still meets them.
    await ready(process)
    await bounded(process.sleep(STOP_TIMEOUT))
    await bounded(check_process(process, timeout=READY_TIMEOUT / 2), READY_TIMEOUT * 4)
    assert process.state is S.STOPPED
