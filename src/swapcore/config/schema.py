"""The validated shape of a gateway configuration: frozen attrs classes.

Every class here is the *result* of loading: macros are expanded, ports are
assigned, aliases are checked and defaults are filled in. The loader
(:mod:`swapcore.config.loader`) builds them from llama-swap's ``config.yaml``
and reports problems with their YAML key path; the constructors only check
the invariants a hand-built configuration could break, naming the field.
"""

from __future__ import annotations

import itertools
import math
import types
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

from swapcore.errors import ConfigError
from swapcore.planners.groups import DEFAULT_GROUP, Group

__all__ = [
    "DEFAULT_CONCURRENCY_LIMIT",
    "DEFAULT_HEALTH_CHECK_TIMEOUT",
    "DEFAULT_START_PORT",
    "DEFAULT_UNLOAD_TIMEOUT",
    "MIN_HEALTH_CHECK_TIMEOUT",
    "SUMMARY_COMBINATION_LIMIT",
    "GatewayConfig",
    "MatrixConfig",
    "ModelConfig",
    "PeerConfig",
    "RoutingConfig",
    "SwapcoreSettings",
]

DEFAULT_HEALTH_CHECK_TIMEOUT = 120.0
"""Seconds a model may take to become ready (llama-swap ``healthCheckTimeout``)."""
MIN_HEALTH_CHECK_TIMEOUT = 15.0
"""Smaller ``healthCheckTimeout`` values are raised to this, as llama-swap does."""
DEFAULT_START_PORT = 5800
"""First port handed out for ``${PORT}`` (llama-swap ``startPort``)."""
DEFAULT_UNLOAD_TIMEOUT = 10.0
"""Seconds a model may take to stop before it is killed (``unloadTimeout``)."""
DEFAULT_CONCURRENCY_LIMIT = 10
"""Requests admitted per model when ``concurrencyLimit`` is unset (llama-swap's 10)."""
SUMMARY_COMBINATION_LIMIT = 10_000
"""``summary()`` counts a matrix set's combinations up to this many, no further."""


