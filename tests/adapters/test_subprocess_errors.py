"""ProcessStartError: which failures are worth a retry, pickling, and no secrets in messages."""

from __future__ import annotations

import asyncio
import logging
import pickle
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from swapcore import ConfigError, ProcessState
from swapcore.adapters.subprocess import ProcessStartError, SubprocessProcess, _rebuild_start_error
from system_helpers import free_port

S = ProcessState
READY_TIMEOUT = 30.0  # generous: the machine is shared; no test asserts a duration
STOP_TIMEOUT = 10.0
SECRET = "sk-SWAPCORE-TEST-SECRET-7f3a"
ENV_SECRET = "env-SWAPCORE-TEST-SECRET-91c2"

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


async def start_error(process: SubprocessProcess, timeout: float = READY_TIMEOUT) -> Any:
    with pytest.raises(ProcessStartError) as info:
        await asyncio.wait_for(process.ensure_ready(timeout), READY_TIMEOUT * 2)
    return info.value


async def wait_for_spawn(process: SubprocessProcess) -> None:
    for _ in range(3000):
        if process.pid is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the child was never spawned")


def fake_cmd(load: float) -> list[str]:
    return [sys.executable, "-m", "swapcore.fakemodel", "--port", "${PORT}", "--load", str(load)]


# ------------------------------------------------------------------ retryable


async def test_a_crash_while_starting_is_retryable(make: Factory) -> None:
    error = await start_error(make(cmd=["sh", "-c", "echo loading; exit 3"]))
    assert error.retryable is True
    assert error.exit_code == 3 and "exited with code 3 before it was ready" in error.reason


async def test_a_signal_while_starting_is_retryable(make: Factory) -> None:
    error = await start_error(make(cmd=["sh", "-c", "kill -KILL $$"]))
    assert error.retryable is True
    assert error.exit_code == -9
    assert "was killed by SIGKILL (exit code -9) before it was ready" in error.reason


async def test_a_timeout_is_not_retryable(make: Factory) -> None:
    error = await start_error(make(cmd=fake_cmd(3600)), timeout=0.5)
    assert error.retryable is False and "not healthy within" in error.reason


async def test_a_caller_timing_out_of_a_longer_start_is_not_retryable(make: Factory) -> None:
    process = make(cmd=fake_cmd(3600))
    longer = asyncio.ensure_future(process.ensure_ready(READY_TIMEOUT))
    error = await start_error(process, timeout=0.3)
    assert error.retryable is False and "goes on for other callers" in error.reason
    await process.stop(STOP_TIMEOUT)
    stopped = await asyncio.gather(longer, return_exceptions=True)
    assert isinstance(stopped[0], ProcessStartError) and stopped[0].retryable is False


async def test_a_stop_while_starting_is_not_retryable(make: Factory) -> None:
    process = make(cmd=fake_cmd(3600))
    start = asyncio.ensure_future(process.ensure_ready(READY_TIMEOUT))
    await wait_for_spawn(process)
    await process.stop(STOP_TIMEOUT)
    with pytest.raises(ProcessStartError, match="stopped while starting") as info:
        await start
    assert info.value.retryable is False


async def test_a_shut_down_process_is_not_retryable(make: Factory) -> None:
    process = make(cmd=fake_cmd(0))
    await process.shutdown(STOP_TIMEOUT)
    error = await start_error(process)
    assert error.retryable is False and "shut down" in error.reason


async def test_a_program_that_cannot_run_is_not_retryable(make: Factory, tmp_path: Path) -> None:
    error = await start_error(make(cmd=[str(tmp_path / "llama-server"), "-m", "x.gguf"]))
    assert error.retryable is False
    assert error.reason == "cannot run 'llama-server': No such file or directory"
    assert error.exit_code is None and error.__cause__ is None


