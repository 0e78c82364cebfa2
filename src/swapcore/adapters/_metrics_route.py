"""The gateway's ``GET /metrics``: a router's Prometheus metrics, or why there are none.

The metrics need the optional ``prometheus-client`` package (the ``metrics``
extra); it is imported only here, when a gateway is built, so a gateway
without it still serves everything else and answers ``/metrics`` with a
one-line 501 naming the extra.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from swapcore.adapters._errors import GatewayHTTPError

if TYPE_CHECKING:
    from swapcore.adapters._http import Exchange
    from swapcore.adapters.metrics import RouterMetrics
    from swapcore.router import BaseRouter

__all__ = ["MetricsRoute"]

logger = logging.getLogger(__name__)

_MISSING = "metrics need the prometheus-client package: pip install 'swapcore[metrics]'"
_OFF = "metrics are turned off in this gateway (GatewayApp(metrics=False))"


class MetricsRoute:
    """One gateway's metrics: a :class:`RouterMetrics` listening to its router, if possible.

    ``enabled`` False, or no ``prometheus-client``: no metrics, and
    :meth:`answer` raises the HTTP error that says why (404 or 501).
    """

    def __init__(self, router: BaseRouter, enabled: bool) -> None:
        self.metrics: RouterMetrics | None = None
        self._remove: Callable[[], None] | None = None
        # Why there are no metrics: (status, message, kind, code), or None.
        self._unavailable: tuple[int, str, str, str] | None = None
        if not enabled:
            self._unavailable = (404, _OFF, "invalid_request_error", "not_found")
            return
        try:
            from swapcore.adapters.metrics import RouterMetrics
        except ImportError as exc:
            if not (exc.name or "").startswith("prometheus_client"):
                raise
            logger.debug("no /metrics: prometheus-client is not installed")
            self._unavailable = (501, _MISSING, "server_error", "metrics_unavailable")
            return
        self.metrics = RouterMetrics(router)
        self._remove = self.metrics.attach()

    async def answer(self, exchange: Exchange) -> None:
        """Send the scrape (Prometheus' text format), or raise why there is none."""
        metrics = self.metrics
        if metrics is None:
            assert self._unavailable is not None
            status, message, kind, code = self._unavailable
            raise GatewayHTTPError(status, message, kind=kind, code=code)
        from swapcore.adapters.metrics import CONTENT_TYPE

        data = metrics.exposition()
        await exchange.start(
            200,
            [
                (b"content-type", CONTENT_TYPE.encode()),
                (b"content-length", str(len(data)).encode()),
            ],
        )
        await exchange.finish(data)

    def preloading(self, model: str) -> contextlib.AbstractContextManager[None]:
        """Within the block, a swap to ``model`` counts as caused by a preload."""
        if self.metrics is None:
            return contextlib.nullcontext()
        return self.metrics.preloading(model)

    def rejected(self, model: str, code: str) -> None:
        """Count a request the gateway rejected before the router saw it."""
        if self.metrics is not None:
            self.metrics.count_rejected(model, code)

    def close(self) -> None:
        """Stop listening to the router (idempotent)."""
        remove, self._remove = self._remove, None
        if remove is not None:
            remove()
