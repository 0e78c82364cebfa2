"""Models whose upstreams share one address must never run at the same time.

Private to :mod:`swapcore.config`. Two servers cannot listen on one port:
when the routing lets two models with the same upstream address run
together, the second to start fails, or worse, its requests reach the first
model's server. Models that share a port legitimately (docker containers
publishing one fixed port, in one swapping group) keep loading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from swapcore.config._reader import Reader
from swapcore.config.macros import join_path
from swapcore.config.schema import GpuConfig, ModelConfig, RoutingConfig
from swapcore.errors import ConfigError
from swapcore.planners.groups import GroupPlanner

__all__ = ["LOOPBACK_HOSTS", "check_shared_upstreams", "upstream_address"]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""Host names that all mean this machine: one port is one server among them."""


def upstream_address(proxy: str) -> tuple[str, int] | None:
    """The ``(host, port)`` a proxy URL connects to, or None when it has none.

    The host is lower-cased, and every loopback name is ``localhost``; an
    absent port is the scheme's default (80, or 443 for https). The scheme
    itself is not compared: one port is one listening server, whatever the
    protocol spoken on it.
    """
    try:
        parts = urlsplit(proxy)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if not host:
        return None
    if host in LOOPBACK_HOSTS:
        host = "localhost"
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return host, port


def _never_together(
    models: Mapping[str, ModelConfig],
    routing: RoutingConfig,
    memory_budget: int | None,
    gpus: GpuConfig | None = None,
) -> tuple[Callable[[str, str], bool], str] | None:
    """A test of whether two models can never run at once, and how to make it so."""
    if routing.router == "placement":
        if gpus is None or not gpus.devices:
            return None  # devices: auto are known at start only; nothing to prove here
        from swapcore.planners.placement import PlacementPlanner

        placer = PlacementPlanner(gpus.sizes, gpus.devices, split=gpus.split)

        def apart(a: str, b: str) -> bool:
            if a not in gpus.sizes or b not in gpus.sizes:
                return True  # the missing size is reported on its own
            return bool(placer.eviction_for(a, (b,)))

        return (apart, "the devices can hold both models at once (they fit together)")
    if routing.router == "memory":
        if memory_budget is None:
            return None

        def too_big(a: str, b: str) -> bool:
            sizes = models[a].memory, models[b].memory
            if sizes[0] is None or sizes[1] is None:
                return True  # the missing memory is reported on its own
            return sizes[0] + sizes[1] > memory_budget

        return (
            too_big,
            "swapcore.memory_budget lets both models run at once (their memory fits it together)",
        )
    if routing.router == "matrix" and routing.matrix is not None:
        from swapcore.matrix import compile_matrix  # lazy: the matrix is optional here

        matrix = routing.matrix
        try:
            program = compile_matrix(matrix.sets, vars=matrix.vars, models=list(models))
        except ConfigError:
            return None  # the routing is broken; its own error is reported
        return (
            lambda a, b: not program.can_contain_all((a, b)),
            "a matrix set can hold both models; keep them out of a common set",
        )
    try:
        planner = GroupPlanner(routing.groups, models=models)
    except ConfigError:
        return None

    # Loading either must stop the other: one group with swap: true, or two
    # exclusive groups neither of which is persistent.
    def exclusive(a: str, b: str) -> bool:
        return bool(planner.eviction_for(a, (b,))) and bool(planner.eviction_for(b, (a,)))

    return (
        exclusive,
        "the groups let both models run at once; put them in one group with swap: true",
    )


def check_shared_upstreams(
    r: Reader,
    models: Mapping[str, ModelConfig],
    routing: RoutingConfig,
    memory_budget: int | None = None,
    gpus: GpuConfig | None = None,
) -> None:
    """Record an error for each model whose upstream address an earlier model shares,
    unless the routing guarantees the two never run at the same time.

    ``models`` are the built models in definition order; each error names the
    later model's ``proxy`` and the earlier one's. ``memory_budget`` is the
    memory router's budget: two models then never run together when their
    memory adds up to more; ``gpus`` the placement router's devices: two
    models then never run together when the devices cannot hold both.
    """
    rule: tuple[Callable[[str, str], bool], str] | None = None
    seen: dict[tuple[str, int], list[str]] = {}
    for later, model in models.items():
        address = upstream_address(model.proxy)
        if address is None:
            continue
        before = seen.setdefault(address, [])
        before.append(later)
        if len(before) == 1:
            continue
        if rule is None:
            rule = _never_together(models, routing, memory_budget, gpus)
            if rule is None:
                return
        never_together, advice = rule
        earlier = next((m for m in before[:-1] if not never_together(m, later)), None)
        if earlier is None:
            continue
        host, port = address
        assigned = [m for m in (earlier, later) if models[m].port == port]
        note = ""
        if len(assigned) == 1:
            note = (
                f" (port {port} is the ${{PORT}} of {join_path('models', assigned[0])}: "
                "set startPort past the fixed ports)"
            )
        r.error(
            join_path(join_path("models", later), "proxy"),
            f"{host}:{port} is also the upstream of "
            f"{join_path(join_path('models', earlier), 'proxy')}, and {advice}, "
            f"or give each model its own port{note}",
        )
