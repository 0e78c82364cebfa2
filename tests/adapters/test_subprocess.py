"""SubprocessProcess against real child processes (the fake model, sh, sleep)."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

import httpx

from swapcore import ConfigError, Process, ProcessState, SwapcoreError
from swapcore.adapters._outputlog import OutputLog
from swapcore.adapters.subprocess import ProcessStartError, SubprocessProcess
from system_helpers import free_port

S = ProcessState
READY_TIMEOUT = 30.0  # generous: the machine is shared; no test asserts a duration
STOP_TIMEOUT = 10.0
LOGGER = "swapcore.adapters.subprocess"


def fake_cmd(load: float = 0.1, *extra: str) -> list[str]:
    fake = [sys.executable, "-m", "swapcore.fakemodel", "--port", "${PORT}", "--load", str(load)]
    return [*fake, *extra]


def pid_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie nobody reaps counts as gone).

    Orphans are reparented to PID 1, which in some containers never reaps them.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")


def assert_reaped(pid: int) -> None:
    """Our own child ``pid`` was waited for: no zombie of ours is left."""
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def state_of(process: SubprocessProcess) -> ProcessState:
    """The state, read afresh (keeps mypy from narrowing it across awaits)."""
    return process.state


class Recorder:
    """An on_state_change callback that records transitions and wakes waiters."""

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
    """Builds processes and stops every one of them after the test, pass or fail."""
    created: list[SubprocessProcess] = []

    def factory(**kwargs: Any) -> SubprocessProcess:
        kwargs.setdefault("name", "m")
        kwargs.setdefault("health_interval", 0.05)
        if "port" not in kwargs and "proxy" not in kwargs:
            kwargs["port"] = free_port()
        process = SubprocessProcess(**kwargs)
        created.append(process)
        return process

    yield factory
    for process in created:
        await asyncio.wait_for(process.stop(STOP_TIMEOUT), STOP_TIMEOUT * 2)


async def bounded(awaitable: Any, timeout: float = READY_TIMEOUT * 2) -> Any:
    return await asyncio.wait_for(awaitable, timeout)


# ----------------------------------------------------------------- life cycle


async def test_start_ready_stop(make: Factory) -> None:
    recorder = Recorder()
    process = make(cmd=fake_cmd(0.2), on_state_change=recorder)
    assert isinstance(process, Process)
    assert process.state is S.STOPPED and process.pid is None

    await bounded(process.ensure_ready(READY_TIMEOUT))
    assert state_of(process) is S.READY
    pid = process.pid
    assert pid is not None
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(process.url + "/health")
    assert response.status_code == 200
    assert any("listening" in line for line in process.output_tail())

    await bounded(process.ensure_ready(READY_TIMEOUT))  # ready: returns at once
    await bounded(process.stop(STOP_TIMEOUT))
    assert process.state is S.STOPPED and process.pid is None
    assert process.exit_code == 0  # the fake model exits cleanly on SIGTERM
    assert pid_gone(pid)
    assert_reaped(pid)
    assert recorder.changes == [
        (S.STOPPED, S.STARTING),
        (S.STARTING, S.READY),
        (S.READY, S.STOPPING),
        (S.STOPPING, S.STOPPED),
    ]
    await bounded(process.stop(STOP_TIMEOUT))  # idempotent
    assert recorder.changes[-1] == (S.STOPPING, S.STOPPED)


async def test_never_healthy_fails_within_the_timeout(make: Factory) -> None:
    process = make(cmd=fake_cmd(3600))
    start = asyncio.ensure_future(process.ensure_ready(1.0))
    await wait_until(lambda: process.pid is not None, "the spawn")
    pid = process.pid
    assert pid is not None
    with pytest.raises(ProcessStartError) as info:
        await bounded(start)
    message = str(info.value)
    assert "not healthy within 1 s" in message
    assert "HTTP 503" in message or "Connect" in message  # the last check's outcome
    assert info.value.model == "m" and info.value.exit_code == -signal.SIGKILL
    assert info.value.retryable is False  # we killed it: a timeout, not a crash
    assert process.state is S.STOPPED and process.pid is None
    assert pid_gone(pid)
    assert_reaped(pid)


async def test_exit_during_start_reports_code_and_output(make: Factory) -> None:
    cmd = ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"]
    process = make(cmd=cmd)
    with pytest.raises(ProcessStartError) as info:
        await bounded(process.ensure_ready(READY_TIMEOUT))
    error = info.value
    assert isinstance(error, SwapcoreError)
    assert "'m'" in str(error) and "exited with code 3" in str(error)
    assert "to-stdout" in str(error) and "to-stderr" in str(error)
    assert error.exit_code == 3 and error.output == ("to-stdout", "to-stderr")
    assert error.retryable is True  # it crashed on its own: a new start may work
    assert process.state is S.STOPPED and process.exit_code == 3
    assert process.output_tail() == ["to-stdout", "to-stderr"]
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.exit_code == 3 and copy.retryable is True


async def test_a_broken_health_check_still_kills_the_child(
    make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids: list[int | None] = []

    async def broken_probe(*args: object) -> str | None:
        pids.append(process.pid)  # the child it should have checked
        raise RuntimeError("broken install")

    monkeypatch.setattr("swapcore.adapters.subprocess._probe", broken_probe)
    process = make(cmd=fake_cmd())
    start = asyncio.ensure_future(process.ensure_ready(READY_TIMEOUT))
    await wait_until(lambda: bool(pids), "the health check")
    pid = pids[0]
    assert pid is not None
    with pytest.raises(ProcessStartError, match="health check itself failed") as info:
        await bounded(start)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.retryable is False
    assert process.state is S.STOPPED
    assert pid_gone(pid)
    assert_reaped(pid)


async def test_command_that_cannot_run(make: Factory, tmp_path: Path) -> None:
    process = make(cmd=[str(tmp_path / "no-such-server")])
    with pytest.raises(ProcessStartError, match="cannot run"):
        await bounded(process.ensure_ready(READY_TIMEOUT))
    assert process.state is S.STOPPED


async def test_check_endpoint_none_is_ready_once_spawned(make: Factory) -> None:
    process = make(cmd="sleep 300", check_endpoint="none")
    await bounded(process.ensure_ready(READY_TIMEOUT))
    assert process.state is S.READY
    pid = process.pid
    assert pid is not None
    await bounded(process.stop(STOP_TIMEOUT))
    assert process.exit_code == -signal.SIGTERM
    assert pid_gone(pid)
    assert_reaped(pid)


# ------------------------------------------------------------------- stopping


# The model server forks a helper; "stubborn" helpers ignore SIGTERM and outlive the leader.
CHILDREN = {
    "plain": "sleep 300 &",
    "stubborn": '(trap "" TERM; exec sleep 300) &',
}


def server_with_child(child: str) -> list[str]:
    script = f'{CHILDREN[child]} echo "child=$!"; exec "$0" -m swapcore.fakemodel --port "$1"'
    return ["sh", "-c", script, sys.executable, "${PORT}"]


def child_pid(process: SubprocessProcess) -> int:
    line = next(line for line in process.output_tail() if line.startswith("child="))
    return int(line.removeprefix("child="))


@pytest.mark.parametrize("child", sorted(CHILDREN))
async def test_stop_kills_the_whole_process_group(make: Factory, child: str) -> None:
    process = make(cmd=server_with_child(child))
    await bounded(process.ensure_ready(READY_TIMEOUT))
    helper = child_pid(process)
    assert not pid_gone(helper)
    await bounded(process.stop(STOP_TIMEOUT))
    assert process.exit_code == 0  # the leader stopped gracefully on SIGTERM
    await wait_until(lambda: pid_gone(helper), "the model's own child to die")


async def test_crash_kills_what_the_leader_left_behind(make: Factory) -> None:
    recorder = Recorder()
    process = make(cmd=server_with_child("stubborn"), on_state_change=recorder)
    await bounded(process.ensure_ready(READY_TIMEOUT))
    helper = child_pid(process)
    pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await bounded(recorder.stopped.wait())
    await wait_until(lambda: pid_gone(helper), "the orphaned child to die")


async def test_sigkill_after_timeout_when_sigterm_is_ignored(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring SIGTERM', flush=True)\n"
        "time.sleep(300)\n"
    )
    process = make(cmd=[sys.executable, "-c", script], check_endpoint="none")
    await bounded(process.ensure_ready(READY_TIMEOUT))
    await wait_until(lambda: "ignoring SIGTERM" in process.output_tail(), "the handler")
    pid = process.pid
    assert pid is not None
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await bounded(process.stop(0.3))
    assert process.exit_code == -signal.SIGKILL
    assert "sending SIGKILL" in caplog.text
    assert pid_gone(pid)
    assert_reaped(pid)


async def test_cmd_stop_runs_with_the_pid(make: Factory, tmp_path: Path) -> None:
    record = tmp_path / "stopped-pid"
    cmd_stop = ["sh", "-c", 'echo "$1" > "$2"; kill -TERM "$1"', "sh", "${PID}", str(record)]
    process = make(cmd=fake_cmd(), cmd_stop=cmd_stop)
    await bounded(process.ensure_ready(READY_TIMEOUT))
    pid = process.pid
    await bounded(process.stop(STOP_TIMEOUT))
    assert record.read_text().strip() == str(pid)
    assert process.exit_code == 0
    assert pid is not None and pid_gone(pid)


async def test_cmd_stop_that_does_not_stop_leads_to_sigkill(make: Factory) -> None:
    process = make(cmd="sleep 300", check_endpoint="none", cmd_stop="echo not stopping")
    await bounded(process.ensure_ready(READY_TIMEOUT))
    await bounded(process.stop(0.3))
    assert process.exit_code == -signal.SIGKILL
    assert "cmd_stop: not stopping" in process.output_tail()


async def test_concurrent_stops_share_one_stop(make: Factory) -> None:
    recorder = Recorder()
    process = make(cmd=fake_cmd(), on_state_change=recorder)
    await bounded(process.ensure_ready(READY_TIMEOUT))
    await bounded(asyncio.gather(process.stop(STOP_TIMEOUT), process.stop(STOP_TIMEOUT)))
    assert process.state is S.STOPPED
    assert recorder.changes.count((S.READY, S.STOPPING)) == 1


async def test_stop_while_starting_aborts_the_start(make: Factory) -> None:
    process = make(cmd=fake_cmd(3600))
    start = asyncio.ensure_future(process.ensure_ready(READY_TIMEOUT))
    await wait_until(lambda: process.pid is not None, "the spawn")
    pid = process.pid
    assert pid is not None
    await bounded(process.stop(STOP_TIMEOUT))
    assert process.state is S.STOPPED
    with pytest.raises(ProcessStartError, match="stopped while starting"):
        await bounded(start)
    assert pid_gone(pid)
    assert_reaped(pid)


async def test_ensure_ready_while_stopping_waits_then_restarts(make: Factory) -> None:
    recorder = Recorder()
    process = make(cmd=fake_cmd(), on_state_change=recorder)
    await bounded(process.ensure_ready(READY_TIMEOUT))
    old_pid = process.pid
    assert old_pid is not None
    stopping = asyncio.ensure_future(process.stop(STOP_TIMEOUT))
    await wait_until(lambda: process.state is S.STOPPING, "the stop to begin")
    await bounded(process.ensure_ready(READY_TIMEOUT))
    assert stopping.done()
    assert process.state is S.READY and process.pid not in (None, old_pid)
    assert pid_gone(old_pid)
    assert recorder.changes[-4:] == [
        (S.READY, S.STOPPING),
        (S.STOPPING, S.STOPPED),
        (S.STOPPED, S.STARTING),
        (S.STARTING, S.READY),
    ]


async def test_shutdown_is_final(make: Factory) -> None:
    process = make(cmd=fake_cmd())
    await bounded(process.ensure_ready(READY_TIMEOUT))
    pid = process.pid
    assert pid is not None
    await bounded(process.shutdown(STOP_TIMEOUT))
    assert process.state is S.SHUTDOWN
    assert pid_gone(pid)
    with pytest.raises(ProcessStartError, match="shut down"):
        await bounded(process.ensure_ready(READY_TIMEOUT))
    await bounded(process.stop(STOP_TIMEOUT))
    await bounded(process.shutdown(STOP_TIMEOUT))
    assert process.state is S.SHUTDOWN


# ------------------------------------------------------------ starts, shared


async def test_concurrent_ensure_ready_share_one_spawn(make: Factory, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    script = 'echo started >> "$2"; exec "$0" -m swapcore.fakemodel --port "$1" --load 0.3'
    process = make(cmd=["sh", "-c", script, sys.executable, "${PORT}", str(starts)])
    await bounded(asyncio.gather(*(process.ensure_ready(READY_TIMEOUT) for _ in range(5))))
    assert process.state is S.READY
    assert starts.read_text().splitlines() == ["started"]


async def test_cancelled_caller_leaves_the_start_running(make: Factory) -> None:
    process = make(cmd=fake_cmd(0.5))
    first = asyncio.ensure_future(process.ensure_ready(READY_TIMEOUT))
    await wait_until(lambda: process.pid is not None, "the spawn")
    pid = process.pid
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert process.state is S.STARTING
    await bounded(process.ensure_ready(READY_TIMEOUT))
    assert state_of(process) is S.READY and process.pid == pid


async def test_a_later_caller_extends_the_start_deadline(make: Factory) -> None:
    process = make(cmd=fake_cmd(1.0))
    short = asyncio.ensure_future(process.ensure_ready(0.2))
    await wait_until(lambda: process.state is S.STARTING, "the start")
    await bounded(process.ensure_ready(READY_TIMEOUT))
    with pytest.raises(ProcessStartError, match="goes on for other callers"):
        await bounded(short)
    assert process.state is S.READY


# -------------------------------------------------------------------- crashes


@pytest.mark.parametrize("how", ["sigkill", "fake-crash"])
async def test_crash_is_noticed_and_reported(
    make: Factory, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    recorder = Recorder()
    process = make(cmd=fake_cmd(), on_state_change=recorder)
    await bounded(process.ensure_ready(READY_TIMEOUT))
    pid = process.pid
    assert pid is not None
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        if how == "sigkill":
            os.kill(pid, signal.SIGKILL)
            expected = -signal.SIGKILL
        else:
            async with httpx.AsyncClient(trust_env=False) as client:
                with pytest.raises(httpx.HTTPError):
                    await client.post(process.url + "/fake/crash")
            expected = 70
        await bounded(recorder.stopped.wait())
        assert process.state is S.STOPPED and process.pid is None
        assert process.exit_code == expected
        assert recorder.changes[-1] == (S.READY, S.STOPPED)
        await bounded(process.stop(STOP_TIMEOUT))  # joins the crash report
    assert "exited unexpectedly" in caplog.text and "listening" in caplog.text
    assert pid_gone(pid)
    assert_reaped(pid)

    await bounded(process.ensure_ready(READY_TIMEOUT))  # a crashed model starts again
    assert state_of(process) is S.READY and process.pid != pid


async def test_a_raising_callback_is_logged_not_raised(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    def callback(old: ProcessState, new: ProcessState) -> None:
        raise RuntimeError("boom")

    process = make(cmd="sleep 300", check_endpoint="none", on_state_change=callback)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        await bounded(process.ensure_ready(READY_TIMEOUT))
    assert process.state is S.READY
    assert "on_state_change callback raised" in caplog.text


# ------------------------------------------------------------ configuration


def test_macros_and_defaults() -> None:
    process = SubprocessProcess(name="m", cmd="server --port ${PORT} --x 'a b'", port=5800)
    assert process.argv == ("server", "--port", "5800", "--x", "a b")
    assert process.url == "http://127.0.0.1:5800"
    custom = SubprocessProcess(
        name="m", cmd=["server"], proxy="http://localhost:${PORT}/", port=7000
    )
    assert custom.url == "http://localhost:7000"
    remote = SubprocessProcess(name="m", cmd=["server"], proxy="http://127.0.0.1:9999")
    assert remote.port is None and remote.url == "http://127.0.0.1:9999"
    assert "'m'" in repr(remote) and "stopped" in repr(remote)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"cmd": ""}, "cmd"),
        ({"cmd": "server 'unclosed"}, "cmd"),
        ({"cmd": [1, 2]}, "cmd"),
        ({"port": 0}, "port"),
        ({"port": True}, "port"),
        ({"port": None}, "proxy"),
        ({"port": None, "proxy": "http://h:1", "cmd": "s --port ${PORT}"}, "cmd"),
        ({"proxy": "127.0.0.1:5800"}, "proxy"),
        ({"check_endpoint": "health"}, "check_endpoint"),
        ({"env": {"A": 1}}, "env"),
        ({"env": {"A=B": "x"}}, "env"),
        ({"cmd_stop": ""}, "cmd_stop"),
        ({"health_interval": 0}, "health_interval"),
        ({"output_lines": 0}, "output_lines"),
        ({"on_state_change": 3}, "on_state_change"),
        ({"port_check": "yes"}, "port_check"),
    ],
)
def test_invalid_options_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    options: dict[str, Any] = {"name": "m", "cmd": "server", "port": 5800, **kwargs}
    with pytest.raises(ConfigError, match=field):
        SubprocessProcess(**options)


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan")])
async def test_invalid_timeouts(timeout: float) -> None:
    process = SubprocessProcess(name="m", cmd="sleep 300", port=5800)
    with pytest.raises(ValueError, match="timeout"):
        await process.ensure_ready(timeout)
    with pytest.raises(ValueError, match="timeout"):
        await process.stop(timeout)


async def test_env_and_cwd_reach_the_child(make: Factory, tmp_path: Path) -> None:
    script = 'echo "value=$SWAPCORE_TEST_VALUE dir=$(pwd)"; exec sleep 300'
    process = make(
        cmd=["sh", "-c", script],
        check_endpoint="none",
        env={"SWAPCORE_TEST_VALUE": "42"},
        cwd=tmp_path,
    )
    await bounded(process.ensure_ready(READY_TIMEOUT))
    expected = f"value=42 dir={tmp_path.resolve()}"
    await wait_until(lambda: expected in process.output_tail(), "the child's output")


# ------------------------------------------------------------------ output log


def test_output_log_keeps_the_last_lines() -> None:
    log = OutputLog(3, name="m", logger=logging.getLogger("test"))
    log.feed(b"one\ntwo\r\nthr")
    assert log.lines() == ["one", "two", "thr"]
    log.feed(b"ee\nfour\nfive")
    assert log.lines() == ["three", "four", "five"]
    log.close()
    assert log.lines() == ["three", "four", "five"]
    log.feed(b"\xff bad utf-8\n")
    assert log.lines()[-1] == "\ufffd bad utf-8"
    log.feed(b"x" * 10000)
    assert log.lines()[-1] == "x" * 4096
    log.append("note")
    assert log.lines()[-1] == "note"


# ------------------------------------------------------------ contract kit


async def test_passes_the_process_contract_checks(make: Factory) -> None:
    checks = pytest.importorskip("swapcore.testing.process_checks")
    process = make(cmd=fake_cmd())
    await bounded(checks.check_process(process, timeout=READY_TIMEOUT / 2), READY_TIMEOUT * 4)
    assert process.state is S.STOPPED


# ----------------------------------------------------------------- start_env


async def test_each_start_gets_the_variables_start_env_gives_then(make: Factory) -> None:
    devices = iter(["0", "1,2"])
    port = free_port()
    process = make(
        cmd=fake_cmd(0.05),
        port=port,
        env={"CUDA_VISIBLE_DEVICES": "overridden", "KEEP": "1"},
        start_env=lambda: {"CUDA_VISIBLE_DEVICES": next(devices)},
    )
    seen = []
    for _ in range(2):
        await bounded(process.ensure_ready(READY_TIMEOUT))
        async with httpx.AsyncClient() as client:
            stats = (await client.get(f"http://127.0.0.1:{port}/fake/stats")).json()
        seen.append((stats["visible_devices"], dict(process.last_start_env)))
        await bounded(process.stop(STOP_TIMEOUT))
    assert seen == [
        ("0", {"CUDA_VISIBLE_DEVICES": "0"}),
        ("1,2", {"CUDA_VISIBLE_DEVICES": "1,2"}),
    ]


async def test_a_failing_start_env_fails_the_start_and_spawns_nothing(make: Factory) -> None:
    def broken() -> dict[str, str]:
        raise RuntimeError("no placement")

    process = make(cmd=fake_cmd(0.05), start_env=broken)
    with pytest.raises(ProcessStartError, match="start_env failed: no placement"):
        await bounded(process.ensure_ready(READY_TIMEOUT))
    assert state_of(process) is S.STOPPED and process.pid is None
    with pytest.raises(ConfigError, match="start_env: must be callable"):
        make(cmd=fake_cmd(0.05), start_env="CUDA_VISIBLE_DEVICES=0")
