"""``swapcore serve``'s ``GET /metrics`` against what was really sent: counters agree exactly.

A real gateway subprocess over fake models that sleep when evicted (the
helpers come from test_serve.py and test_serve_sleep.py): cold swaps, an
eviction to sleep, a wake, requests for unknown models; the scrape is parsed
with prometheus_client's own parser. No test asserts a duration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_serve import START_TIMEOUT, Serve, marker, model_pids  # noqa: F401
from test_serve_sleep import sleepy_config

from system_helpers import port_block

httpx = pytest.importorskip("httpx")
pytest.importorskip("aiohttp")
pytest.importorskip("uvicorn")
parser = pytest.importorskip(
    "prometheus_client.parser", reason="needs the metrics extra (prometheus-client)"
)

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")

KEY = "sk-metrics-test"
AUTH = {"authorization": f"Bearer {KEY}"}


def chat(url: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hello"}]},
        headers=AUTH,
        timeout=START_TIMEOUT,
    )


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = httpx.get(f"{url}/metrics", headers=AUTH, timeout=5)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parser.text_string_to_metric_families(reply.text)
        for s in family.samples
    }


def test_metrics_count_what_was_sent(marker: str, tmp_path: Path) -> None:  # noqa: F811
    start = port_block(2)
    path = tmp_path / "config.yaml"
    path.write_text(sleepy_config(marker, start, extra=f'apiKeys: ["{KEY}"]\n'))
    serve = Serve(tmp_path, str(path))
    try:
        serve.wait_healthy()
        assert httpx.get(f"{serve.url}/metrics", timeout=5).status_code == 401
        for model in ("a", "b", "a"):  # a cold, b cold (a sleeps), a wakes (b sleeps)
            reply = chat(serve.url, model)
            assert reply.status_code == 200, reply.text
        for model in ("nope", "also-nope", "nope"):
            assert chat(serve.url, model).status_code == 404
        s = scrape(serve.url)
    finally:
        assert serve.stop() == 0

    def value(name: str, **labels: str) -> Any:
        return s.get((name, tuple(sorted(labels.items()))))

    served = "swapcore_requests_total"
    assert value(served, model="a", outcome="served", reason="") == 2
    assert value(served, model="b", outcome="served", reason="") == 1
    assert value(served, model="", outcome="rejected", reason="model_not_found") == 3
    outcomes = {labels: v for (name, labels), v in s.items() if name == served and v}
    assert sum(outcomes.values()) == 6  # every request sent, and nothing else
    assert value("swapcore_swaps_total", model="a", cause="request", tier="cold") == 1
    assert value("swapcore_swaps_total", model="b", cause="request", tier="cold") == 1
    assert value("swapcore_swaps_total", model="a", cause="request", tier="wake") == 1
    swaps = {labels: v for (name, labels), v in s.items() if name == "swapcore_swaps_total"}
    assert sum(swaps.values()) == 3
    assert value("swapcore_evictions_total", model="a", action="sleep") == 1
    assert value("swapcore_evictions_total", model="b", action="sleep") == 1
    assert value("swapcore_swap_duration_seconds_count", tier="cold", outcome="ok") == 2
    assert value("swapcore_swap_duration_seconds_count", tier="wake", outcome="ok") == 1
    assert value("swapcore_request_wait_seconds_count", model="a") == 2
    assert value("swapcore_request_wait_seconds_count", model="b") == 1
    assert value("swapcore_models", state="ready") == 1
    assert value("swapcore_models", state="sleeping") == 1
    assert value("swapcore_model_state", model="a", state="ready") == 1
    assert value("swapcore_model_state", model="b", state="sleeping") == 1
    assert value("swapcore_queue_depth_overall") == 0
    assert value("swapcore_in_flight_requests", model="a") == 0
    for kind in ("load", "wake", "sleep"):
        assert value("swapcore_model_cost_seconds", model="a", kind=kind) is not None
    assert not model_pids(marker)  # the gateway stopped its models


def test_no_metrics_turns_them_off(marker: str, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "config.yaml"
    path.write_text(sleepy_config(marker, port_block(2)))
    serve = Serve(tmp_path, str(path), "--no-metrics")
    try:
        serve.wait_healthy()
        reply = httpx.get(f"{serve.url}/metrics", timeout=5)
        assert reply.status_code == 404
        assert "turned off" in reply.json()["error"]["message"]
    finally:
        assert serve.stop() == 0
