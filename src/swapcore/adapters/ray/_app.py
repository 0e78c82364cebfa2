"""Building the Ray Serve application: hosts, their request router, and the front."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from swapcore.cluster import ClusterPolicy
from swapcore.errors import ConfigError
from swapcore.sim.specs import cluster_policy_from_spec

__all__ = ["DEFAULT_STATS_PERIOD", "app", "build_app"]

DEFAULT_STATS_PERIOD = 0.5
"""Seconds between two reports of a host to Ray Serve's controller (``record_routing_stats``)."""

# Hosts queue requests themselves (swapcore's scheduler); Ray should not hold them back.
_HOST_MAX_ONGOING = 1024


def build_app(
    config: str,
    *,
    hosts: int = 1,
    policy: ClusterPolicy | None = None,
    start_port: int | str | None = "auto",
    stats_period: float = DEFAULT_STATS_PERIOD,
    host_options: Mapping[str, Any] | None = None,
    front_options: Mapping[str, Any] | None = None,
    attempts: int | None = None,
    allow_unsupported: bool = False,
) -> Any:
    """A Ray Serve application serving ``config`` (a llama-swap config path or YAML text).

    ``hosts`` replicas of :class:`~swapcore.adapters.ray.SwapcoreHost` each
    run every model of the configuration under their own swapcore router;
    a :class:`~swapcore.adapters.ray.SwapcoreFront` is the HTTP entry, and
    ``policy`` (default :class:`~swapcore.cluster.AffinityPolicy`) picks the
    host of each request through
    :class:`~swapcore.adapters.ray.SwapcoreRequestRouter`. ``start_port``
    is as for the host. ``host_options`` and ``front_options`` are Ray
    Serve deployment options (``ray_actor_options``,
    ``max_replicas_per_node``, ``autoscaling_config``, ...) that replace
    the defaults: hosts need no CPU of their own (their models do the work)
    and take up to 1024 requests each, since swapcore queues them.

    The configuration is read and checked here, on the driver: an invalid
    one raises :class:`~swapcore.ConfigError` before anything is deployed.
    Pass the result to ``serve.run``.
    """
    from ray.serve.config import RequestRouterConfig

    from ray import serve
    from swapcore.adapters.ray._config import host_config
    from swapcore.adapters.ray._front import DEFAULT_ATTEMPTS, SwapcoreFront
    from swapcore.adapters.ray._host import SwapcoreHost
    from swapcore.adapters.ray._router import SwapcoreRequestRouter, pack_policy
    from swapcore.config._yaml import read_source

    if isinstance(hosts, bool) or not isinstance(hosts, int) or hosts < 1:
        raise ConfigError(f"hosts: must be a whole number >= 1, not {hosts!r}")
    if policy is not None and not isinstance(policy, ClusterPolicy):
        raise ConfigError(f"policy: must be a ClusterPolicy, not {type(policy).__name__}")
    if not stats_period > 0:
        raise ConfigError(f"stats_period: must be positive, not {stats_period!r}")
    text, source = read_source(config)
    host_config(text, source=source, allow_unsupported=allow_unsupported)  # fail here, not later
    router_options: dict[str, Any] = {
        "request_router_class": SwapcoreRequestRouter,
        "request_router_kwargs": {"policy": None if policy is None else pack_policy(policy)},
        "request_routing_stats_period_s": stats_period,
        "request_routing_stats_timeout_s": max(10.0, 4 * stats_period),
    }
    router = RequestRouterConfig(**router_options)
    host_defaults: dict[str, Any] = {
        "name": "SwapcoreHost",
        "num_replicas": hosts,
        "max_ongoing_requests": _HOST_MAX_ONGOING,
        "ray_actor_options": {"num_cpus": 0},
        "request_router_config": router,
        "graceful_shutdown_timeout_s": 30,
    }
    host_defaults.update(host_options or {})
    if "autoscaling_config" in host_defaults:
        host_defaults.pop("num_replicas", None)
    front_defaults: dict[str, Any] = {
        "name": "SwapcoreFront",
        "num_replicas": 1,
        "max_ongoing_requests": _HOST_MAX_ONGOING,
        "ray_actor_options": {"num_cpus": 0},
    }
    front_defaults.update(front_options or {})
    deployment = cast(Any, serve.deployment)  # its overloads do not cover a class argument
    host = deployment(SwapcoreHost).options(**host_defaults)
    front = deployment(SwapcoreFront).options(**front_defaults)
    return front.bind(
        host.bind(text, source=source, start_port=start_port, allow_unsupported=allow_unsupported),
        text,
        source=source,
        attempts=DEFAULT_ATTEMPTS if attempts is None else attempts,
        allow_unsupported=allow_unsupported,
    )


def app(args: Mapping[str, str]) -> Any:
    """The application builder for ``serve run swapcore.adapters.ray:app config=FILE hosts=N``.

    Arguments (all strings, as ``serve run`` passes them): ``config``
    (required), ``hosts`` (default 1), ``policy`` (``affinity`` or
    ``affinity:spill=N``, as ``swapcore simulate --cluster-policy``),
    ``start_port`` (``auto``, a number or ``config``), ``max_replicas_per_node``
    (hosts per node, e.g. 1),
    ``allow_unsupported`` (``true``/``false``).
    """
    known = {
        "config",
        "hosts",
        "policy",
        "start_port",
        "max_replicas_per_node",
        "allow_unsupported",
    }
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(f"unknown argument(s) {unknown}; known: {sorted(known)}")
    if "config" not in args:
        raise ConfigError("config=FILE is required (a llama-swap config.yaml)")
    hosts = _whole(args.get("hosts", "1"), "hosts")
    start: int | str | None = args.get("start_port", "auto")
    if start == "config":
        start = None
    elif start != "auto":
        start = _whole(str(start), "start_port")
    host_options: dict[str, Any] = {}
    if "max_replicas_per_node" in args:
        host_options["max_replicas_per_node"] = _whole(
            args["max_replicas_per_node"], "max_replicas_per_node"
        )
    flag = args.get("allow_unsupported", "false").lower()
    if flag not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"allow_unsupported: must be true or false, not {flag!r}")
    return build_app(
        args["config"],
        hosts=hosts,
        policy=cluster_policy_from_spec(args["policy"]) if "policy" in args else None,
        start_port=start,
        host_options=host_options,
        allow_unsupported=flag in ("true", "1", "yes"),
    )


def _whole(value: str, key: str) -> int:
    if not value.strip().isdigit() or int(value) < 1:
        raise ConfigError(f"{key}: must be a whole number >= 1, not {value!r}")
    return int(value)
