"""Optional adapters that connect swapcore to the outside world (the ``gateway`` extra).

- ``swapcore.adapters.subprocess.SubprocessProcess`` runs a model server as a
  child process group and implements the ``Process`` protocol.
- ``swapcore.adapters.asgi.GatewayApp`` is an OpenAI-compatible gateway: a
  plain ASGI app over a ``BaseRouter``, mountable in Starlette or FastAPI.
- ``swapcore.adapters.metrics.RouterMetrics`` keeps a router's Prometheus
  metrics (the ``metrics`` extra, prometheus-client); the gateway serves
  them at ``GET /metrics``.

Nothing here is imported by ``import swapcore``; each adapter imports its
third-party dependencies (aiohttp, uvicorn, prometheus-client) itself.
"""