async def test_a_missing_working_directory_is_named(make: Factory, tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    error = await start_error(make(cmd=["sleep", "300"], cwd=missing))
    assert error.retryable is False
    assert error.reason == f"cannot run 'sleep': working directory {str(missing)!r}: " + (
        "No such file or directory"
    )


@pytest.mark.parametrize("retryable", [True, False])
def test_pickling_keeps_every_field(retryable: bool) -> None:
    error = ProcessStartError(
        "m", "exited with code 3", exit_code=3, output=["a", "b"], retryable=retryable
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ProcessStartError and str(copy) == str(error)
    assert (copy.model, copy.reason, copy.exit_code, copy.output, copy.retryable) == (
        "m",
        "exited with code 3",
        3,
        ("a", "b"),
        retryable,
    )


def test_defaults_and_old_pickles() -> None:
    error = ProcessStartError("m", "why")
    assert error.retryable is False and error.exit_code is None and error.output == ()
    # A pickle made before ``retryable`` existed rebuilds with four fields.
    old = _rebuild_start_error("m", "why", None, ())
    assert old.retryable is False and str(old) == str(error)


# ------------------------------------------------------------ no secrets leak


def assert_no_secret(caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    logged = [caplog.text, *(record.getMessage() for record in caplog.records)]
    for text in (*texts, *logged):
        assert SECRET not in text and ENV_SECRET not in text, text


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="swapcore")
    return caplog


async def test_a_program_that_cannot_run_names_only_the_program(
    make: Factory, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    program = tmp_path / "private-dir" / "llama-server"
    process = make(
        cmd=[str(program), "--api-key", SECRET, "--port", "${PORT}"],
        env={"API_TOKEN": ENV_SECRET},
    )
    error = await start_error(process)
    assert "'llama-server'" in str(error)
    assert "private-dir" not in str(error) and "private-dir" not in debug_logs.text
    assert_no_secret(debug_logs, str(error), repr(error), error.reason)


async def test_a_full_life_cycle_logs_no_argument_or_environment_value(
    make: Factory, debug_logs: pytest.LogCaptureFixture
) -> None:
    # The server's own output is logged as it is; this one prints nothing secret.
    script = 'echo "started"; exec "$0" -m swapcore.fakemodel --port "$1"'
    cmd = ["sh", "-c", script, sys.executable, "${PORT}", "--api-key", SECRET]
    process = make(cmd=cmd, env={"API_TOKEN": ENV_SECRET})
    await asyncio.wait_for(process.ensure_ready(READY_TIMEOUT), READY_TIMEOUT * 2)
    await process.stop(STOP_TIMEOUT)
    assert any(
        "started pid" in r.getMessage() and r.getMessage().endswith(": sh")
        for r in debug_logs.records
    )
    assert_no_secret(debug_logs)


async def test_a_crash_while_starting_names_only_the_program(
    make: Factory, debug_logs: pytest.LogCaptureFixture
) -> None:
    cmd = ["sh", "-c", "echo failing; exit 4", "sh", "--api-key", SECRET]
    error = await start_error(make(cmd=cmd, env={"API_TOKEN": ENV_SECRET}))
    assert error.output == ("failing",)
    assert_no_secret(debug_logs, str(error))


async def test_a_cmd_stop_that_cannot_run_names_only_its_program(
    make: Factory, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    stopper = tmp_path / "missing-stopper"
    process = make(
        cmd="sleep 300", check_endpoint="none", cmd_stop=[str(stopper), "--token", SECRET]
    )
    await asyncio.wait_for(process.ensure_ready(READY_TIMEOUT), READY_TIMEOUT * 2)
    await process.stop(STOP_TIMEOUT)
    assert "cannot run cmd_stop 'missing-stopper': No such file" in debug_logs.text
    assert process.state is S.STOPPED
    assert_no_secret(debug_logs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cmd": f"server --api-key {SECRET} 'unclosed"},
        {"cmd_stop": f"stop --api-key {SECRET} 'unclosed"},
        {"env": {"API_TOKEN": [ENV_SECRET]}},
        {"cmd": ["server", f"--api-key={SECRET}\0"]},
    ],
    ids=["cmd", "cmd_stop", "env", "nul"],
)
def test_configuration_errors_quote_no_value(kwargs: dict[str, Any]) -> None:
    options: dict[str, Any] = {"name": "m", "cmd": "server", "port": 5800, **kwargs}
    with pytest.raises(ConfigError) as info:
        SubprocessProcess(**options)
    assert SECRET not in str(info.value) and ENV_SECRET not in str(info.value)
    assert next(iter(kwargs)) in str(info.value)
