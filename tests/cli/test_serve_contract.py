"""``swapcore serve`` under faults: hung upstreams, shutdown past the grace, secrets.

Real subprocesses on 127.0.0.1 (the gateway and fake models); the helpers
come from test_serve.py. No test asserts a duration; every wait is bounded.
"""

from __future__ import annotations

import json
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from test_serve import START_TIMEOUT, Serve, marker  # noqa: F401 - marker is a fixture

from swapcore.fakemodel import HANG_MARKER
from system_helpers import pids_with, port_block

httpx = pytest.importorskip("httpx")
pytest.importorskip("aiohttp")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")

SECRET = "sk-very-secret-1234"


def config(mark: str, *, read: float = 600, extra_models: str = "") -> str:
    fake = f"{shlex.quote(sys.executable)} -m swapcore.fakemodel --tokens 40 --token-delay 0.01"
    return f"""\
healthCheckTimeout: 15
startPort: {port_block(3)}
models:
  a:
    cmd: "{fake} --port ${{PORT}} --model-name {mark}-a"
    proxy: "http://127.0.0.1:${{PORT}}"
    timeouts:
      read: {read}
  b:
    cmd: "{fake} --port ${{PORT}} --load 0.3 --model-name {mark}-b"
    proxy: "http://127.0.0.1:${{PORT}}"
{extra_models}"""


def post(url: str, model: str, content: str = "hello", stream: bool = False) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]},
        timeout=START_TIMEOUT,
    )


def last_event(text: str) -> Any:
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    return events[-1] if events[-1] == "[DONE]" else json.loads(events[-1])


def test_a_hung_stream_frees_its_group_after_timeouts_read(
    marker: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config(marker, read=1))  # a and b: one group that swaps (no groups)
    serve = Serve(tmp_path, str(path))
    try:
        serve.wait_healthy()
        hung: dict[str, httpx.Response] = {}
        thread = threading.Thread(
            target=lambda: hung.setdefault("r", post(serve.url, "a", HANG_MARKER, stream=True))
        )
        thread.start()
        # While a's stream hangs, b waits for the group; read ends a's stream, b loads.
        other = post(serve.url, "b")
        thread.join(START_TIMEOUT)
        assert other.status_code == 200
        assert other.json()["model"] == "b"
        error = last_event(hung["r"].text)["error"]
        assert (error["code"], error["status"]) == ("upstream_timeout", 504)
        assert "sent nothing for 1 s" in error["message"]
    finally:
        assert serve.stop() == 0
    assert "Traceback" not in serve.stderr


def test_requests_open_past_the_graceful_timeout_get_json_503s(
    marker: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config(marker))
    serve = Serve(tmp_path, str(path), "--graceful-timeout", "1")
    answers: dict[str, httpx.Response] = {}
    try:
        serve.wait_healthy()
        assert post(serve.url, "a").status_code == 200  # a is loaded

        def ask(name: str, model: str, stream: bool) -> None:
            try:
                answers[name] = post(serve.url, model, HANG_MARKER, stream=stream)
            except Exception as exc:
                answers[name] = exc  # type: ignore[assignment]

        threads = [
            threading.Thread(target=ask, args=("stream", "a", True)),
            threading.Thread(target=ask, args=("plain", "a", False)),
            threading.Thread(target=ask, args=("queued", "b", False)),  # behind a, in the group
        ]
        stats = f"{serve.url}/running"
        from test_serve import wait_until

        def a_busy() -> bool:
            running = httpx.get(stats, timeout=5).json()["running"]
            return any(m["model"] == "a" and m["in_flight"] == 2 for m in running)

        for thread in threads[:2]:
            thread.start()
        # b only once a holds both: otherwise b might be served first and a queue.
        wait_until(a_busy, START_TIMEOUT, "a's two requests in flight")
        threads[2].start()

        # All three are accepted (two hang upstream, one waits for the group) before the signal.
        def accepted() -> bool:
            running = httpx.get(stats, timeout=5).json()["running"]
            counts = {m["model"]: m for m in running}
            a = counts.get("a", {})
            return (
                a.get("in_flight", 0) == 2 and sum(m["queued"] + m["waiting"] for m in running) >= 1
            )

        try:
            wait_until(accepted, START_TIMEOUT, "three requests accepted")
        except AssertionError:
            raise AssertionError(
                httpx.get(stats, timeout=5).text + serve.stderr + repr(answers)
            ) from None
        status = serve.stop(signal.SIGTERM)
        for thread in threads:
            thread.join(START_TIMEOUT)
    finally:
        serve.kill()
    assert status == 0
    assert last_event(answers["stream"].text)["error"]["code"] == "shutting_down"
    for name in ("plain", "queued"):
        response = answers[name]
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]["code"] == "shutting_down"
    log = serve.stderr
    assert "Traceback" not in log
    assert "Internal Server Error" not in log
    assert not pids_with(marker)


def test_no_secret_reaches_a_client_or_the_log(
    marker: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    broken = f"""\
  c:
    cmd: "/nonexistent/llama-server --port ${{PORT}} --api-key {SECRET}"
    proxy: "http://127.0.0.1:${{PORT}}"
    env: ["HF_TOKEN={SECRET}-env"]
"""
    path = tmp_path / "config.yaml"
    path.write_text(config(marker, extra_models=broken) + f'apiKeys: ["{SECRET}-gw"]\n')
    serve = Serve(tmp_path, str(path), verbose=2)
    auth = {"authorization": f"Bearer {SECRET}-gw"}
    try:
        serve.wait_healthy()
        failed = httpx.post(
            f"{serve.url}/v1/chat/completions?token={SECRET}-query",
            json={"model": "c", "messages": [{"role": "user", "content": "hi"}]},
            headers=auth,
            timeout=START_TIMEOUT,
        )
        assert failed.status_code == 502
        message = failed.json()["error"]["message"]
        assert "llama-server" in message
        assert SECRET not in failed.text
        ok = httpx.post(
            f"{serve.url}/v1/chat/completions?token={SECRET}-query",
            json={"model": "a", "messages": [{"role": "user", "content": "hi"}]},
            headers=auth,
            timeout=START_TIMEOUT,
        )
        assert ok.status_code == 200
    finally:
        assert serve.stop() == 0
    log = serve.stderr
    assert "/v1/chat/completions?<redacted>" in log  # uvicorn's access log, redacted
    assert SECRET not in log
