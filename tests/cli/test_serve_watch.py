"""``swapcore serve --watch-config``: the file is reloaded without dropping a request.

A real ``swapcore serve`` subprocess with fake models; the config file is
edited while a stream is in flight. Every wait is bounded.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from test_serve import START_TIMEOUT, Serve, chat, marker, model_pids, wait_until

from system_helpers import alive, free_port, pids_with, port_block

httpx = pytest.importorskip("httpx")

__all__ = ["marker"]  # the fixture, used by name

RELOAD_TIMEOUT = 15.0


def _config(marker: str, start_port: int, *, a_tokens: int, with_c: bool) -> str:
    fake = f"{shlex.quote(sys.executable)} -m swapcore.fakemodel"

    def model(name: str, options: str = "") -> str:
        return f"""\
  {name}:
    cmd: "{fake} --port ${{PORT}} --load 0.2 --model-name {marker}-${{MODEL_ID}} {options}"
    proxy: "http://127.0.0.1:${{PORT}}"
"""

    models = model("a", f"--tokens {a_tokens} --token-delay 0.1") + model("b")
    members = "[a, b, c]" if with_c else "[a, b]"
    if with_c:
        models += model("c")
    return f"""\
healthCheckTimeout: 15
startPort: {start_port}
models:
{models}
groups:
  all:
    swap: false
    exclusive: false
    members: {members}
"""


def _reloads(serve: Serve) -> int:
    return serve.stderr.count("configuration reloaded from")


def test_watch_config_reloads_without_dropping_the_stream(marker: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    ports = port_block(3)
    config.write_text(_config(marker, ports, a_tokens=80, with_c=False))
    serve = Serve(tmp_path, "-config", str(config), "-watch-config")
    try:
        serve.wait_healthy()
        chat(serve.url, "b")
        b_pids = model_pids(marker)["b"]
        with httpx.stream(
            "POST",
            f"{serve.url}/v1/chat/completions",
            json={"model": "a", "messages": [{"role": "user", "content": "x"}], "stream": True},
            timeout=START_TIMEOUT,
        ) as response:
            assert response.status_code == 200
            chunks = response.iter_raw()
            body = next(chunks)  # the stream has begun: a's lease is held
            a_pids = model_pids(marker)["a"]
            # a's command changes, c is added, b is as it was.
            config.write_text(_config(marker, ports, a_tokens=81, with_c=True))
            wait_until(lambda: _reloads(serve) == 1, RELOAD_TIMEOUT, "the reload")
            # The new model answers while a's stream goes on with a's old process.
            assert chat(serve.url, "c")["choices"][0]["message"]["content"]
            assert all(alive(pid) for pid in a_pids)
            assert model_pids(marker)["a"] == a_pids
            body += b"".join(chunks)
        assert body.rstrip().endswith(b"data: [DONE]")
        assert b'"error"' not in body
        # Once idle, a restarts with its new command; b kept its process.
        wait_until(lambda: not any(alive(p) for p in a_pids), RELOAD_TIMEOUT, "old a to stop")
        chat(serve.url, "a")
        assert model_pids(marker)["a"].isdisjoint(a_pids)
        assert model_pids(marker)["b"] == b_pids
        listed = httpx.get(f"{serve.url}/v1/models", timeout=10).json()
        assert [m["id"] for m in listed["data"]] == ["a", "b", "c"]

        # An invalid file is reported and changes nothing.
        config.write_text(config.read_text() + "  broken: [\n")
        wait_until(lambda: "was not applied" in serve.stderr, RELOAD_TIMEOUT, "the error")
        assert chat(serve.url, "c")["choices"][0]["message"]["content"]
        assert model_pids(marker)["b"] == b_pids

        # Removing c: it stops and is no longer served.
        c_pids = model_pids(marker)["c"]
        config.write_text(_config(marker, ports, a_tokens=81, with_c=False))
        wait_until(lambda: _reloads(serve) == 2, RELOAD_TIMEOUT, "the second reload")
        wait_until(lambda: not any(alive(p) for p in c_pids), RELOAD_TIMEOUT, "c to stop")
        response = httpx.post(
            f"{serve.url}/v1/chat/completions",
            json={"model": "c", "messages": [{"role": "user", "content": "x"}]},
            timeout=START_TIMEOUT,
        )
        assert response.status_code == 404
        assert model_pids(marker)["b"] == b_pids
    finally:
        status = serve.stop()
    assert status == 0, serve.stderr
    assert pids_with(marker) == set()
    log = serve.stderr
    assert "Traceback" not in log
    invalid = [line for line in log.splitlines() if "ERROR swapcore.serve:   " in line]
    assert len(invalid) == 1 and "line 20" in invalid[0], log


def test_watch_config_needs_a_config_file() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "swapcore", "serve", "--watch-config", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "swapcore serve: error: --watch-config: needs a CONFIG file to watch (the demo has none)\n"
    )
