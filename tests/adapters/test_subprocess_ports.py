"""A port something else already listens on is a clear start error, never adopted."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

import httpx

from swapcore import ProcessState
from swapcore.adapters._ports import local_endpoint, port_in_use
from swapcore.adapters.subprocess import ProcessStartError, SubprocessProcess
from system_helpers import free_port

S = ProcessState
READY_TIMEOUT = 30.0  # generous: the machine is shared; no test asserts a duration
STOP_TIMEOUT = 10.0

Factory = Callable[..., SubprocessProcess]


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    created: list[SubprocessProcess] = []

    def factory(**kwargs: Any) -> SubprocessProcess:
        kwargs.setdefault("name", "m")
        kwargs.setdefault("health_interval", 0.05)
        process = SubprocessProcess(**kwargs)
        created.append(process)
        return process

    yield factory
    for process in created:
        await asyncio.wait_for(process.stop(STOP_TIMEOUT), STOP_TIMEOUT * 2)


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def leftover() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A model server nobody manages (as one an earlier gateway left), healthy on a port."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "swapcore.fakemodel", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            if server.poll() is not None or healthy(f"http://127.0.0.1:{port}"):
                break
            time.sleep(0.05)
        assert healthy(f"http://127.0.0.1:{port}"), "the leftover server never became healthy"
        yield server, port
    finally:
        server.kill()
        server.wait(READY_TIMEOUT)


def spawn_recorder(tmp_path: Path) -> tuple[list[str], Path]:
    """A command that records its start in a file before becoming the fake model."""
    record = tmp_path / "spawned"
    script = 'echo spawned > "$2"; exec "$0" -m swapcore.fakemodel --port "$1"'
    return ["sh", "-c", script, sys.executable, "${PORT}", str(record)], record


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_port_in_use_fails_the_start_without_spawning(
    make: Factory,
    leftover: tuple[subprocess.Popen[bytes], int],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    host: str,
) -> None:
    server, port = leftover
    cmd, record = spawn_recorder(tmp_path)
    changes: list[tuple[ProcessState, ProcessState]] = []
    process = make(
        cmd=cmd,
        port=port,
        proxy=f"http://{host}:${{PORT}}",
        on_state_change=lambda old, new: changes.append((old, new)),
    )
    with (
        caplog.at_level(logging.WARNING, logger="swapcore"),
        pytest.raises(ProcessStartError) as info,
    ):
        await asyncio.wait_for(process.ensure_ready(READY_TIMEOUT), READY_TIMEOUT * 2)
    error = info.value
    assert f"port {port} on {host} is already in use by another process" in error.reason
    assert "ss -ltnp" in error.reason and "another port" in error.reason
    assert error.retryable is False and error.exit_code is None
    assert "already in use" in caplog.text
    assert not record.exists()  # nothing was spawned
    assert process.state is S.STOPPED and process.pid is None
    assert changes == [(S.STOPPED, S.STARTING), (S.STARTING, S.STOPPED)]
    # The leftover server is untouched.
    assert server.poll() is None and healthy(f"http://127.0.0.1:{port}")


async def test_a_port_released_within_the_grace_is_used(
    make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server we have just stopped may hold its port a moment longer: the check waits."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    answers: list[bool] = []

    async def release_after_first_answer(host: str, checked: int) -> bool:
        in_use = await port_in_use(host, checked)
        answers.append(in_use)
        listener.close()  # the port is free from the second check on
        return in_use

    monkeypatch.setattr("swapcore.adapters.subprocess.port_in_use", release_after_first_answer)
    process = make(cmd=[sys.executable, "-m", "swapcore.fakemodel", "--port", "${PORT}"], port=port)
    await asyncio.wait_for(process.ensure_ready(READY_TIMEOUT), READY_TIMEOUT * 2)
    assert process.state is S.READY
    assert answers == [True, False]


async def test_a_health_answer_from_someone_else_never_readies_a_dead_child(
    make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that binds the port after the check answers 200 only once our child is dead."""
    process: SubprocessProcess | None = None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        while process is None or process.exit_code is None:
            await asyncio.sleep(0.01)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def missed(host: str, checked: int) -> bool:
        return False  # as if the other server bound the port just after the check

    monkeypatch.setattr("swapcore.adapters.subprocess.port_in_use", missed)
    try:
        process = make(cmd=["sh", "-c", "sleep 0.2; exit 5"], port=port)
        with pytest.raises(ProcessStartError) as info:
            await asyncio.wait_for(process.ensure_ready(READY_TIMEOUT), READY_TIMEOUT * 2)
    finally:
        server.close()
        await server.wait_closed()
    assert "exited with code 5 before it was ready" in info.value.reason
    assert info.value.retryable is True
    assert process.state is S.STOPPED


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:5800", ("127.0.0.1", 5800)),
        ("http://127.0.0.2:5800/v1", ("127.0.0.2", 5800)),
        ("http://localhost:8080", ("localhost", 8080)),
        ("http://[::1]:9000", ("::1", 9000)),
        ("http://0.0.0.0:7000", ("0.0.0.0", 7000)),
        ("http://127.0.0.1", ("127.0.0.1", 80)),
        ("https://localhost", ("localhost", 443)),
        ("http://10.0.0.5:8000", None),
        ("http://gpu-box.internal:8000", None),
    ],
)
def test_only_ports_on_this_machine_are_checked(url: str, expected: tuple[str, int] | None) -> None:
    assert local_endpoint(url) == expected


async def test_port_in_use_sees_a_listener_and_no_listener() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert await port_in_use("127.0.0.1", port)
        assert await port_in_use("localhost", port)  # tries every address of the name
    assert not await port_in_use("127.0.0.1", port)


@pytest.mark.parametrize("port_check", [True, False])
async def test_port_check_can_be_turned_off(make: Factory, port_check: bool) -> None:
    """Off: something meant to answer for the server (a tunnel) may listen there first."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        process = make(cmd="sleep 300", check_endpoint="none", port=port, port_check=port_check)
        if port_check:
            with pytest.raises(ProcessStartError, match="already in use"):
                await asyncio.wait_for(process.ensure_ready(READY_TIMEOUT), READY_TIMEOUT * 2)
            assert process.pid is None
        else:
            await asyncio.wait_for(process.ensure_ready(READY_TIMEOUT), READY_TIMEOUT * 2)
            assert process.state is S.READY
