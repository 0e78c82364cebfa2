"""swapcore on Ray Serve: swapcore's decisions on every host of a Ray cluster.

Needs the ``ray`` extra (``pip install 'swapcore[ray]'``, Ray Serve).
:func:`build_app` (or ``serve run swapcore.adapters.ray:app
config=config.yaml hosts=3``) deploys:

- :class:`SwapcoreHost` replicas, each one host's (or one GPU set's)
  models behind the same gateway ``swapcore serve`` runs, built from the
  same llama-swap configuration;
- :class:`SwapcoreRequestRouter`, Ray Serve's request router for the
  hosts, which ranks them for each request's model with a swapcore
  :class:`~swapcore.cluster.ClusterPolicy` over their reports;
- :class:`SwapcoreFront`, the OpenAI-compatible HTTP entry.

See ``docs/ray.md`` for the request path and which decisions Ray makes.
"""

try:
    import ray.serve  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("swapcore.adapters.ray needs Ray Serve: pip install 'swapcore[ray]'") from exc

from swapcore.adapters.ray._app import DEFAULT_STATS_PERIOD, app, build_app
from swapcore.adapters.ray._front import SwapcoreFront
from swapcore.adapters.ray._host import SwapcoreHost
from swapcore.adapters.ray._router import SwapcoreRequestRouter

__all__ = [
    "DEFAULT_STATS_PERIOD",
    "SwapcoreFront",
    "SwapcoreHost",
    "SwapcoreRequestRouter",
    "app",
    "build_app",
]
