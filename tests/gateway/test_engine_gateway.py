"""``swapcore serve`` in front of a real inference engine, swapping it with a fake model.

The gateway runs as a subprocess with two models in one swapping group:
``tiny`` is llama-cpp-python's OpenAI server (``python -m llama_cpp.server``)
serving a tiny random-weight llama GGUF that the test writes, and ``fake`` is
``swapcore.fakemodel``. Through the gateway, with the ``openai`` package: a
chat completion and a streamed one from the engine, a request to ``fake``
(which swaps the engine out), and the engine again (swapped back in). After
SIGTERM the gateway exits 0 and no model process is left. Both models'
command lines carry a marker unique to the test, so their processes can be
found in ``/proc``. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine_helpers import engine_cmd_string, engine_env, requires_engine, write_tiny_llama
from system_helpers import alive, free_port, pids_with, port_block

pytestmark = [
    requires_engine,
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)"),
]
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

START_TIMEOUT = 60.0  # bounded waits: generous for a loaded CI machine
STOP_TIMEOUT = 30.0
MAX_TOKENS = 10
MESSAGES = [{"role": "user", "content": "hello, tiny engine"}]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture
def marker() -> Iterator[str]:
    mark = f"swapcore-engine-test-{uuid.uuid4().hex[:10]}"
    yield mark
    # Whatever happened, leave nothing behind.
    for pid in pids_with(mark):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def write_config(path: Path, model: Path, marker: str) -> None:
    fake = f"{shlex.quote(sys.executable)} -m swapcore.fakemodel"
    config = {
        "healthCheckTimeout": int(START_TIMEOUT),
        "startPort": port_block(2),
        "models": {
            "tiny": {
                "cmd": engine_cmd_string(model),
                "proxy": "http://127.0.0.1:${PORT}",
                # llama_cpp.server has no /health; it listens once the model is loaded.
                "checkEndpoint": "/v1/models",
            },
            "fake": {
                "cmd": f"{fake} --port ${{PORT}} --model-name {marker}-fake",
                "proxy": "http://127.0.0.1:${PORT}",
            },
        },
        "groups": {"engines": {"swap": True, "exclusive": True, "members": ["tiny", "fake"]}},
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML


def running(url: str) -> list[tuple[str, str]]:
    entries = httpx.get(f"{url}/running", timeout=10).json()["running"]
    return [(entry["model"], entry["state"]) for entry in entries]


def test_the_gateway_serves_and_swaps_a_real_engine(marker: str, tmp_path: Path) -> None:
    # The marker is in the engine's command line through the model's file name.
    model = write_tiny_llama(tmp_path / f"{marker}.gguf")
    config = tmp_path / "config.yaml"
    write_config(config, model, marker)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    seen: set[int] = set()

    def engine_pids() -> set[int]:
        return pids_with(f"{marker}.gguf")

    with log_path.open("w") as log:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "swapcore", "serve", str(config), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=engine_env(),  # the engine takes settings (even PORT) from the environment
        )
        try:
            status = drive(gateway, url, engine_pids, marker, seen)
        finally:
            if gateway.poll() is None:  # the test failed: still stop the models
                gateway.send_signal(signal.SIGTERM)
                try:
                    gateway.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    gateway.kill()
                    gateway.wait(timeout=STOP_TIMEOUT)
    output = log_path.read_text(errors="replace")
    assert status == 0, output[-3000:]
    assert pids_with(marker) == set()
    assert not any(alive(pid) for pid in seen), "a model process outlived the gateway"
    assert "Traceback" not in output


def drive(
    gateway: subprocess.Popen[bytes],
    url: str,
    engine_pids: Callable[[], set[int]],
    marker: str,
    seen: set[int],
) -> int:
    """The requests, checked step by step; returns the gateway's exit status."""

    def healthy() -> bool:
        assert gateway.poll() is None, "swapcore serve exited early"
        try:
            status: int = httpx.get(f"{url}/health", timeout=2.0).status_code
        except httpx.HTTPError:
            return False
        return status == 200

    wait_until(healthy, START_TIMEOUT, "GET /health")
    client = openai.OpenAI(
        base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=START_TIMEOUT
    )

    # A chat completion loads the engine.
    first = complete(client, "tiny")
    assert len(first) == MAX_TOKENS
    assert running(url) == [("tiny", "ready")]
    tiny = engine_pids()
    assert tiny
    seen |= tiny

    # A streamed one: a chunk per token, the same greedy text.
    stream = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=0.0, stream=True
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) == MAX_TOKENS
    assert "".join(pieces) == first

    # The fake model is in the engine's swapping group: loading it stops the engine.
    assert complete(client, "fake")
    wait_until(lambda: not any(alive(pid) for pid in tiny), STOP_TIMEOUT, "the engine to stop")
    assert running(url) == [("fake", "ready")]
    fake = pids_with(f"{marker}-fake")
    assert fake
    seen |= fake

    # And back: a new engine process, the same weights, the same greedy answer.
    assert complete(client, "tiny") == first
    wait_until(lambda: not any(alive(pid) for pid in fake), STOP_TIMEOUT, "the fake to stop")
    assert running(url) == [("tiny", "ready")]
    again = engine_pids()
    assert again
    assert not again & tiny
    seen |= again

    gateway.send_signal(signal.SIGTERM)
    return gateway.wait(timeout=STOP_TIMEOUT)


def complete(client: Any, model: str) -> str:
    completion = client.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=0.0
    )
    content: str = completion.choices[0].message.content or ""
    return content
