"""RouterMetrics: synthetic events counted exactly, gauges read at scrape time, GET /metrics.

Every scrape is parsed with prometheus_client's own text parser, so the
tests also check that the exposition is valid Prometheus text.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="needs the metrics extra (prometheus-client)")

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from swapcore import BaseRouter, ConcurrencyLimitExceeded, GroupPlanner, ModelNotFound
from swapcore.adapters.metrics import CONTENT_TYPE, SWAP_BUCKETS, WAIT_BUCKETS, RouterMetrics
from swapcore.events import (
    CostMeasured,
    ModelsUnloaded,
    ProcessStateChanged,
    RequestCancelled,
    RequestExpired,
    RequestGranted,
    RequestQueued,
    RequestRejected,
    SwapFinished,
    SwapRetried,
    SwapStarted,
)
from swapcore.planners import Group
from swapcore.process import ProcessState
from swapcore.testing.fakes import FakeProcess

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def router(models: str = "ab", **options: Any) -> BaseRouter:
    processes = {m: FakeProcess(m, start_delay=0.001) for m in models}
    group = Group(tuple(processes), swap=True)
    return BaseRouter(processes, GroupPlanner({"chat": group}), **options)


def test_events_are_counted_exactly() -> None:
    metrics = RouterMetrics(router("abc"))
    events = [
        RequestQueued(1.0, "a", 1, 1),  # not a metric of its own: the queue is a gauge
        RequestGranted(1.0, "a", 1, 0.002),
        RequestGranted(1.0, "a", 2, 7.0),
        RequestGranted(1.0, "b", 3, 0.0),
        RequestRejected(1.0, "a", 4, ConcurrencyLimitExceeded("full")),
        RequestRejected(1.0, "no-such-model", 5, ModelNotFound("unknown")),
        RequestCancelled(1.0, "b", 6),
        RequestExpired(1.0, "a", 2, 30.0),
        SwapStarted(1.0, "b", ("a", "c"), asleep=("a",)),
        SwapRetried(1.0, "b", 2, "crashed"),
        SwapFinished(1.0, "b", ("a", "c"), 3.0, None),
        SwapStarted(1.0, "a", ("b",), wake=True),
        SwapFinished(1.0, "a", ("b",), 0.2, "the start failed"),
        ModelsUnloaded(1.0, ("a", "b", "c"), "ttl"),
        ProcessStateChanged(1.0, "c", ProcessState.READY, ProcessState.STOPPED),
        CostMeasured(1.0, "a", "load", 3.0),  # read from router.costs at scrape time instead
    ]
    with metrics.preloading("c"):
        for event in events:
            metrics(event)
        metrics(SwapStarted(1.0, "c", ()))
    metrics(SwapFinished(1.0, "c", (), 60.0, None))
    metrics.count_rejected("also-unknown", "model_not_found")
    s = parse(metrics.exposition().decode())
    requests = "swapcore_requests_total"
    assert value(s, requests, model="a", outcome="served", reason="") == 2
    assert value(s, requests, model="b", outcome="served", reason="") == 1
    assert value(s, requests, model="c", outcome="served", reason="") == 0
    assert value(s, requests, model="b", outcome="cancelled", reason="") == 1
    assert value(s, requests, model="a", outcome="rejected", reason="concurrency_limit_exceeded")
    # Unknown models share one label value: a client cannot grow the series.
    assert value(s, requests, model="", outcome="rejected", reason="model_not_found") == 2
    assert not any(dict(labels).get("model") == "no-such-model" for _, labels in s)
    assert value(s, "swapcore_leases_expired_total", model="a") == 1
    assert value(s, "swapcore_request_wait_seconds_count", model="a") == 2
    assert value(s, "swapcore_request_wait_seconds_sum", model="a") == pytest.approx(7.002)
    assert value(s, "swapcore_request_wait_seconds_bucket", model="a", le="0.005") == 1
    assert value(s, "swapcore_request_wait_seconds_bucket", model="a", le="10.0") == 2
    swaps = "swapcore_swaps_total"
    assert value(s, swaps, model="b", cause="request", tier="cold") == 1
    assert value(s, swaps, model="a", cause="request", tier="wake") == 1
    assert value(s, swaps, model="c", cause="preload", tier="cold") == 1
    assert value(s, "swapcore_evictions_total", model="a", action="sleep") == 1
    assert value(s, "swapcore_evictions_total", model="c", action="stop") == 1
    assert value(s, "swapcore_evictions_total", model="b", action="stop") == 1
    assert value(s, "swapcore_swap_retries_total", model="b") == 1
    duration = "swapcore_swap_duration_seconds"
    assert value(s, duration + "_count", tier="cold", outcome="ok") == 2
    assert value(s, duration + "_sum", tier="cold", outcome="ok") == 63.0
    assert value(s, duration + "_count", tier="wake", outcome="error") == 1
    assert value(s, duration + "_bucket", tier="cold", outcome="ok", le="5.0") == 1
    assert value(s, duration + "_bucket", tier="cold", outcome="ok", le="100.0") == 2
    assert value(s, "swapcore_unloads_total", reason="ttl") == 1
    assert value(s, "swapcore_process_state_changes_total", model="c", state="stopped") == 1


def test_gauges_describe_every_model_and_state_before_anything_runs() -> None:
    routed = router("ab")
    routed.costs.set_prior("a", "load", 12.5)
    routed.costs.record("b", "memory", 2e9)
    s = parse(RouterMetrics(routed).exposition().decode())
    for m in "ab":
        assert value(s, "swapcore_queue_depth", model=m) == 0
        assert value(s, "swapcore_in_flight_requests", model=m) == 0
        assert value(s, "swapcore_model_state", model=m, state="stopped") == 1
        assert value(s, "swapcore_model_state", model=m, state="ready") == 0
    assert value(s, "swapcore_queue_depth_overall") == 0
    assert value(s, "swapcore_models", state="stopped") == 2
    assert value(s, "swapcore_models", state="sleeping") == 0
    assert value(s, "swapcore_model_cost_seconds", model="a", kind="load") == 12.5
    assert value(s, "swapcore_model_cost_seconds", model="b", kind="load") is None
    assert value(s, "swapcore_model_memory_bytes", model="b") == 2e9


async def test_gauges_follow_the_router_at_scrape_time() -> None:
    routed = router("ab")
    metrics = RouterMetrics(routed)
    metrics.attach()
    async with routed:
        async with routed.acquire("a"):
            waiter = _start(routed, "b")  # a is busy: b waits for it
            await _until(lambda: routed.snapshot().models["b"].queued == 1)
            s = parse(metrics.exposition().decode())
            assert value(s, "swapcore_in_flight_requests", model="a") == 1
            assert value(s, "swapcore_queue_depth", model="b") == 1
            assert value(s, "swapcore_queue_depth_overall") == 1
            assert value(s, "swapcore_models", state="ready") == 1
            assert value(s, "swapcore_model_state", model="a", state="ready") == 1
            assert value(s, "swapcore_model_cost_seconds", model="a", kind="load") is not None
        await waiter
        s = parse(metrics.exposition().decode())
    assert value(s, "swapcore_in_flight_requests", model="a") == 0
    assert value(s, "swapcore_queue_depth_overall") == 0
    assert value(s, "swapcore_requests_total", model="a", outcome="served", reason="") == 1
    assert value(s, "swapcore_requests_total", model="b", outcome="served", reason="") == 1
    assert value(s, "swapcore_swaps_total", model="b", cause="request", tier="cold") == 1
    assert value(s, "swapcore_evictions_total", model="a", action="stop") == 1
    assert value(s, "swapcore_swap_duration_seconds_count", tier="cold", outcome="ok") == 2


def _start(routed: BaseRouter, model: str) -> asyncio.Future[None]:
    async def use() -> None:
        async with routed.acquire(model):
            pass

    return asyncio.ensure_future(asyncio.wait_for(use(), 10))


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out")


def test_each_metrics_object_has_its_own_registry() -> None:
    before = set(REGISTRY._names_to_collectors)
    one, two = RouterMetrics(router()), RouterMetrics(router())
    one(RequestGranted(1.0, "a", 1, 0.0))
    assert one.registry is not two.registry
    assert (
        value(
            parse(two.exposition().decode()),
            "swapcore_requests_total",
            model="a",
            outcome="served",
            reason="",
        )
        == 0
    )
    assert set(REGISTRY._names_to_collectors) == before  # the global registry is untouched


def test_buckets_span_the_documented_ranges() -> None:
    assert SWAP_BUCKETS[0] == 0.1 and SWAP_BUCKETS[-1] == 100.0
    assert WAIT_BUCKETS[0] == 0.001 and WAIT_BUCKETS[-1] == 300.0
    assert list(SWAP_BUCKETS) == sorted(SWAP_BUCKETS)
    assert list(WAIT_BUCKETS) == sorted(WAIT_BUCKETS)
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


# ------------------------------------------------------------ GET /metrics


async def test_get_metrics_on_the_gateway(bench: Any) -> None:
    made = await bench()
    reply = await made.client.post(
        "/v1/chat/completions", json={"model": "a", "messages": [{"role": "user", "content": "x"}]}
    )
    assert reply.status_code == 200
    unknown = await made.client.post("/v1/chat/completions", json={"model": "zz"})
    assert unknown.status_code == 404
    scrape = await made.client.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"] == CONTENT_TYPE
    s = parse(scrape.text)
    assert value(s, "swapcore_requests_total", model="a", outcome="served", reason="") == 1
    assert (
        value(s, "swapcore_requests_total", model="", outcome="rejected", reason="model_not_found")
        == 1
    )
    assert made.app.metrics is not None
    assert (await made.client.post("/metrics")).status_code == 405


async def test_metrics_need_the_api_key(bench: Any) -> None:
    made = await bench(api_keys=["sk-1"])
    assert (await made.client.get("/metrics")).status_code == 401
    reply = await made.client.get("/metrics", headers={"authorization": "Bearer sk-1"})
    assert reply.status_code == 200
    assert "swapcore_requests_total" in reply.text


async def test_metrics_turned_off_are_404_and_listen_to_nothing(bench: Any) -> None:
    made = await bench(metrics=False)
    reply = await made.client.get("/metrics")
    assert reply.status_code == 404
    assert "turned off" in reply.json()["error"]["message"]
    assert made.app.metrics is None
    assert made.router._on_event is None


async def test_without_prometheus_client_metrics_are_501(
    bench: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    monkeypatch.delitem(sys.modules, "swapcore.adapters.metrics")
    made = await bench()
    reply = await made.client.get("/metrics")
    assert reply.status_code == 501
    assert "pip install 'swapcore[metrics]'" in reply.json()["error"]["message"]
    models = await made.client.get("/v1/models")
    assert models.status_code == 200  # everything else still works


async def test_shutdown_stops_listening(bench: Any) -> None:
    made = await bench(start=False, manage_router=False)
    assert made.router._on_event is not None
    await made.app.shutdown()
    assert made.router._on_event is None


async def test_a_preload_swap_has_cause_preload(bench: Any) -> None:
    made = await bench(preload=["a"])
    assert made.app.preload_task is not None
    await asyncio.wait_for(made.app.preload_task, 10)
    s = parse((await made.client.get("/metrics")).text)
    assert value(s, "swapcore_swaps_total", model="a", cause="preload", tier="cold") == 1
    # A preload is a request of its own: it counts as served.
    assert value(s, "swapcore_requests_total", model="a", outcome="served", reason="") == 1
