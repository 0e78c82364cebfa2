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
import os
import types
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from swapcore.config.filters import Filters
from swapcore.costs import COST_KINDS
from swapcore.errors import ConfigError
from swapcore.planners.groups import DEFAULT_GROUP, Group

__all__ = [
    "DEFAULT_CONCURRENCY_LIMIT",
    "DEFAULT_HEALTH_CHECK_TIMEOUT",
    "DEFAULT_MODEL_TIMEOUTS",
    "DEFAULT_PEER_TIMEOUTS",
    "DEFAULT_START_PORT",
    "DEFAULT_START_RETRIES",
    "DEFAULT_UNLOAD_TIMEOUT",
    "MIN_HEALTH_CHECK_TIMEOUT",
    "SUMMARY_COMBINATION_LIMIT",
    "TIMEOUT_KEYS",
    "GatewayConfig",
    "GpuConfig",
    "MatrixConfig",
    "ModelConfig",
    "PeerConfig",
    "RoutingConfig",
    "SwapcoreSettings",
    "UpstreamTimeouts",
    "format_size",
    "invisible_character",
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
DEFAULT_START_RETRIES = 1
"""Restarts a swap gives a model whose start crashed (``swapcore.start_retries``)."""

# Characters a name (model id, alias, peer) must not contain: they are
# invisible or break a line in logs, messages and ``str.splitlines``. The
# zero-width (non-)joiners are kept: some scripts and emoji need them.
_INVISIBLE_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
_ALLOWED_FORMAT = frozenset("\u200c\u200d")


def invisible_character(text: str) -> str | None:
    """Describe the first character of ``text`` a name must not contain, or None.

    Refused: control characters (Unicode category Cc: C0 and C1 controls,
    DEL, newline, tab), invisible formatting characters (Cf, such as U+200E
    or U+FEFF) except the zero-width joiners U+200C and U+200D, and the line
    and paragraph separators U+2028 and U+2029. The result reads like
    ``a control character U+0007``.
    """
    for char in text:
        if char.isprintable():
            continue  # no printable character is in a refused category
        what = _INVISIBLE_CATEGORIES.get(unicodedata.category(char))
        if what is not None and char not in _ALLOWED_FORMAT:
            return f"{what} U+{ord(char):04X}"
    return None


def format_size(size: int) -> str:
    """A byte count for people: ``16 GiB``, ``1.5 TiB``, ``512 MiB``, ``123 B``.

    The largest binary unit the size reaches, with up to two decimals.
    """
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{round(size / scale, 2):g} {unit}"
    return f"{size} B"


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


def _count(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{type(instance).__name__}.{attribute.name}: must be an integer >= 0")


def _non_empty_str(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{type(instance).__name__}.{attribute.name}: must be a non-empty string")


def _visible_name(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _non_empty_str(instance, attribute, value)
    _visible_names(instance, attribute, (value,))


def _visible_names(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    for name in value:  # type: ignore[attr-defined]  # a tuple of str after conversion
        problem = invisible_character(name) if isinstance(name, str) else "a non-string"
        if problem:
            raise ConfigError(
                f"{type(instance).__name__}.{attribute.name}: {name!r} contains {problem}"
            )


def _bytes_or_none(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name}: must be a number of bytes (an int "
            f">= 0) or None, got {value!r}"
        )


def _positive_bytes_or_none(
    instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    _bytes_or_none(instance, attribute, value)
    if value == 0:
        raise ConfigError(f"{type(instance).__name__}.{attribute.name}: must be > 0 bytes")


def _sleep_level(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (isinstance(value, bool) or value not in (1, 2)):
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name}: must be 1, 2 or None, got {value!r}"
        )


def _path(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name}: must be a path starting with '/', "
            f"got {value!r}"
        )


def _swap_costs(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    for key, seconds in value.items():  # type: ignore[attr-defined]  # a mapping after conversion
        if key not in COST_KINDS:
            raise ConfigError(
                f"{type(instance).__name__}.{attribute.name}: unknown kind {key!r} "
                f"(valid: {', '.join(COST_KINDS)})"
            )
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ConfigError(
                f"{type(instance).__name__}.{attribute.name}[{key!r}]: must be a finite number "
                f"of seconds >= 0, got {seconds!r}"
            )


def _optional_path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)


def _seconds_or_none(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _timeout(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name}: must be a number of seconds > 0, "
            f"or None for no timeout, got {value!r}"
        )


def _timeout_field(default: float | None) -> Any:
    return attrs.field(default=default, converter=_seconds_or_none, validator=_timeout)


@attrs.frozen(kw_only=True)
class UpstreamTimeouts:
    """How long the gateway waits on an upstream (a model's server or a peer), in seconds.

    None means no timeout (``0`` in YAML). ``connect`` bounds opening the TCP
    connection, ``tls_handshake`` the TLS handshake with an ``https``
    upstream, ``response_header`` the wait for the response headers once the
    request is sent, and ``read`` the longest silence in the middle of a
    response, after its headers. ``keepalive`` is the TCP keep-alive
    interval of upstream connections and ``idle_conn`` how long an idle
    pooled connection is kept. ``expect_continue`` is accepted for
    llama-swap compatibility; swapcore never sends ``Expect: 100-continue``,
    so it has no effect. Integers become floats; anything but a number
    > 0 or None raises :class:`~swapcore.ConfigError` naming the field.
    """

    connect: float | None = _timeout_field(30.0)
    response_header: float | None = _timeout_field(None)
    read: float | None = _timeout_field(600.0)
    keepalive: float | None = _timeout_field(30.0)
    tls_handshake: float | None = _timeout_field(10.0)
    idle_conn: float | None = _timeout_field(90.0)
    expect_continue: float | None = _timeout_field(1.0)


TIMEOUT_KEYS: Mapping[str, str] = types.MappingProxyType(
    {
        "connect": "connect",
        "responseHeader": "response_header",
        "read": "read",
        "keepalive": "keepalive",
        "tlsHandshake": "tls_handshake",
        "idleConn": "idle_conn",
        "expectContinue": "expect_continue",
    }
)
"""YAML key of each :class:`UpstreamTimeouts` field, in field order; ``read`` is swapcore's."""
DEFAULT_MODEL_TIMEOUTS = UpstreamTimeouts()
"""A model's timeouts when its ``timeouts`` section is absent (llama-swap's, plus ``read``).

No ``response_header`` bound: a server sends the headers of a non-streamed
completion only when the completion is done. ``read`` is 600 s, llama.cpp's
``llama-server`` default read/write timeout.
"""
DEFAULT_PEER_TIMEOUTS = UpstreamTimeouts(response_header=60.0)
"""A peer's timeouts when its ``timeouts`` section is absent: as a model's, but
``response_header`` is 60 s (llama-swap's peer default)."""


def _timeouts(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, UpstreamTimeouts):
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name}: must be an UpstreamTimeouts, "
            f"got {type(value).__name__}"
        )


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
    ``timeouts`` bound the gateway's waits on the model's server. The id and
    the aliases must not contain invisible characters (see
    :func:`invisible_character`).

    Residency (swapcore's keys): ``sleep_level`` (1 or 2, from
    ``sleepMode.level``; None = the model never sleeps), ``sleep_endpoint``
    and ``wake_endpoint`` (paths on ``proxy``; ``{level}`` in
    ``sleep_endpoint`` becomes the level), ``host_memory`` (bytes the model
    holds in host memory while asleep at level 1; None = not given),
    ``memory`` (bytes of accelerator memory it needs while running; None =
    not given) and ``swap_costs`` (configured seconds of a ``load``,
    ``wake``, ``stop`` or ``sleep``: the priors of learned costs).

    ``filters`` rewrite the JSON body of each request before it is
    forwarded (llama-swap's ``filters``; see :mod:`swapcore.config.filters`);
    their ``set_params_by_id`` names are among ``aliases`` too.
    """

    id: str = attrs.field(validator=_visible_name)
    cmd: str = attrs.field(validator=_non_empty_str)
    proxy: str = attrs.field(validator=_non_empty_str)
    cmd_stop: str = ""
    check_endpoint: str = "/health"
    ttl: float = attrs.field(default=0, validator=_non_negative)
    unload_timeout: float = attrs.field(default=DEFAULT_UNLOAD_TIMEOUT, validator=_non_negative)
    aliases: tuple[str, ...] = attrs.field(default=(), converter=_strings, validator=_visible_names)
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
    timeouts: UpstreamTimeouts = attrs.field(default=DEFAULT_MODEL_TIMEOUTS, validator=_timeouts)
    sleep_level: int | None = attrs.field(default=None, validator=_sleep_level)
    sleep_endpoint: str = attrs.field(default="/sleep?level={level}", validator=_path)
    wake_endpoint: str = attrs.field(default="/wake_up", validator=_path)
    host_memory: int | None = attrs.field(default=None, validator=_bytes_or_none)
    memory: int | None = attrs.field(default=None, validator=_positive_bytes_or_none)
    swap_costs: Mapping[str, float] = attrs.field(
        factory=dict, converter=_frozen_mapping, validator=_swap_costs, eq=True, hash=False
    )
    filters: Filters = attrs.field(factory=Filters, validator=attrs.validators.instance_of(Filters))

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
    ``timeouts`` bound the gateway's waits on the peer (by default
    :data:`DEFAULT_PEER_TIMEOUTS`). The name and the model names must not
    contain invisible characters (see :func:`invisible_character`).
    ``filters`` rewrite the JSON body of each request forwarded to the peer
    (see :mod:`swapcore.config.filters`).
    """

    name: str = attrs.field(validator=_visible_name)
    proxy: str = attrs.field(validator=_non_empty_str)
    api_key: str = ""
    models: tuple[str, ...] = attrs.field(default=(), converter=_strings, validator=_visible_names)
    timeouts: UpstreamTimeouts = attrs.field(default=DEFAULT_PEER_TIMEOUTS, validator=_timeouts)
    filters: Filters = attrs.field(factory=Filters, validator=attrs.validators.instance_of(Filters))


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
    """Which eviction policy runs (``group``, ``matrix`` or ``memory``) and the FIFO priorities.

    ``groups`` holds the configured groups only; models in no group join the
    ``"(default)"`` group when the planner is built. ``memory`` is chosen by
    ``swapcore.memory_budget``: a memory-budget planner over the models'
    ``memory``, with no groups and no matrix. ``placement`` is chosen by the
    ``gpus:`` section: models placed on devices, each within its budget.
    ``priority`` maps real model ids (aliases resolved) to their queue
    priority (default 0).
    """

    router: Literal["group", "matrix", "memory", "placement"] = "group"
    groups: Mapping[str, Group] = attrs.field(factory=dict, converter=_frozen_mapping, hash=False)
    matrix: MatrixConfig | None = None
    scheduler: str = "fifo"
    priority: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen_mapping, hash=False)

    def __attrs_post_init__(self) -> None:
        if self.router == "matrix" and self.matrix is None:
            raise ConfigError("RoutingConfig.matrix: required when router is 'matrix'")
        if self.router not in ("group", "matrix", "memory", "placement"):
            raise ConfigError(
                "RoutingConfig.router: must be 'group', 'matrix', 'memory' or 'placement', "
                f"not {self.router!r}"
            )
        if self.router in ("memory", "placement") and (self.groups or self.matrix is not None):
            raise ConfigError(
                f"RoutingConfig: the {self.router} router takes no groups and no matrix"
            )


@attrs.frozen(kw_only=True)
class SwapcoreSettings:
    """swapcore's own settings, from the top-level ``swapcore:`` section.

    ``max_wait`` (seconds, None = unbounded, llama-swap's behaviour) bounds
    how long the oldest queued request waits before requests for busy models
    stop overtaking it. ``default_concurrency_limit`` applies to models
    without ``concurrencyLimit``. ``start_retries`` is how many times a swap
    restarts a model whose start crashed before it fails the requests
    waiting for it.

    ``host_memory_budget`` (bytes, None = unbounded) bounds the host memory
    sleeping models hold together; ``memory_budget`` (bytes, None = unset)
    selects the memory router, which keeps the running models' ``memory``
    within it; ``costs_file`` is where learned swap costs are saved and
    loaded (None = nowhere; the loader makes a relative path relative to
    the configuration file's directory).
    """

    scheduler: str = "fifo"
    max_wait: float | None = None
    default_concurrency_limit: int = attrs.field(
        default=DEFAULT_CONCURRENCY_LIMIT, validator=_positive_or_none
    )
    start_retries: int = attrs.field(default=DEFAULT_START_RETRIES, validator=_count)
    host_memory_budget: int | None = attrs.field(default=None, validator=_bytes_or_none)
    memory_budget: int | None = attrs.field(default=None, validator=_positive_bytes_or_none)
    costs_file: Path | None = attrs.field(default=None, converter=_optional_path)

    def __attrs_post_init__(self) -> None:
        if self.max_wait is not None:
            _non_negative(self, attrs.fields(SwapcoreSettings).max_wait, self.max_wait)


@attrs.frozen(kw_only=True)
class GpuConfig:
    """The ``gpus:`` section: the devices models are placed on, and each model's size.

    ``devices`` maps each device, by the name the engine knows it by (what
    ``env`` is set to, e.g. ``"0"`` or a GPU UUID), to its budget in bytes;
    it is empty when ``auto`` is set (the budgets are read from the GPUs,
    less ``reserve`` bytes each, when the planner is built). ``split`` lets
    a model that fits no single device spread over several. ``env`` is the
    variable each start of a model gets with its devices, comma-separated
    (empty: none). ``evict_costs`` makes some models dearer to evict than
    others (default 1 each). ``sizes`` holds every model's size in bytes and
    ``size_sources`` where each came from (``memory``, or the estimate of
    the model file its ``cmd`` names).
    """

    devices: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen_mapping, hash=False)
    auto: bool = False
    reserve: int = attrs.field(default=0, validator=_bytes_or_none)
    split: bool = True
    env: str = "CUDA_VISIBLE_DEVICES"
    evict_costs: Mapping[str, int] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False
    )
    sizes: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen_mapping, hash=False)
    size_sources: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False
    )

    def __attrs_post_init__(self) -> None:
        if not self.devices and not self.auto:
            raise ConfigError("GpuConfig.devices: at least one device, or auto")
        for name, budget in self.devices.items():
            if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
                raise ConfigError(f"GpuConfig.devices[{name!r}]: must be bytes > 0, got {budget!r}")


