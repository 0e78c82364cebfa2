"""Reading one model's settings, then expanding its macros and assigning its port.

Private to :mod:`swapcore.config`; :func:`~swapcore.config.parse_config`
drives it. Two passes: :func:`read_model` checks each model's keys and types
in definition order; :func:`expand_model` expands macros and ``${PORT}`` in
sorted id order, the order llama-swap assigns ports in.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import attrs

from swapcore.config._filters import build_filters, expand_filters, read_filters
from swapcore.config._reader import MAX_PORT, Reader, kind
from swapcore.config._residency import (
    SleepMode,
    endpoint_problem,
    read_size,
    read_sleep_mode,
    read_swap_costs,
)
from swapcore.config._timeouts import build_timeouts, raw_timeouts
from swapcore.config.macros import (
    check_macro,
    clean_command,
    expand,
    expand_value,
    join_path,
    merge_macros,
    resolve_macros,
    unknown_macros,
)
from swapcore.config.schema import DEFAULT_MODEL_TIMEOUTS, ModelConfig, invisible_character
from swapcore.errors import ConfigError

__all__ = [
    "DEFAULT_PROXY",
    "RawModel",
    "check_aliases",
    "expand_model",
    "macro_entries",
    "read_model",
]

DEFAULT_PROXY = "http://localhost:${PORT}"
"""llama-swap's default ``proxy``: it needs ``${PORT}`` in ``cmd``."""

_MODEL = frozenset(
    {
        "cmd",
        "cmdStop",
        "proxy",
        "checkEndpoint",
        "ttl",
        "unloadTimeout",
        "aliases",
        "env",
        "concurrencyLimit",
        "useModelName",
        "unlisted",
        "name",
        "description",
        "macros",
        "metadata",
        "sendLoadingState",
        "timeouts",
        # swapcore's own keys
        "sleepMode",
        "hostMemory",
        "memory",
        "swapCosts",
        "filters",
    }
)
# Both only change what /v1/models lists or how websockets count: warnings.
_MODEL_UNSUPPORTED = frozenset({"capabilities", "compat"})
# llama-swap's alias objects carry a display name and an unlisted flag of their
# own; swapcore reads the id and warns about the rest.
_ALIAS_UNSUPPORTED = frozenset({"name", "unlisted"})
_ENV_NAME = re.compile(r"[^=\s]+")
_STRUCTURED = frozenset({"metadata", "timeouts"})  # expanded keeping the values' types


@attrs.define
class RawModel:
    """One model after reading, before macro expansion."""

    id: str
    path: str
    cmd: str
    cmd_stop: str
    proxy: str
    proxy_is_default: bool
    check_endpoint: str
    ttl: float
    unload_timeout: float
    aliases: list[str]
    env: list[tuple[str, str, str]]  # (name, value, key path)
    concurrency_limit: int | None
    use_model_name: str
    unlisted: bool
    name: str
    description: str
    macros: list[tuple[str, object]]
    metadata: dict[str, Any]
    send_loading_state: bool
    timeouts: dict[str, Any]  # known keys, values not yet expanded
    sleep_mode: SleepMode | None  # endpoints not yet expanded
    host_memory: int | None
    memory: int | None
    swap_costs: dict[str, float]
    filters: dict[str, Any]  # shape checked, macros not yet expanded


def macro_entries(r: Reader, value: object, path: str) -> list[tuple[str, object]]:
    entries = []
    raw = r.mapping(value, path) or {}
    for name, item in raw.items():
        problem = check_macro(name, item)
        if problem:
            r.error(join_path(path, name), problem)
        else:
            entries.append((name, item))
    return entries


def _env_entries(r: Reader, value: object, path: str) -> list[tuple[str, str, str]]:
    """``env`` as llama-swap writes it (``["K=V", ...]``) or as a mapping."""
    entries: list[tuple[str, str, str]] = []
    if value is None:
        return entries
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = join_path(path, key)
            if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
                r.error(path, f"invalid environment variable name {key!r}")
            elif isinstance(item, (Mapping, list, tuple)):
                r.error(where, f"must be a string, got {kind(item)}")
            else:
                entries.append((key, r.string(item, where, ""), where))
        return entries
    for index, item in enumerate(r.string_list(value, path)):
        where = f"{path}[{index}]"
        name, sep, text = item.partition("=")
        if not sep or not _ENV_NAME.fullmatch(name):
            r.error(where, f"must look like NAME=value, got {item!r}")
        else:
            entries.append((name, text, where))
    return entries


