"""Prometheus metrics of a router: requests, queues, swaps, model states, learned costs.

:class:`RouterMetrics` listens to a :class:`~swapcore.router.BaseRouter`'s
events (:mod:`swapcore.events`) and keeps Prometheus collectors in its own
``CollectorRegistry``, never the process-wide default one, so several
routers or gateways in one process do not clash. Counters and histograms
follow the events; gauges (queue depth, requests in flight, models by
state, learned costs) are read from the router when the registry is
scraped. The gateway serves them at ``GET /metrics``; ``docs/gateway.md``
lists every metric.

Needs the ``metrics`` extra (``pip install 'swapcore[metrics]'``, the
``prometheus-client`` package); nothing else in swapcore imports this
module unless it is installed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from swapcore.adapters._errors import routing_error
from swapcore.costs import COST_KINDS
from swapcore.events import (
    ModelsUnloaded,
    ProcessStateChanged,
    RequestCancelled,
    RequestExpired,
    RequestGranted,
    RequestRejected,
    RouterEvent,
    SwapFinished,
    SwapRetried,
    SwapStarted,
)
from swapcore.process import ProcessState

if TYPE_CHECKING:
    from swapcore.router import BaseRouter

__all__ = ["CONTENT_TYPE", "SWAP_BUCKETS", "WAIT_BUCKETS", "RouterMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The ``content-type`` of :meth:`RouterMetrics.exposition`: Prometheus' text format 0.0.4.

Every name is a classic one (no UTF-8), so the text is valid in that
format, which every Prometheus version reads."""

SWAP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0)
"""Upper bounds (seconds) of the swap histogram: a wake from sleep (0.1 s) to a cold 100 s load."""

WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Upper bounds (seconds) of the queue-wait histogram: a ready model (1 ms) to minutes of queue."""

UNKNOWN_MODEL = ""
"""The ``model`` label of requests naming no model the router handles (bounded cardinality)."""


class RouterMetrics:
    """Prometheus collectors fed by one router's events, in a registry of their own.

    ``registry``: where the collectors live (default: a new
    ``CollectorRegistry``). Construction registers the collectors but does
    not listen yet: :meth:`attach` adds the object to the router's
    listeners (:meth:`~swapcore.router.BaseRouter.add_listener`), or pass
    it as the router's ``on_event`` (it is callable with one event).
    :meth:`exposition` renders the registry in Prometheus' text format.
    The event-fed collectors are attributes (``requests``, ``expired``,
    ``wait``, ``swaps``, ``swap_seconds``, ``retries``, ``evictions``,
    ``unloads``, ``state_changes``); ``docs/gateway.md`` names each metric.

    The gauges read the router's records when the registry is collected,
    without locking: collect from the router's event loop (as the gateway
    does) for an exact picture.
    """

    def __init__(self, router: BaseRouter, *, registry: CollectorRegistry | None = None) -> None:
        self._router = router
        self._models = frozenset(router.models)
        self._registry = CollectorRegistry() if registry is None else registry
        reg = self._registry
        self.requests = Counter(
            "swapcore_requests_total",
            "Requests by model and outcome: served (granted the model), rejected (reason: "
            "the gateway's error code), cancelled (the caller left while waiting).",
            ("model", "outcome", "reason"),
            registry=reg,
        )
        self.expired = Counter(
            "swapcore_leases_expired_total",
            "Served requests whose lease the router took back at its lease timeout.",
            ("model",),
            registry=reg,
        )
        self.wait = Histogram(
            "swapcore_request_wait_seconds",
            "Seconds a served request waited for its model (queue and swap).",
            ("model",),
            buckets=WAIT_BUCKETS,
            registry=reg,
        )
        self.swaps = Counter(
            "swapcore_swaps_total",
            "Swaps started, by target model, cause (request or preload) and tier "
            "(cold: a start; wake: from sleep).",
            ("model", "cause", "tier"),
            registry=reg,
        )
        self.swap_seconds = Histogram(
            "swapcore_swap_duration_seconds",
            "Seconds from a swap's start to its model being ready (evictions included), "
            "by tier and outcome (ok or error).",
            ("tier", "outcome"),
            buckets=SWAP_BUCKETS,
            registry=reg,
        )
        self.retries = Counter(
            "swapcore_swap_retries_total",
            "Starts begun again after the model crashed while starting.",
            ("model",),
            registry=reg,
        )
        self.evictions = Counter(
            "swapcore_evictions_total",
            "Models evicted by swaps, by how they left: stop or sleep.",
            ("model", "action"),
            registry=reg,
        )
        self.unloads = Counter(
            "swapcore_unloads_total",
            "Unloads run, by reason: unload (asked for), ttl (idle), shutdown.",
            ("reason",),
            registry=reg,
        )
        self.state_changes = Counter(
            "swapcore_process_state_changes_total",
            "Process state changes the router did not cause (a crash, an operator's stop), "
            "by model and new state.",
            ("model", "state"),
            registry=reg,
        )
        reg.register(_RouterCollector(router))
        self._tiers: dict[str, str] = {}  # model -> tier of its swap in flight
        self._preloading: dict[str, int] = {}
        self._served = {m: self.requests.labels(m, "served", "") for m in self._models}
        self._cancelled = {m: self.requests.labels(m, "cancelled", "") for m in self._models}
        self._waits = {m: self.wait.labels(m) for m in self._models}
        self._handlers: dict[type[RouterEvent], Callable[[Any], None]] = {
            RequestGranted: self._granted,
            RequestRejected: self._rejected,
            RequestCancelled: self._cancel,
            RequestExpired: self._expired,
            SwapStarted: self._swap_started,
            SwapFinished: self._swap_finished,
            SwapRetried: self._swap_retried,
            ModelsUnloaded: self._unloaded,
            ProcessStateChanged: self._state_changed,
        }

    @property
    def registry(self) -> CollectorRegistry:
        """The registry holding every collector (scrape it, or add your own collectors)."""
        return self._registry

    def attach(self) -> Callable[[], None]:
        """Listen to the router's events from now on; return a function that stops listening."""
        return self._router.add_listener(self)

    def __call__(self, event: RouterEvent) -> None:
        """Count one router event (events the metrics do not use are ignored)."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    @contextlib.contextmanager
    def preloading(self, model: str) -> Iterator[None]:
        """Within the block, a swap to ``model`` counts with cause ``preload``."""
        self._preloading[model] = self._preloading.get(model, 0) + 1
        try:
            yield
        finally:
            left = self._preloading[model] - 1
            if left:
                self._preloading[model] = left
            else:
                del self._preloading[model]

    def count_rejected(self, model: str, reason: str) -> None:
        """Count a request rejected before it reached the router (``reason``: an error code)."""
        self.requests.labels(self._label(model), "rejected", reason).inc()

    def add_models(self, models: Iterable[str]) -> None:
        """Count the requests of these models too (a router reconfigured with new models).

        Models counted already keep their series; none is dropped, so the
        series of a removed model stay as they were.
        """
        new = [m for m in models if m not in self._models]
        if not new:
            return
        self._models = self._models | frozenset(new)
        for model in new:
            self._served[model] = self.requests.labels(model, "served", "")
            self._cancelled[model] = self.requests.labels(model, "cancelled", "")
            self._waits[model] = self.wait.labels(model)

    def exposition(self) -> bytes:
        """Every metric, in Prometheus' text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self._registry)

    # -- event handlers --------------------------------------------------------

    def _label(self, model: str) -> str:
        return model if model in self._models else UNKNOWN_MODEL

    def _granted(self, event: RequestGranted) -> None:
        model = event.model
        served = self._served.get(model)
        if served is None:  # a router whose models changed after construction
            return
        served.inc()
        self._waits[model].observe(event.waited)

    def _rejected(self, event: RequestRejected) -> None:
        code = routing_error(event.error).code or "routing_error"
        self.requests.labels(self._label(event.model), "rejected", code).inc()

    def _cancel(self, event: RequestCancelled) -> None:
        cancelled = self._cancelled.get(event.model)
        if cancelled is not None:
            cancelled.inc()

    def _expired(self, event: RequestExpired) -> None:
        self.expired.labels(self._label(event.model)).inc()

    def _swap_started(self, event: SwapStarted) -> None:
        model = event.model
        tier = "wake" if event.wake else "cold"
        self._tiers[model] = tier
        cause = "preload" if model in self._preloading else "request"
        self.swaps.labels(model, cause, tier).inc()
        asleep = set(event.asleep)
        for evicted in event.evict:
            self.evictions.labels(evicted, "sleep" if evicted in asleep else "stop").inc()

    def _swap_finished(self, event: SwapFinished) -> None:
        tier = self._tiers.pop(event.model, "cold")
        outcome = "ok" if event.error is None else "error"
        self.swap_seconds.labels(tier, outcome).observe(event.duration)

    def _swap_retried(self, event: SwapRetried) -> None:
        self.retries.labels(event.model).inc()

    def _unloaded(self, event: ModelsUnloaded) -> None:
        self.unloads.labels(event.reason).inc()

    def _state_changed(self, event: ProcessStateChanged) -> None:
        self.state_changes.labels(event.model, event.new.value).inc()


