"""The fake model's vLLM sleep mode: in-process over ASGI, and as a real subprocess."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

import httpx

from swapcore import ConfigError
from swapcore.fakemodel import FakeModel
from system_helpers import free_port

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def client_for(app: FakeModel) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake")


async def test_sleep_refuses_generation_then_wake_serves_again() -> None:
    app = FakeModel(model_name="m", sleep_mode=True, sleep_time=0, wake_time=0)
    async with client_for(app) as client:
        assert (await client.get("/is_sleeping")).json() == {"is_sleeping": False}
        assert (await client.post("/sleep?level=1")).status_code == 200
        assert (await client.post("/sleep?level=1")).status_code == 200  # a no-op
        assert (await client.get("/is_sleeping")).json() == {"is_sleeping": True}
        refused = await client.post("/v1/chat/completions", json=CHAT)
        assert refused.status_code == 503
        error = refused.json()["error"]
        assert error["type"] == "unavailable_error"
        assert error["message"] == "model m is asleep; POST /wake_up to serve requests"
        assert (await client.post("/v1/embeddings", json={"input": "x"})).status_code == 503
        assert (await client.get("/health")).status_code == 200  # the process is up
        assert (await client.get("/v1/models")).status_code == 200
        stats = (await client.get("/fake/stats")).json()
        assert (stats["sleep_state"], stats["level"], stats["sleeps"]) == ("asleep", 1, 1)
        assert (await client.post("/wake_up?tags=weights")).status_code == 200
        assert (await client.post("/wake_up")).status_code == 200  # awake already
        assert (await client.get("/is_sleeping")).json() == {"is_sleeping": False}
        served = await client.post("/v1/chat/completions", json=CHAT)
        assert served.status_code == 200
        assert (await client.get("/fake/stats")).json()["wakes"] == 1


async def test_a_request_during_a_wake_is_refused_until_it_ends() -> None:
    app = FakeModel(model_name="m", sleep_mode=True, sleep_time=0, wake_time=0.05)
    async with client_for(app) as client:
        await client.post("/sleep?level=2")
        waking = asyncio.ensure_future(client.post("/wake_up"))
        for _ in range(100):
            if app.sleep is not None and app.sleep.state == "waking":
                break
            await asyncio.sleep(0)
        refused = await client.post("/v1/chat/completions", json=CHAT)
        assert refused.status_code == 503
        assert "is waking" in refused.json()["error"]["message"]
        assert (await asyncio.wait_for(waking, 5)).status_code == 200
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


@pytest.mark.parametrize("query", ["level=3", "level=x", "level=1&level=2"])
async def test_a_bad_level_is_a_400_naming_it(query: str) -> None:
    app = FakeModel(sleep_mode=True, sleep_time=0, wake_time=0)
    async with client_for(app) as client:
        reply = await client.post(f"/sleep?{query}")
        assert reply.status_code == 400
        assert reply.json()["error"]["param"] == "level"
        assert (await client.get("/is_sleeping")).json() == {"is_sleeping": False}


async def test_without_sleep_mode_the_paths_do_not_exist() -> None:
    async with client_for(FakeModel()) as client:
        for method, path in (("POST", "/sleep"), ("POST", "/wake_up"), ("GET", "/is_sleeping")):
            assert (await client.request(method, path)).status_code == 404
        assert "sleeps" not in (await client.get("/fake/stats")).json()


def test_bad_sleep_options_name_the_field() -> None:
    with pytest.raises(ConfigError, match="wake_time: must be a finite number >= 0"):
        FakeModel(sleep_mode=True, wake_time=-1)
    with pytest.raises(ConfigError, match="sleep_mode: must be a bool"):
        FakeModel(sleep_mode="yes")  # type: ignore[arg-type]


@pytest.fixture
def sleepy_server() -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "swapcore.fakemodel", "--port", str(port), "--sleep-mode"]
    argv += ["--model-name", "m", "--sleep-time", "0.01", "--wake-time", "0.02"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError("the fake model did not come up")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert b"fake-model m: asleep at level 1" in err
    assert b"fake-model m: awake" in err


def test_a_real_server_sleeps_and_wakes_in_the_same_process(sleepy_server: str) -> None:
    url = sleepy_server
    pid = httpx.get(f"{url}/fake/stats").json()["pid"]
    assert httpx.post(f"{url}/sleep?level=1").status_code == 200
    assert httpx.get(f"{url}/is_sleeping").json() == {"is_sleeping": True}
    assert httpx.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 503
    assert httpx.post(f"{url}/wake_up").status_code == 200
    assert httpx.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 200
    stats = httpx.get(f"{url}/fake/stats").json()
    assert (stats["pid"], stats["sleeps"], stats["wakes"]) == (pid, 1, 1)
