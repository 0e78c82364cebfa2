"""``swapcore serve`` killed with SIGKILL while it serves leaves no model process behind.

The gateway runs as a subprocess over three fake models that run side by
side; each model's command is a small script that starts a helper process
in the model's group and then becomes the fake model, and every one of
these processes carries a marker unique to the test in its command line.
While streams are in flight the gateway gets SIGKILL; /proc is then polled
until no marked process runs, for at most the 3 s the requirement allows.
A gateway started again on the port a leftover server holds says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from system_helpers import free_port, pids_with, port_block

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")

MODELS = ("a", "b", "c")
ORPHAN_BOUND = 3.0  # the requirement: no model process 3 s after the gateway's SIGKILL
TIMEOUT = 30.0  # any other wait: generous, the machine is shared

# A model: a helper in the model's group (as llama-server's own children would be),
# then the fake model itself, both marked with "$3" in their command lines.
MODEL_SCRIPT = """\
"$1" -c 'import time; time.sleep(1000)' "$3-helper" &
exec "$1" -m swapcore.fakemodel --port "$2" --tokens 400 --token-delay 0.01 --model-name "$3"
"""


def write_config(tmp_path: Path, marker: str, start_port: int) -> Path:
    script = tmp_path / "model.sh"
    script.write_text(MODEL_SCRIPT)
    python = shlex.quote(sys.executable)
    models = "".join(
        f"""\
  {model}:
    cmd: sh {shlex.quote(str(script))} {python} ${{PORT}} {marker}-{model}
    proxy: http://127.0.0.1:${{PORT}}
"""
        for model in MODELS
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""\
healthCheckTimeout: 15
startPort: {start_port}
models:
{models}groups:
  all:
    swap: false
    exclusive: false
    members: [{", ".join(MODELS)}]
"""
    )
    return config


@contextlib.contextmanager
def serve(config: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "swapcore", "serve", str(config), "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            yield process, f"http://127.0.0.1:{port}", log
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=TIMEOUT)


def wait_until(condition: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def running_marked(marker: str) -> set[int]:
    """Marked processes that still run (a zombie's command line is empty: not listed)."""
    return pids_with(marker)


@pytest.fixture
def marker() -> Iterator[str]:
    mark = f"swapcore-orphan-test-{uuid.uuid4().hex[:10]}"
    yield mark
    for pid in pids_with(mark):  # only matters when the test failed
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def stream_forever(client: Any, url: str, model: str) -> None:
    """Streams that are cut by the gateway's death: their end is no concern here."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with contextlib.suppress(httpx.HTTPError):
        while True:
            async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as reply:
                async for _ in reply.aiter_raw():
                    pass


async def kill_under_load(gateway: subprocess.Popen[bytes], url: str, marker: str) -> float:
    """Load every model with streams, SIGKILL the gateway; seconds until no model process runs."""
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT)) as client:
        clients = [
            asyncio.ensure_future(stream_forever(client, url, model))
            for model in MODELS
            for _ in range(4)
        ]
        try:
            deadline = loop.time() + TIMEOUT
            # Every model serving: two marked processes each (the server and its helper).
            while True:
                running = (await client.get(f"{url}/running")).json()["running"]
                serving = [r for r in running if r["state"] == "ready" and r["in_flight"] > 0]
                if len(serving) == len(MODELS) and len(running_marked(marker)) == 2 * len(MODELS):
                    break
                assert loop.time() < deadline, f"the load never reached every model: {running}"
                await asyncio.sleep(0.05)
            os.kill(gateway.pid, signal.SIGKILL)
            killed = loop.time()
            while running_marked(marker):
                took = loop.time() - killed
                assert took < ORPHAN_BOUND, (
                    f"{len(running_marked(marker))} model processes still run {took:.2f} s "
                    "after the gateway's SIGKILL"
                )
                await asyncio.sleep(0.005)
            return loop.time() - killed
        finally:
            for task in clients:
                task.cancel()
            await asyncio.gather(*clients, return_exceptions=True)


def test_serve_killed_under_load_leaves_no_model_process(marker: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, marker, port_block(len(MODELS)))
    with serve(config, tmp_path) as (gateway, url, _log):
        wait_until(lambda: healthy(url), "GET /health")
        took = asyncio.run(kill_under_load(gateway, url, marker))
        assert gateway.wait(timeout=TIMEOUT) == -signal.SIGKILL
    print(f"\nthe last model process was gone {took:.3f} s after the SIGKILL")
    assert running_marked(marker) == set()


def test_serve_on_a_port_a_leftover_server_holds_says_so(marker: str, tmp_path: Path) -> None:
    start_port = port_block(len(MODELS))
    # A server an earlier gateway left behind, on model a's port.
    leftover = subprocess.Popen(
        [sys.executable, "-m", "swapcore.fakemodel", "--port", str(start_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: healthy(f"http://127.0.0.1:{start_port}"), "the leftover server")
        config = write_config(tmp_path, marker, start_port)
        with serve(config, tmp_path) as (gateway, url, log):
            wait_until(lambda: healthy(url), "GET /health")
            body = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
            reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT)
            assert reply.status_code == 502, reply.text
            message = reply.json()["error"]["message"]
            assert f"port {start_port} on 127.0.0.1 is already in use" in message, message
            assert running_marked(marker) == set()  # nothing was spawned for model a
            # The other models still start and serve.
            body["model"] = "b"
            body["stream"] = False
            assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT).is_success
            gateway.send_signal(signal.SIGTERM)
            assert gateway.wait(timeout=TIMEOUT) == 0
        assert "already in use" in log.read_text()
        assert leftover.poll() is None and healthy(f"http://127.0.0.1:{start_port}")
    finally:
        leftover.kill()
        leftover.wait(TIMEOUT)