@attrs.frozen(kw_only=True)
class GatewayConfig:
    """A whole validated gateway configuration.

    ``models`` and ``peers`` keep definition order. ``warnings`` lists every
    key that was ignored (unsupported or unknown), by key path. ``source``
    names where the configuration came from (a file path or ``<config>``).
    ``preload`` lists real model ids to load at start
    (``hooks.on_startup.preload``, aliases resolved). ``gpus`` is the ``gpus:``
    section (None when absent): it selects the placement router.

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
    gpus: GpuConfig | None = None
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
        self._check_memory_router()

    def _check_memory_router(self) -> None:
        budget = self.swapcore.memory_budget
        memory_router = self.routing.router == "memory"
        if memory_router and budget is None:
            raise ConfigError(
                "GatewayConfig.routing: the memory router needs swapcore.memory_budget"
            )
        if budget is not None and not memory_router:
            raise ConfigError(
                "GatewayConfig.swapcore.memory_budget: set, but routing.router is "
                f"{self.routing.router!r}, not 'memory'"
            )
        if budget is None:
            return
        for model in self.models.values():
            if model.memory is None:
                raise ConfigError(
                    f"GatewayConfig.models: model {model.id!r} has no memory, "
                    "which the memory router needs"
                )
            if model.memory > budget:
                raise ConfigError(
                    f"GatewayConfig.models: model {model.id!r} needs more memory than "
                    "swapcore.memory_budget"
                )

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

        Keys: ``source``, ``models`` (id, aliases, port, proxy, ttl,
        ``timeouts`` by field name with None for no timeout, ``sleep_level``,
        ``sleep_endpoint`` and ``wake_endpoint``, ``host_memory`` and
        ``memory`` in bytes, ``swap_costs``, the parameter names of
        ``filters``, ...), ``router`` (``group``,
        ``matrix``, ``memory`` or ``placement``), ``groups``, ``matrix`` (sets with their
        combination counts, capped at :data:`SUMMARY_COMBINATION_LIMIT`:
        ``combinations`` is then None and ``combinations_at_least`` holds the
        cap) or ``memory`` (``budget`` and each model's ``sizes``, in
        bytes) or ``placement`` (``devices`` with their budgets or
        ``"auto"``, ``reserve``, ``split``, ``env``, ``evict_costs``, each
        model's ``sizes`` in bytes and their ``size_sources``),
        ``scheduler``, ``priority``, ``peers`` (with their
        ``timeouts`` and ``filters``), ``preload``, ``settings`` and ``warnings``. Values are
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
                "timeouts": attrs.asdict(m.timeouts),
                "sleep_level": m.sleep_level,
                "sleep_endpoint": m.sleep_endpoint if m.sleep_level is not None else None,
                "wake_endpoint": m.wake_endpoint if m.sleep_level is not None else None,
                "host_memory": m.host_memory,
                "memory": m.memory,
                "swap_costs": dict(m.swap_costs),
                "filters": m.filters.summary(),
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
        elif self.routing.router == "memory":
            result["memory"] = {
                "budget": self.swapcore.memory_budget,
                "sizes": {m.id: m.memory for m in self.models.values()},
            }
        elif self.routing.router == "placement" and self.gpus is not None:
            gpus = self.gpus
            result["placement"] = {
                "devices": "auto" if gpus.auto else dict(gpus.devices),
                "reserve": gpus.reserve if gpus.auto else None,
                "split": gpus.split,
                "env": gpus.env,
                "evict_costs": dict(gpus.evict_costs),
                "sizes": dict(gpus.sizes),
                "size_sources": dict(gpus.size_sources),
            }
        else:
            result["matrix"] = self._matrix_summary()
        result["scheduler"] = self.swapcore.scheduler
        result["priority"] = dict(self.routing.priority)
        result["peers"] = [
            {
                "name": p.name,
                "proxy": p.proxy,
                "models": list(p.models),
                "api_key": bool(p.api_key),
                "timeouts": attrs.asdict(p.timeouts),
                "filters": p.filters.summary(),
            }
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
            "start_retries": self.swapcore.start_retries,
            "host_memory_budget": self.swapcore.host_memory_budget,
            "memory_budget": self.swapcore.memory_budget,
            "costs_file": None
            if self.swapcore.costs_file is None
            else str(self.swapcore.costs_file),
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