def _aliases(r: Reader, value: object, path: str) -> list[str]:
    """``aliases`` as strings or, as newer llama-swap writes them, ``{id, name, unlisted}``."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        r.error(path, f"must be a list of strings, got {kind(value)}")
        return []
    aliases = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if isinstance(item, Mapping):
            entry = r.mapping(item, where) or {}
            r.keys(entry, where, ("id",), _ALIAS_UNSUPPORTED)
            if entry.get("id") is None:
                r.error(f"{where}.id", "required")
                continue
            item = entry["id"]
            where = f"{where}.id"
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            r.error(where, f"must be a string, got {kind(item)}")
        elif not str(item).strip():
            r.error(where, "must not be empty")
        elif problem := invisible_character(str(item)):
            r.error(where, f"alias {str(item)!r} contains {problem}")
        else:
            aliases.append(str(item))
    return aliases


def read_model(
    r: Reader, model_id: str, value: object, path: str, gw: dict[str, Any]
) -> RawModel | None:
    raw = r.mapping(value, path)
    if raw is None:
        if value is None:
            r.error(path, "must be a mapping with at least cmd")
        return None
    r.keys(raw, path, _MODEL, _MODEL_UNSUPPORTED)
    at = functools.partial(join_path, path)

    # Commands and URLs are never coerced from other scalars (r.text).
    cmd = clean_command(r.text(raw.get("cmd"), at("cmd"), ""))
    if raw.get("cmd") is None:
        r.error(at("cmd"), "required")
    elif isinstance(raw["cmd"], str) and not cmd:
        r.error(at("cmd"), "must not be empty")
    proxy = r.text(raw.get("proxy"), at("proxy"), DEFAULT_PROXY).strip() or DEFAULT_PROXY
    check_endpoint = r.text(raw.get("checkEndpoint"), at("checkEndpoint"), "/health").strip()

    # llama-swap: ttl -1 (the default) means globalTTL, 0 means never.
    ttl = r.number(raw.get("ttl"), at("ttl"), -1)
    if ttl == -1:
        ttl = gw["global_ttl"]
    elif ttl < 0:
        r.error(at("ttl"), "must be >= 0 (or -1 to use globalTTL)")
        ttl = 0
    unload_timeout = r.number(raw.get("unloadTimeout"), at("unloadTimeout"), 0, minimum=0)
    concurrency = r.integer(raw.get("concurrencyLimit"), at("concurrencyLimit"), 0, minimum=0)

    aliases = _aliases(r, raw.get("aliases"), at("aliases"))

    return RawModel(
        id=model_id,
        path=path,
        cmd=cmd,
        cmd_stop=clean_command(r.text(raw.get("cmdStop"), at("cmdStop"), "")),
        proxy=proxy,
        proxy_is_default=proxy == DEFAULT_PROXY and raw.get("proxy") in (None, ""),
        check_endpoint=check_endpoint,
        ttl=ttl,
        unload_timeout=unload_timeout or gw["unload_timeout"],
        aliases=aliases,
        env=_env_entries(r, raw.get("env"), at("env")),
        concurrency_limit=concurrency or None,
        use_model_name=r.string(raw.get("useModelName"), at("useModelName"), ""),
        unlisted=r.boolean(raw.get("unlisted"), at("unlisted"), False),
        name=r.string(raw.get("name"), at("name"), ""),
        description=r.string(raw.get("description"), at("description"), ""),
        macros=macro_entries(r, raw.get("macros"), at("macros")),
        metadata=r.mapping(raw.get("metadata"), at("metadata")) or {},
        send_loading_state=r.boolean(
            raw.get("sendLoadingState"), at("sendLoadingState"), gw["send_loading_state"]
        ),
        timeouts=raw_timeouts(r, raw.get("timeouts"), at("timeouts")),
        sleep_mode=read_sleep_mode(r, raw.get("sleepMode"), at("sleepMode")),
        host_memory=read_size(r, raw.get("hostMemory"), at("hostMemory")),
        memory=read_size(r, raw.get("memory"), at("memory"), positive=True),
        swap_costs=read_swap_costs(r, raw.get("swapCosts"), at("swapCosts")),
        filters=read_filters(r, raw.get("filters"), at("filters"), legacy=True),
    )


def check_aliases(r: Reader, models: dict[str, RawModel]) -> dict[str, str]:
    """Aliases must be unique and must not shadow a model id; return alias -> id."""
    owners: dict[str, str] = {}
    for model in models.values():
        for index, alias in enumerate(model.aliases):
            where = f"{model.path}.aliases[{index}]"
            if alias in models:
                r.error(where, f"alias '{alias}' is already a model id")
            elif alias in owners:
                owner = owners[alias]
                what = "listed twice" if owner == model.id else f"already used by model '{owner}'"
                r.error(where, f"alias '{alias}' is {what}")
            else:
                owners[alias] = model.id
    return owners


def expand_model(
    r: Reader,
    model: RawModel,
    global_macros: list[tuple[str, object]],
    port: int,
) -> tuple[ModelConfig | None, bool]:
    """Expand one model's macros and ``${PORT}``; return it and whether it took ``port``."""
    path = model.path
    try:
        own = {name: f"{path}.macros.{name}" for name, _ in model.macros}
        macros = resolve_macros(
            merge_macros(global_macros, model.macros, model.id),
            path="macros",
            paths=own,
        )
        fields: dict[str, Any] = {
            "cmd": expand(model.cmd, macros, path=f"{path}.cmd"),
            "cmdStop": expand(model.cmd_stop, macros, path=f"{path}.cmdStop"),
            "proxy": expand(model.proxy, macros, path=f"{path}.proxy"),
            "checkEndpoint": expand(model.check_endpoint, macros, path=f"{path}.checkEndpoint"),
            "name": expand(model.name, macros, path=f"{path}.name"),
            "description": expand(model.description, macros, path=f"{path}.description"),
            "useModelName": expand(model.use_model_name, macros, path=f"{path}.useModelName"),
            "metadata": expand_value(model.metadata, macros, path=f"{path}.metadata"),
            "timeouts": expand_value(model.timeouts, macros, path=f"{path}.timeouts"),
        }
        if model.sleep_mode is not None:
            for key, text in (
                ("sleepEndpoint", model.sleep_mode.sleep_endpoint),
                ("wakeEndpoint", model.sleep_mode.wake_endpoint),
            ):
                where = f"{path}.sleepMode.{key}"
                fields[f"sleepMode.{key}"] = expand(text, macros, path=where)
        env = {where: (name, expand(text, macros, path=where)) for name, text, where in model.env}
        filters = expand_filters(model.filters, macros, f"{path}.filters")
    except ConfigError as exc:
        r.errors.append(exc)
        return None, False

    uses_port = "${PORT}" in fields["cmd"]
    if uses_port:
        if port > MAX_PORT:
            r.error(f"{path}.cmd", f"no port left for ${{PORT}}: {port} is above {MAX_PORT}")
            return None, True
        port_macro = {"PORT": port}
        fields = {
            key: (expand_value if key in _STRUCTURED else expand)(
                value, port_macro, path=f"{path}.{key}"
            )
            for key, value in fields.items()
        }
        env = {where: (n, expand(t, port_macro, path=where)) for where, (n, t) in env.items()}
        try:
            filters = expand_filters(filters, port_macro, f"{path}.filters")
        except ConfigError as exc:
            r.errors.append(exc)
            return None, True

    ok = True
    checks: list[tuple[str, object]] = [
        (f"{path}.{key}", value) for key, value in fields.items() if key != "timeouts"
    ]
    checks.extend((f"{path}.timeouts.{key}", value) for key, value in fields["timeouts"].items())
    checks.extend((where, text) for where, (_, text) in env.items())
    for where, value in checks:
        names = [n for n in unknown_macros(value) if not (n == "PID" and where.endswith("cmdStop"))]
        if not names:
            continue
        ok = False
        if names[0] == "PORT" and where == f"{path}.proxy" and model.proxy_is_default:
            r.error(
                where,
                "the default proxy http://localhost:${PORT} needs ${PORT} in cmd; "
                "use ${PORT} in cmd or set proxy",
            )
        elif names[0] == "PORT":
            r.error(where, "uses ${PORT} but cmd does not; ${PORT} is only assigned through cmd")
        else:
            r.error(where, f"unknown macro '${{{names[0]}}}'")
    if not ok:
        return None, uses_port
    r.url(fields["proxy"], f"{path}.proxy")
    timeouts = build_timeouts(r, fields["timeouts"], f"{path}.timeouts", DEFAULT_MODEL_TIMEOUTS)
    if timeouts is None:
        return None, uses_port
    endpoint = fields["checkEndpoint"]
    if endpoint != "none" and not endpoint.startswith("/"):
        r.error(
            f"{path}.checkEndpoint", f"must be a path starting with '/', or none, got {endpoint!r}"
        )
        return None, uses_port
    built_filters = build_filters(r, filters, f"{path}.filters")
    if built_filters is None:
        return None, uses_port
    sleep = model.sleep_mode
    if sleep is not None:
        for key in ("sleepEndpoint", "wakeEndpoint"):
            problem = endpoint_problem(fields[f"sleepMode.{key}"])
            if problem:
                r.error(f"{path}.sleepMode.{key}", problem)
                ok = False
        if not ok:
            return None, uses_port
    try:
        config = ModelConfig(
            id=model.id,
            cmd=fields["cmd"],
            cmd_stop=fields["cmdStop"],
            proxy=fields["proxy"],
            check_endpoint=fields["checkEndpoint"],
            ttl=model.ttl,
            unload_timeout=model.unload_timeout,
            aliases=tuple(model.aliases),
            env=dict(env.values()),
            concurrency_limit=model.concurrency_limit,
            use_model_name=fields["useModelName"] or None,
            unlisted=model.unlisted,
            name=fields["name"],
            description=fields["description"],
            send_loading_state=model.send_loading_state,
            port=port if uses_port else None,
            metadata=fields["metadata"],
            timeouts=timeouts,
            sleep_level=None if sleep is None else sleep.level,
            sleep_endpoint=fields.get("sleepMode.sleepEndpoint", "/sleep?level={level}"),
            wake_endpoint=fields.get("sleepMode.wakeEndpoint", "/wake_up"),
            host_memory=model.host_memory,
            memory=model.memory,
            swap_costs=model.swap_costs,
            filters=built_filters,
        )
    except ConfigError as exc:  # a hand-checked invariant the reader missed
        r.error(path, str(exc))
        return None, uses_port
    return config, uses_port
