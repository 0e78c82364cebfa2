"""Load llama-swap's ``config.yaml`` and build a router from it.

::

    from swapcore.config import build_router, load_config

    config = load_config("config.yaml")      # GatewayConfig; config.warnings lists ignored keys
    async with build_router(config) as router:
        await router.preload(*config.preload)
        ...

Reading YAML needs PyYAML (the ``config`` extra); :func:`parse_config`
validates an already-parsed mapping without it. See docs/config.md for the
supported keys, the macro rules and the differences from llama-swap.
"""

from swapcore.config.build import (
    build_costs,
    build_planner,
    build_processes,
    build_router,
    build_scheduler_factory,
    build_sleep_rules,
    router_kwargs,
)
from swapcore.config.demo import DEMO_VARIANTS, demo_config, demo_yaml
from swapcore.config.filters import Filters, apply_filters
from swapcore.config.limits import MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, MAX_CONFIG_NODES
from swapcore.config.loader import KNOWN_SCHEDULERS, load_config, parse_config
from swapcore.config.schema import (
    DEFAULT_MODEL_TIMEOUTS,
    DEFAULT_PEER_TIMEOUTS,
    TIMEOUT_KEYS,
    GatewayConfig,
    GpuConfig,
    MatrixConfig,
    ModelConfig,
    PeerConfig,
    RoutingConfig,
    SwapcoreSettings,
    UpstreamTimeouts,
)

__all__ = [
    "DEFAULT_MODEL_TIMEOUTS",
    "DEFAULT_PEER_TIMEOUTS",
    "DEMO_VARIANTS",
    "Filters",
    "KNOWN_SCHEDULERS",
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_DEPTH",
    "MAX_CONFIG_NODES",
    "TIMEOUT_KEYS",
    "GatewayConfig",
    "GpuConfig",
    "MatrixConfig",
    "ModelConfig",
    "PeerConfig",
    "RoutingConfig",
    "SwapcoreSettings",
    "UpstreamTimeouts",
    "apply_filters",
    "build_costs",
    "build_planner",
    "build_processes",
    "build_router",
    "build_scheduler_factory",
    "build_sleep_rules",
    "demo_config",
    "demo_yaml",
    "load_config",
    "parse_config",
    "router_kwargs",
]