class _RouterCollector:
    """The gauges read from the router at scrape time: queues, in flight, states, costs."""

    def __init__(self, router: BaseRouter) -> None:
        self._router = router

    def collect(self) -> Iterable[Metric]:
        router = self._router
        snapshot = router.snapshot()
        queued = GaugeMetricFamily(
            "swapcore_queue_depth",
            "Requests waiting for each model (in the queue or on its swap).",
            labels=("model",),
        )
        in_flight = GaugeMetricFamily(
            "swapcore_in_flight_requests",
            "Requests holding each model (granted, not yet released).",
            labels=("model",),
        )
        model_state = GaugeMetricFamily(
            "swapcore_model_state",
            "1 for each model's current process state, 0 for the others.",
            labels=("model", "state"),
        )
        counts = dict.fromkeys(ProcessState, 0)
        total = 0
        for model, record in snapshot.models.items():
            depth = record.queued + record.waiting
            total += depth
            queued.add_metric((model,), depth)
            in_flight.add_metric((model,), record.in_flight)
            counts[record.state] += 1
            for state in ProcessState:
                model_state.add_metric((model, state.value), 1 if state is record.state else 0)
        overall = GaugeMetricFamily(
            "swapcore_queue_depth_overall", "Requests waiting for any model.", value=total
        )
        by_state = GaugeMetricFamily(
            "swapcore_models", "Models in each process state.", labels=("state",)
        )
        for state, count in counts.items():
            by_state.add_metric((state.value,), count)
        yield from (queued, overall, in_flight, by_state, model_state)
        yield from _costs(router)


def _costs(router: BaseRouter) -> Iterator[Metric]:
    costs = router.costs
    seconds = GaugeMetricFamily(
        "swapcore_model_cost_seconds",
        "Learned seconds of each model's transitions (kind: load, wake, stop, sleep): "
        "the median of recent measurements, else the configured value.",
        labels=("model", "kind"),
    )
    memory = GaugeMetricFamily(
        "swapcore_model_memory_bytes",
        "Accelerator memory each model uses when running, as measured (else configured).",
        labels=("model",),
    )
    for model in router.models:
        for kind in COST_KINDS:
            value = costs.estimate(model, kind)
            if value is not None:
                seconds.add_metric((model, kind), value)
        size = costs.estimate(model, "memory")
        if size is not None:
            memory.add_metric((model,), size)
    yield from (seconds, memory)
