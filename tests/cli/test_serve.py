"""``swapcore serve`` as a real subprocess: requests, streaming, swaps, clean shutdown.

Each test runs ``python -m swapcore serve`` on a free port with fake models
(``swapcore.fakemodel``, 0.2 s loads) whose command lines carry a marker
unique to the test, so the model processes can be found in ``/proc`` and
checked to be gone after the gateway exits. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from system_helpers import alive, free_port, pids_with, port_block

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

START_TIMEOUT = 30.0  # bounded waits: generous for a loaded CI machine
STOP_TIMEOUT = 30.0

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")


# ------------------------------------------------------------------ helpers


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.add(int(entry))
    return found


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def fake_config(marker: str, start_port: int, *, load: float = 0.2, extra: str = "") -> str:
    fake = f"{shlex.quote(sys.executable)} -m swapcore.fakemodel"
    models = "\n".join(
        f"""\
  {model}:
    cmd: "{fake} --port ${{PORT}} --load {load} --model-name {marker}-${{MODEL_ID}}"
    proxy: "http://127.0.0.1:${{PORT}}"
"""
        for model in ("a", "b", "c")
    )
    return f"""\
healthCheckTimeout: 15
startPort: {start_port}
models:
{models}
groups:
  chat:
    swap: true
    exclusive: false
    members: [a, b]
{extra}"""


class Serve:
    """A ``swapcore serve`` subprocess with its output in files."""

    def __init__(
        self, tmp_path: Path, *args: str, port: int | None = None, verbose: int = 0
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out_path = tmp_path / "serve.out"
        self.err_path = tmp_path / "serve.err"
        self._out = self.out_path.open("w")
        self._err = self.err_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "swapcore",
                *["-v"] * verbose,
                "serve",
                *args,
                "--port",
                str(self.port),
            ],
            stdout=self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
        )

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.stderr}")
            try:
                return httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, START_TIMEOUT, "GET /health")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        finally:
            self._out.close()
            self._err.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
        self._out.close()
        self._err.close()


@pytest.fixture
def marker() -> Iterator[str]:
    mark = f"swapcore-serve-test-{uuid.uuid4().hex[:10]}"
    yield mark
    # Whatever happened, leave nothing behind.
    for pid in pids_with(mark):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def chat(url: str, model: str, content: str = "hello") -> Any:
    response = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}]},
        timeout=START_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()


def model_pids(marker: str) -> dict[str, set[int]]:
    """Live fake-model PIDs by model id (from the marker in their command line)."""
    result: dict[str, set[int]] = {}
    for pid in pids_with(marker):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names = [a.decode() for a in argv if a.startswith(marker.encode())]
        if names:
            result.setdefault(names[0].removeprefix(f"{marker}-"), set()).add(pid)
    return result


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_requests_swap_and_shut_down(sig: int, marker: str, tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    config = tmp_path / "config.yaml"
    config.write_text(fake_config(marker, port_block(3)))
    serve = Serve(tmp_path, str(config))
    seen: set[int] = set()
    try:
        serve.wait_healthy()
        wait_until(lambda: serve.stdout.endswith("\n"), 10, "the banner")
        banner = serve.stdout.strip().splitlines()
        assert len(banner) == 1
        assert banner[0].startswith(f"swapcore serving {serve.url} ")
        assert banner[0].endswith(f": a, b, c - try {serve.url}/v1/models")

        listed = httpx.get(f"{serve.url}/v1/models", timeout=10).json()
        assert [m["id"] for m in listed["data"]] == ["a", "b", "c"]

        # httpx, not streaming: loads a.
        reply = chat(serve.url, "a", "one two three")
        assert reply["choices"][0]["message"]["content"]
        seen |= set().union(*model_pids(marker).values())
        assert set(model_pids(marker)) == {"a"}

        # The openai package: non-streaming and streaming, on the loaded model.
        client = openai.OpenAI(
            base_url=f"{serve.url}/v1", api_key="unused", max_retries=0, timeout=START_TIMEOUT
        )
        completion = client.chat.completions.create(
            model="a", messages=[{"role": "user", "content": "via openai"}]
        )
        assert completion.choices[0].message.content
        stream = client.chat.completions.create(
            model="a", messages=[{"role": "user", "content": "via openai"}], stream=True
        )
        streamed = "".join(
            chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
        )
        assert streamed == completion.choices[0].message.content

        # A swap: b is in a's swapping group, so loading b stops a.
        a_pids = model_pids(marker)["a"]
        chat(serve.url, "b")
        wait_until(lambda: not any(alive(p) for p in a_pids), 10, "a to stop after the swap")
        running = model_pids(marker)
        assert set(running) == {"b"}
        seen |= set().union(*running.values())

        # c is in no group: the (default) group is exclusive, so it stops b.
        chat(serve.url, "c")
        seen |= set().union(*model_pids(marker).values())
        wait_until(lambda: set(model_pids(marker)) == {"c"}, 10, "only c running")
    finally:
        status = serve.stop(sig)
    assert status == 0, serve.stderr
    assert pids_with(marker) == set()
    assert not any(alive(pid) for pid in seen), "a model process outlived the gateway"
    log = serve.stderr
    assert "Traceback" not in log
    swaps = [line for line in log.splitlines() if "swapcore.groups: swap to" in line]
    assert len(swaps) == 3, log  # one INFO line per swap: a, then b, then c


def test_serve_preloads_and_stops_models_with_requests_in_flight(
    marker: str, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    extra = "hooks:\n  on_startup:\n    preload: [c]\n"
    config.write_text(fake_config(marker, port_block(3), extra=extra))
    serve = Serve(tmp_path, str(config))
    try:
        serve.wait_healthy()
        wait_until(lambda: set(model_pids(marker)) == {"c"}, START_TIMEOUT, "preloaded c")
        pids = set().union(*model_pids(marker).values())
        # A long stream still open when the signal comes: the shutdown waits for
        # it up to --graceful-timeout, then stops the model anyway.
        with httpx.stream(
            "POST",
            f"{serve.url}/v1/chat/completions",
            json={"model": "c", "messages": [{"role": "user", "content": "x"}], "stream": True},
            timeout=STOP_TIMEOUT,
        ) as response:
            assert response.status_code == 200
            serve.process.send_signal(signal.SIGTERM)
            body = b"".join(response.iter_raw())
        assert b"data: [DONE]" in body
    finally:
        status = serve.stop()
    assert status == 0, serve.stderr
    assert not any(alive(pid) for pid in pids)
    assert pids_with(marker) == set()


@pytest.mark.parametrize("variant", ["groups", "matrix"])
def test_serve_demo_without_config(variant: str, tmp_path: Path) -> None:
    serve = Serve(tmp_path, *([] if variant == "groups" else ["--demo", variant]))
    children: set[int] = set()
    try:
        serve.wait_healthy()
        listed = httpx.get(f"{serve.url}/v1/models", timeout=10).json()
        ids = [m["id"] for m in listed["data"]]
        assert {"qwen-7b", "llama-8b", "mistral-24b", "embed-small"} <= set(ids)
        wait_until(lambda: f"<demo:{variant}>" in serve.stdout, 10, "the banner")
        # The demo preloads its embedding model: a child process appears.
        wait_until(lambda: bool(children_of(serve.process.pid)), START_TIMEOUT, "the preload")
        children = children_of(serve.process.pid)
        reply = httpx.post(
            f"{serve.url}/v1/embeddings",
            json={"model": "text-embedding-3-small", "input": "hi"},
            timeout=START_TIMEOUT,
        )
        assert reply.status_code == 200, reply.text
        children |= children_of(serve.process.pid)
    finally:
        status = serve.stop()
    assert status == 0, serve.stderr
    assert children
    assert not any(alive(pid) for pid in children)


def test_serve_invalid_config_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("models:\n  a: {cmd: 'srv --port ${PORT}', ttl: -1.5}\n")
    result = subprocess.run(
        [sys.executable, "-m", "swapcore", "serve", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "swapcore serve: error: models.a.ttl: must be >= 0 (or -1 to use globalTTL)\n"
    )


def test_serve_prints_warnings(marker: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(fake_config(marker, port_block(3), extra="logLevel: debug\n"))
    serve = Serve(tmp_path, str(config))
    try:
        serve.wait_healthy()
    finally:
        status = serve.stop()
    assert status == 0
    assert "swapcore serve: warning: logLevel: not supported by swapcore, ignored" in (
        serve.stderr.splitlines()
    )


def test_serve_refuses_policy_keys_unless_allowed(marker: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(fake_config(marker, port_block(3), extra="selectors: {}\n"))
    result = subprocess.run(
        [sys.executable, "-m", "swapcore", "serve", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("swapcore serve: error: selectors: not supported by swapcore")
    assert result.stderr.count("\n") == 1
    serve = Serve(tmp_path, str(config), "--allow-unsupported")
    try:
        serve.wait_healthy()
    finally:
        status = serve.stop()
    assert status == 0
    assert (
        "swapcore serve: warning: selectors: not supported by swapcore (selectors send requests"
        " for virtual model names to other models); ignored (allow_unsupported)"
    ) in serve.stderr.splitlines()


def test_serve_busy_port_fails(marker: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(fake_config(marker, port_block(3)))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        serve = Serve(tmp_path, str(config), port=port)
        try:
            status = serve.process.wait(timeout=STOP_TIMEOUT)
        finally:
            serve.kill()
    assert status == 1
    assert "could not start" in serve.stderr
    assert pids_with(marker) == set()


@pytest.mark.parametrize(
    "form",
    [
        ["-v", "serve", "{config}", "--port", "{port}"],
        # llama-swap's flags, and the global flag after the subcommand
        ["serve", "--config", "{config}", "--listen", "127.0.0.1:{port}", "-v"],
    ],
)
def test_verbose_turns_on_the_access_log(marker: str, tmp_path: Path, form: list[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(fake_config(marker, port_block(3)))
    port = free_port()
    out, err = (tmp_path / "v.out").open("w"), (tmp_path / "v.err").open("w")
    argv = [arg.format(config=config, port=port) for arg in form]
    process = subprocess.Popen(
        [sys.executable, "-m", "swapcore", *argv],
        stdout=out,
        stderr=err,
    )
    try:
        wait_until(lambda: _get_ok(f"http://127.0.0.1:{port}/health"), START_TIMEOUT, "GET /health")
        _get_ok(f"http://127.0.0.1:{port}/v1/models")
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=STOP_TIMEOUT)
        out.close()
        err.close()
    assert status == 0
    log = (tmp_path / "v.err").read_text()
    assert '"GET /v1/models HTTP/1.1" 200' in log


def _get_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def test_default_run_has_no_access_log(marker: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(fake_config(marker, port_block(3)))
    serve = Serve(tmp_path, str(config))
    try:
        serve.wait_healthy()
        assert _get_ok(f"{serve.url}/v1/models")
    finally:
        status = serve.stop()
    assert status == 0
    assert "GET /v1/models" not in serve.stderr


# ------------------------------------------------------------------ fake-model


def test_fake_model_command_passes_its_arguments_through(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from swapcore.cli import main

    assert main(["fake-model", "--help"]) == 0
    assert "usage: swapcore fake-model" in capsys.readouterr().out
    assert main(["fake-model"]) == 2  # --port is required
    assert "--port" in capsys.readouterr().err


def test_fake_model_command_serves_and_stops(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "swapcore", "fake-model", "--port", str(port), "--load", "0.2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _get_ok(f"http://127.0.0.1:{port}/health"), START_TIMEOUT, "health")
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert reply.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=STOP_TIMEOUT)
    assert status == 0


def test_missing_gateway_extra_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from swapcore.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the extra were missing
    assert main(["serve", "--port", str(free_port())]) == 2
    assert capsys.readouterr().err == (
        "swapcore serve: error: needs uvicorn: install the gateway extra, "
        "pip install 'swapcore[gateway]'\n"
    )


def test_demo_option_needs_no_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from swapcore.cli import main

    config = tmp_path / "c.yaml"
    config.write_text("models:\n  a: {cmd: 'srv --port ${PORT}'}\n")
    assert main(["serve", str(config), "--demo", "matrix", "--port", str(free_port())]) == 2
    assert capsys.readouterr().err == (
        "swapcore serve: error: --demo: only without CONFIG (it selects the built-in demo)\n"
    )


def test_serve_records_a_trace_that_simulate_replays(
    marker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from swapcore.cli import main
    from swapcore.sim import read_trace

    config = tmp_path / "config.yaml"
    config.write_text(fake_config(marker, port_block(3)))
    trace = tmp_path / "trace.jsonl"
    serve = Serve(tmp_path, str(config), "--record-trace", str(trace))
    try:
        serve.wait_healthy()
        for model in ("a", "b", "a"):
            chat(serve.url, model)
        # Each record is flushed at its release: all three are there before the stop.
        wait_until(lambda: len(read_trace(trace)) == 3, 10, "three records")
    finally:
        status = serve.stop()
    assert status == 0, serve.stderr
    assert "recorded 3 served requests to" in serve.stderr
    arrivals = read_trace(trace)
    assert [arrival.model for arrival in arrivals] == ["a", "b", "a"]
    assert all(arrival.service >= 0 for arrival in arrivals)
    # The recorded demand replays against the same config.
    capsys.readouterr()
    assert main(["simulate", str(config), str(trace), "--load", "a=1,b=1,c=1"]) == 0
    assert "3 requests" in capsys.readouterr().out


def test_record_trace_to_an_unwritable_path_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from swapcore.cli import main

    config = tmp_path / "c.yaml"
    config.write_text("models:\n  a: {cmd: 'true --port ${PORT}'}\n")
    target = tmp_path / "missing" / "trace.jsonl"
    argv = ["serve", str(config), "--port", str(free_port()), "--record-trace", str(target)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("swapcore serve: error: cannot write the trace to ")
    assert str(target) in err and "Traceback" not in err
