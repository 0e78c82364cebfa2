"""The operator API of a real ``swapcore serve``: events of a swap, model output, shutdown.

Runs ``python -m swapcore serve`` with fake models (real subprocesses) and
follows ``/api/events`` and ``/logs/stream/upstream`` with httpx while a
request swaps a model in. Every wait is bounded.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from test_serve import START_TIMEOUT, Serve, chat, fake_config, marker  # noqa: F401

from system_helpers import pids_with, port_block

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")


def follow(url: str, path: str, lines: list[str], opened: threading.Event) -> None:
    """Read a stream's lines into ``lines`` until it ends (a thread)."""
    timeout = httpx.Timeout(START_TIMEOUT, read=None)
    with httpx.Client(timeout=timeout) as client, client.stream("GET", url + path) as response:
        assert response.status_code == 200
        opened.set()
        for line in response.iter_lines():
            lines.append(line)


def messages(lines: list[str]) -> list[tuple[str, Any]]:
    found = []
    for line in list(lines):
        if line.startswith("data: "):
            envelope = json.loads(line[len("data: ") :])
            found.append((envelope["type"], json.loads(envelope["data"])))
    return found


def test_serve_streams_events_and_model_output(marker: str, tmp_path: Path) -> None:  # noqa: F811
    config = tmp_path / "config.yaml"
    config.write_text(fake_config(marker, port_block(3)))
    serve = Serve(tmp_path, str(config))
    events: list[str] = []
    output: list[str] = []
    threads = []
    try:
        serve.wait_healthy()
        for path, lines in (("/api/events", events), ("/logs/stream/upstream", output)):
            opened = threading.Event()
            thread = threading.Thread(target=follow, args=(serve.url, path, lines, opened))
            thread.start()
            threads.append(thread)
            assert opened.wait(START_TIMEOUT)
        chat(serve.url, "a")
        chat(serve.url, "b")  # a and b swap with each other
        status = serve.stop(signal.SIGTERM)  # the open streams end; the server exits
        for thread in threads:
            thread.join(START_TIMEOUT)
            assert not thread.is_alive(), "a stream outlived the server"
    finally:
        serve.kill()
    assert status == 0, serve.stderr
    assert pids_with(marker) == set()

    got = messages(events)
    assert [kind for kind, _ in got[:2]] == ["modelStatus", "snapshot"]
    swaps = [(kind, data["model"]) for kind, data in got if kind.startswith("swap")]
    assert swaps == [
        ("swapStarted", "a"),
        ("swapFinished", "a"),
        ("swapStarted", "b"),
        ("swapFinished", "b"),
    ]
    evicting = next(data for kind, data in got if kind == "swapStarted" and data["model"] == "b")
    assert evicting["evict"] == ["a"]
    requests = [data["event"] for kind, data in got if kind == "request"]
    assert requests.count("granted") == 2 and requests.count("released") == 2
    # The fake models' own output, tagged with their model, on the upstream stream.
    assert any(line.startswith("[a] ") and "listening on" in line for line in output), output
    assert any(line.startswith("[b] ") and "listening on" in line for line in output), output