def _frozen_mapping(value: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> Mapping[Any, Any]:
    return types.MappingProxyType(dict(value))


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _pairs(value: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(value)


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{type(instance).__name__}.{attribute.name}: must be a number >= 0")


def _positive_or_none(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{type(instance).__name__}.{attribute.name}: must be an integer >= 1")


def _non_empty_str(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{type(instance).__name__}.{attribute.name}: must be a non-empty string")


def _timeout(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name}: must be a positive number of seconds"
            " or None"
        )


@attrs.frozen(kw_only=True)
class UpstreamTimeouts:
    """How long the gateway waits on one upstream (seconds; None = no limit).

    ``connect``: to open a connection; ``response_header``: from sending the
    request to the response headers; ``read``: the longest silence in the
    middle of a response; ``keepalive``, ``tls_handshake``, ``idle_conn``,
    ``expect_continue``: as llama-swap's ``timeouts`` keys.
    """

    connect: float | None = attrs.field(default=30.0, validator=_timeout)
    response_header: float | None = attrs.field(default=None, validator=_timeout)
    read: float | None = attrs.field(default=600.0, validator=_timeout)
    keepalive: float | None = attrs.field(default=30.0, validator=_timeout)
    tls_handshake: float | None = attrs.field(default=10.0, validator=_timeout)
    idle_conn: float | None = attrs.field(default=90.0, validator=_timeout)
    expect_continue: float | None = attrs.field(default=1.0, validator=_timeout)


DEFAULT_MODEL_TIMEOUTS = UpstreamTimeouts()
"""A local model's timeouts when its config sets none."""
DEFAULT_PEER_TIMEOUTS = UpstreamTimeouts(response_header=60.0)
"""A peer's timeouts when its config sets none."""


@attrs.frozen(kw_only=True)
class ModelConfig:
    """One local model: how to start, check, reach and stop its server.

    All strings are final: macros (``${PORT}``, ``${MODEL_ID}``, user macros,
    ``${env.NAME}``) are already expanded, except ``${PID}`` in ``cmd_stop``,
    which the process manager fills in when it stops the process.

    ``ttl`` and ``unload_timeout`` are resolved against the global settings
    (``globalTTL``, ``unloadTimeout``); a ``ttl`` of 0 means never unload
    when idle. ``concurrency_limit`` None means the scheduler's default.
    ``use_model_name`` is the name to put in the request body's ``model``
    field before forwarding upstream (None = forward the id unchanged).
    """

    id: str = attrs.field(validator=_non_empty_str)
    cmd: str = attrs.field(validator=_non_empty_str)
    proxy: str = attrs.field(validator=_non_empty_str)
    cmd_stop: str = ""
    check_endpoint: str = "/health"
    ttl: float = attrs.field(default=0, validator=_non_negative)
    unload_timeout: float = attrs.field(default=DEFAULT_UNLOAD_TIMEOUT, validator=_non_negative)
    aliases: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    env: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen_mapping, eq=True, hash=False
    )
    concurrency_limit: int | None = attrs.field(default=None, validator=_positive_or_none)
    use_model_name: str | None = None
    unlisted: bool = False
    name: str = ""
    description: str = ""
    send_loading_state: bool = False
    port: int | None = None
    metadata: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_frozen_mapping, eq=True, hash=False
    )
    timeouts: UpstreamTimeouts = DEFAULT_MODEL_TIMEOUTS

    @property
    def health_check_enabled(self) -> bool:
        """False when ``checkEndpoint`` is ``none``: the process is ready once started."""
        return self.check_endpoint != "none"

    @property
    def upstream_model(self) -> str:
        """The model name the upstream server expects: ``useModelName`` or the id."""
        return self.use_model_name or self.id


@attrs.frozen(kw_only=True)
class PeerConfig:
    """A remote gateway (another llama-swap, or any OpenAI-style API) and its models.

    Its models are addressed as ``<peer>/<model>``, or by the bare model name
    when exactly one peer provides it and no local model or alias claims it.
    """

    name: str = attrs.field(validator=_non_empty_str)
    proxy: str = attrs.field(validator=_non_empty_str)
    api_key: str = ""
    models: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    timeouts: UpstreamTimeouts = DEFAULT_PEER_TIMEOUTS


@attrs.frozen(kw_only=True)
class MatrixConfig:
    """The swap matrix: ordered ``sets`` of DSL expressions, ``vars`` and ``evict_costs``.

    ``sets`` is a tuple of ``(name, expression)`` pairs in definition order;
    the order breaks ties between equally cheap sets.
    """

    sets: tuple[tuple[str, str], ...] = attrs.field(converter=_pairs)
    vars: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping, hash=False)
    evict_costs: Mapping[str, int] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False
    )

    def resolved_evict_costs(self) -> dict[str, int]:
        """Return evict costs keyed by real model id (vars resolved)."""
        return {self.vars.get(key, key): cost for key, cost in self.evict_costs.items()}


@attrs.frozen(kw_only=True)
class RoutingConfig:
    """Which eviction policy runs (``group`` or ``matrix``) and the FIFO priorities.

    ``groups`` holds the configured groups only; models in no group join the
    ``"(default)"`` group when the planner is built. ``priority`` maps real
    model ids (aliases resolved) to their queue priority (default 0).
    """

    router: Literal["group", "matrix"] = "group"
    groups: Mapping[str, Group] = attrs.field(factory=dict, converter=_frozen_mapping, hash=False)
    matrix: MatrixConfig | None = None
    scheduler: str = "fifo"
    priority: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen_mapping, hash=False)

    def __attrs_post_init__(self) -> None:
        if self.router == "matrix" and self.matrix is None:
            raise ConfigError("RoutingConfig.matrix: required when router is 'matrix'")
        if self.router not in ("group", "matrix"):
            raise ConfigError(
                f"RoutingConfig.router: must be 'group' or 'matrix', not {self.router!r}"
            )


@attrs.frozen(kw_only=True)
class SwapcoreSettings:
    """swapcore's own settings, from the top-level ``swapcore:`` section.

    ``max_wait`` (seconds, None = unbounded, llama-swap's behaviour) bounds
    how long the oldest queued request waits before requests for busy models
    stop overtaking it. ``default_concurrency_limit`` applies to models
    without ``concurrencyLimit``.
    """

    scheduler: str = "fifo"
    max_wait: float | None = None
    default_concurrency_limit: int = attrs.field(
        default=DEFAULT_CONCURRENCY_LIMIT, validator=_positive_or_none
    )

    def __attrs_post_init__(self) -> None:
        if self.max_wait is not None:
            _non_negative(self, attrs.fields(SwapcoreSettings).max_wait, self.max_wait)


@attrs.frozen(kw_only=True)
class GatewayConfig:
    """A whole validated gateway configuration.

    ``models`` and ``peers`` keep definition order. ``warnings`` lists every
    key that was ignored (unsupported or unknown), by key path. ``source``
    names where the configuration came from (a file path or ``<config>``).
    ``preload`` lists real model ids to load at start
    (``hooks.on_startup.preload``, aliases resolved).

    Construction checks that model keys match model ids and that no alias
    collides with a model id or another alias.
    """

    models: Mapping[str, ModelConfig] = attrs.field(converter=_frozen_mapping, hash=False)
    routing: RoutingConfig = attrs.field(factory=RoutingConfig)
    peers: Mapping[str, PeerConfig] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False
    )
    health_check_timeout: float = attrs.field(
        default=DEFAULT_HEALTH_CHECK_TIMEOUT, validator=_non_negative
    )
    start_port: int = DEFAULT_START_PORT
    global_ttl: float = attrs.field(default=0, validator=_non_negative)
    unload_timeout: float = attrs.field(default=DEFAULT_UNLOAD_TIMEOUT, validator=_non_negative)
    send_loading_state: bool = False
    include_aliases_in_list: bool = False
    api_keys: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    preload: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    swapcore: SwapcoreSettings = attrs.field(factory=SwapcoreSettings)
    warnings: tuple[str, ...] = attrs.field(default=(), converter=_strings, eq=False)
    source: str = attrs.field(default="<config>", eq=False)
    _aliases: Mapping[str, str] = attrs.field(init=False, repr=False, eq=False, hash=False)

    def __attrs_post_init__(self) -> None:
        aliases: dict[str, str] = {}
        for key, model in self.models.items():
            if key != model.id:
                raise ConfigError(f"GatewayConfig.models: key {key!r} holds model {model.id!r}")
            for alias in model.aliases:
                if alias in self.models:
                    raise ConfigError(
                        f"GatewayConfig.models: alias {alias!r} of {key!r} is a model id"
                    )
                owner = aliases.setdefault(alias, key)
                if owner != key:
                    raise ConfigError(
                        f"GatewayConfig.models: alias {alias!r} is used by {owner!r} and {key!r}"
                    )
        object.__setattr__(self, "_aliases", types.MappingProxyType(aliases))

    @property
    def aliases(self) -> Mapping[str, str]:
        """Every alias mapped to the id of the model it names."""
        return self._aliases

    def resolve_model(self, name: str) -> str | None:
        """Return the local model id ``name`` denotes (an id or an alias), or None."""
        if name in self.models:
            return name
        return self._aliases.get(name)

    def resolve_peer(self, name: str) -> tuple[str, str] | None:
        """Return ``(peer, model)`` for a peer model name, or None.

        ``<peer>/<model>`` names the peer exactly; a bare model name resolves
        when exactly one peer provides it. Local models and aliases win over
        peers: call :meth:`resolve_model` first.
        """
        for peer in self.peers.values():
            prefix = f"{peer.name}/"
            if name.startswith(prefix) and name[len(prefix) :] in peer.models:
                return peer.name, name[len(prefix) :]  # unique: the loader checks
        found = [peer.name for peer in self.peers.values() if name in peer.models]
        if len(found) == 1:
            return found[0], name
        return None

    def group_members(self) -> dict[str, tuple[str, ...]]:
        """Every group's members, with ``"(default)"`` holding the ungrouped models.

        Empty when the router is the matrix. Mirrors what
        :class:`~swapcore.planners.groups.GroupPlanner` builds.
        """
        if self.routing.router != "group":
            return {}
        result = {name: group.members for name, group in self.routing.groups.items()}
        grouped = set(itertools.chain.from_iterable(result.values()))
        ungrouped = tuple(m for m in self.models if m not in grouped)
        if ungrouped or DEFAULT_GROUP in result:
            result[DEFAULT_GROUP] = (*result.get(DEFAULT_GROUP, ()), *ungrouped)
        return result

    def summary(self) -> dict[str, Any]:
        """Describe the configuration as plain data (for ``swapcore check``).

        Keys: ``source``, ``models`` (id, aliases, port, proxy, ttl, ...),
        ``router`` (``group`` or ``matrix``), ``groups`` or ``matrix`` (sets
        with their combination counts, capped at
        :data:`SUMMARY_COMBINATION_LIMIT`: ``combinations`` is then None and
        ``combinations_at_least`` holds the cap), ``scheduler``, ``priority``,
        ``peers``, ``preload``, ``settings`` and ``warnings``. Values are
        JSON-serialisable.
        """
        models = [
            {
                "id": m.id,
                "name": m.name,
                "aliases": list(m.aliases),
                "port": m.port,
                "proxy": m.proxy,
                "check_endpoint": m.check_endpoint,
                "ttl": m.ttl,
                "unload_timeout": m.unload_timeout,
                "concurrency_limit": m.concurrency_limit or self.swapcore.default_concurrency_limit,
                "use_model_name": m.use_model_name,
                "unlisted": m.unlisted,
            }
            for m in self.models.values()
        ]
        result: dict[str, Any] = {
            "source": self.source,
            "models": models,
            "router": self.routing.router,
        }
        if self.routing.router == "group":
            result["groups"] = [
                {
                    "name": name,
                    "members": list(members),
                    "swap": group.swap,
                    "exclusive": group.exclusive,
                    "persistent": group.persistent,
                }
                for name, members in self.group_members().items()
                for group in [self.routing.groups.get(name, Group(members))]
            ]
        else:
            result["matrix"] = self._matrix_summary()
        result["scheduler"] = self.swapcore.scheduler
        result["priority"] = dict(self.routing.priority)
        result["peers"] = [
            {"name": p.name, "proxy": p.proxy, "models": list(p.models), "api_key": bool(p.api_key)}
            for p in self.peers.values()
        ]
        result["preload"] = list(self.preload)
        result["settings"] = {
            "health_check_timeout": self.health_check_timeout,
            "start_port": self.start_port,
            "global_ttl": self.global_ttl,
            "unload_timeout": self.unload_timeout,
            "send_loading_state": self.send_loading_state,
            "api_keys": len(self.api_keys),
            "max_wait": self.swapcore.max_wait,
            "default_concurrency_limit": self.swapcore.default_concurrency_limit,
        }
        result["warnings"] = list(self.warnings)
        return result

    def _matrix_summary(self) -> dict[str, Any]:
        matrix = self.routing.matrix
        assert matrix is not None  # RoutingConfig guarantees it for the matrix router
        from swapcore.matrix import compile_matrix  # lazy: the matrix is optional here

        program = compile_matrix(dict(matrix.sets), vars=matrix.vars, models=list(self.models))
        sets = []
        for name, dsl in matrix.sets:
            count = sum(
                1
                for _ in itertools.islice(program.combinations(name), SUMMARY_COMBINATION_LIMIT + 1)
            )
            capped = count > SUMMARY_COMBINATION_LIMIT
            sets.append(
                {
                    "name": name,
                    "dsl": dsl,
                    "combinations": None if capped else count,
                    "combinations_at_least": SUMMARY_COMBINATION_LIMIT if capped else count,
                }
            )
        return {
            "sets": sets,
            "vars": dict(matrix.vars),
            "evict_costs": dict(matrix.evict_costs),
            "models": sorted(program.models),
        }
