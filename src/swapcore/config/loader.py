"""Load llama-swap's ``config.yaml`` into a validated :class:`GatewayConfig`.

Policy:

- Every problem is a :class:`~swapcore.ConfigError` whose message starts with
  the key path (``models.qwen.ttl: must be >= 0``). Independent problems are
  collected and raised together, one per line; a lone matrix DSL error keeps
  its :class:`~swapcore.MatrixSyntaxError` type and position.
- A key swapcore does not implement (``logLevel``, ``capabilities``, ...)
  or does not know is never silently dropped: it becomes a warning naming
  its key path, in ``GatewayConfig.warnings``. One whose loss would change
  what is sent upstream or who may call (``profiles``, ``selectors``,
  ``peers.*.tailcatKey``, an unknown key inside ``filters``) is an error,
  unless ``allow_unsupported`` turns it back into a warning.
- A key with an empty value (``ttl:``) takes its default.
- Commands and URLs are strings, never coerced from other scalars; names
  (model ids, aliases, peers) have no invisible characters; two models whose
  upstreams share a host and port must be kept apart by the routing.
- Documents are held to :mod:`swapcore.config.limits` (size, values with
  aliases counted per use, depth), so loading is bounded in time and memory.

PyYAML is imported only when YAML text is read: :func:`parse_config` works
on any mapping without it.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any

import attrs

from swapcore.config._filters import build_filters, expand_filters, read_filters
from swapcore.config._gpus import check_gpu_sizes, read_gpus
from swapcore.config._models import RawModel, check_aliases, expand_model, macro_entries, read_model
from swapcore.config._ports import check_shared_upstreams
from swapcore.config._reader import MAX_PORT, Reader, kind
from swapcore.config._residency import check_residency, read_size
from swapcore.config._routing import KNOWN_SCHEDULERS, SWAPCORE_SCHEDULERS, read_routing
from swapcore.config._timeouts import build_timeouts, raw_timeouts
from swapcore.config._yaml import parse_yaml, read_source
from swapcore.config.filters import Filters
from swapcore.config.macros import (
    expand,
    expand_value,
    join_path,
    resolve_macros,
    substitute_env,
    unknown_macros,
)
from swapcore.config.schema import (
    DEFAULT_CONCURRENCY_LIMIT,
    DEFAULT_HEALTH_CHECK_TIMEOUT,
    DEFAULT_PEER_TIMEOUTS,
    DEFAULT_START_PORT,
    DEFAULT_START_RETRIES,
    DEFAULT_UNLOAD_TIMEOUT,
    MIN_HEALTH_CHECK_TIMEOUT,
    GatewayConfig,
    ModelConfig,
    PeerConfig,
    SwapcoreSettings,
    UpstreamTimeouts,
    invisible_character,
)
from swapcore.errors import ConfigError

__all__ = ["KNOWN_SCHEDULERS", "load_config", "parse_config"]

# Keys swapcore reads, and keys llama-swap documents that swapcore ignores with
# a warning. Anything else is an unknown key (a warning too, worded differently
# so a typo is easy to spot).
_TOP = frozenset(
    {
        "healthCheckTimeout",
        "startPort",
        "macros",
        "models",
        "groups",
        "matrix",
        "routing",
        "hooks",
        "apiKeys",
        "peers",
        "globalTTL",
        "unloadTimeout",
        "sendLoadingState",
        "includeAliasesInList",
        "swapcore",
        "gpus",
    }
)
_TOP_UNSUPPORTED = frozenset(
    {
        "logLevel",
        "logTimeFormat",
        "logToStdout",
        "logRequests",
        "metricsMaxInMemory",
        "captureBuffer",
        "store",
        "ui",
        "performance",
        "upstream",
        "profiles",
        "selectors",
        "scheduling",
    }
)
# Unsupported keys whose loss would change what is sent upstream or who may
# call: errors unless allow_unsupported. Each says what it would have done.
_TOP_POLICY = {
    "profiles": "profiles pin requested model names to other models",
    "selectors": "selectors send requests for virtual model names to other models",
}
_PEER = frozenset({"proxy", "apiKey", "models", "timeouts", "filters"})
_PEER_UNSUPPORTED = frozenset({"tailcatKey"})
_PEER_POLICY = {"tailcatKey": "tailcatKey authenticates the connection to the peer"}
_HOOK_POLICY = {"profile": "a startup profile pins requested model names to other models"}
_SWAPCORE = frozenset(
    {
        "scheduler",
        "max_wait",
        "default_concurrency_limit",
        "start_retries",
        "host_memory_budget",
        "memory_budget",
        "costs_file",
    }
)


def _preload(
    r: Reader, root: Mapping[str, Any], models: Collection[str], aliases: Mapping[str, str]
) -> list[str]:
    hooks = r.mapping(root.get("hooks"), "hooks") or {}
    r.keys(hooks, "hooks", ("on_startup",))
    startup = r.mapping(hooks.get("on_startup"), "hooks.on_startup") or {}
    r.keys(startup, "hooks.on_startup", ("preload",), ("profile",), _HOOK_POLICY)
    path = "hooks.on_startup.preload"
    preload: list[str] = []
    for index, name in enumerate(r.string_list(startup.get("preload"), path)):
        name = name.strip()
        if not name:
            continue  # llama-swap skips blank entries
        model = name if name in models else aliases.get(name)
        if model is None:
            # llama-swap silently drops unknown preloads; drop with a warning.
            r.warn(f"{path}[{index}]", f"'{name}' is not a defined model, ignored")
        elif model not in preload:
            preload.append(model)
    return preload


def _api_keys(r: Reader, root: Mapping[str, Any]) -> list[str]:
    keys = []
    for index, key in enumerate(r.string_list(root.get("apiKeys"), "apiKeys")):
        if not key:
            r.error(f"apiKeys[{index}]", "must not be empty")
        elif any(c.isspace() for c in key):
            r.error(f"apiKeys[{index}]", "must not contain spaces")
        else:
            keys.append(key)
    return keys


def _peers(
    r: Reader,
    root: Mapping[str, Any],
    global_macros: dict[str, Any] | None,
    models: Collection[str],
    aliases: Mapping[str, str],
) -> dict[str, PeerConfig]:
    peers: dict[str, PeerConfig] = {}
    # Peer and model names may both contain '/': "<peer>/<model>" must still
    # name exactly one peer model (llama-swap checks the same).
    qualified_names: dict[str, str] = {}
    for name, value in (r.mapping(root.get("peers"), "peers") or {}).items():
        path = join_path("peers", name)
        if not name.strip():
            r.error("peers", "peer names must not be empty")
            continue
        if problem := invisible_character(name):
            r.error("peers", f"peer name {name!r} contains {problem}")
            continue
        raw = r.mapping(value, path)
        if raw is None:
            if value is None:
                r.error(path, "must be a mapping with proxy and models")
            continue
        errors_before = len(r.errors)
        r.keys(raw, path, _PEER, _PEER_UNSUPPORTED, _PEER_POLICY)
        fields = {
            "proxy": r.text(raw.get("proxy"), f"{path}.proxy", ""),  # a URL: never coerced
            "apiKey": r.string(raw.get("apiKey"), f"{path}.apiKey", ""),
        }
        for key, text in fields.items():
            if global_macros is not None:
                try:
                    text = expand(text, global_macros, path=f"{path}.{key}")
                except ConfigError as exc:
                    r.errors.append(exc)
            for macro in unknown_macros(text)[:1]:
                r.error(f"{path}.{key}", f"unknown macro '${{{macro}}}'")
            fields[key] = text
        timeouts = _peer_timeouts(r, raw.get("timeouts"), f"{path}.timeouts", global_macros)
        filters = _peer_filters(r, raw.get("filters"), f"{path}.filters", global_macros)
        if raw.get("proxy") in (None, ""):
            r.error(f"{path}.proxy", "required")
        elif isinstance(raw["proxy"], str):
            r.url(fields["proxy"], f"{path}.proxy")
        peer_models = r.string_list(raw.get("models"), f"{path}.models")
        if not peer_models and raw.get("models") in (None, []):
            r.error(f"{path}.models", "must list at least one model")
        for index, model in enumerate(dict.fromkeys(peer_models)):
            qualified = f"{name}/{model}"
            where = f"{path}.models[{index}]"
            if problem := invisible_character(model):
                r.error(where, f"model name {model!r} contains {problem}")
            elif qualified in models or qualified in aliases:
                r.error(where, f"'{qualified}' is also a local model id or alias")
            elif qualified_names.setdefault(qualified, where) != where:
                r.error(where, f"'{qualified}' also names {qualified_names[qualified]}")
        for key in filters.set_params_by_id if filters is not None else ():
            bare = key[len(name) + 1 :] if key.startswith(f"{name}/") else key
            if bare not in peer_models:
                r.warn(
                    f"{path}.filters.setParamsByID",
                    f"'{key}' names none of this peer's models, so it never applies",
                )
        if (
            fields["proxy"]
            and timeouts is not None
            and filters is not None
            and len(r.errors) == errors_before
        ):
            peers[name] = PeerConfig(
                name=name,
                proxy=fields["proxy"],
                api_key=fields["apiKey"],
                models=tuple(dict.fromkeys(peer_models)),
                timeouts=timeouts,
                filters=filters,
            )
    return peers


def _peer_filters(
    r: Reader, value: object, path: str, global_macros: dict[str, Any] | None
) -> Filters | None:
    """A peer's filters; global macros expand in their values (not in keys, as in llama-swap)."""
    raw = read_filters(r, value, path, legacy=False)
    if global_macros is not None:
        try:
            raw = expand_filters(raw, global_macros, path, keys=False)
        except ConfigError as exc:
            r.errors.append(exc)
            return None
    return build_filters(r, raw, path)


def _by_id_aliases(
    r: Reader, built: dict[str, ModelConfig], declared: Collection[str], aliases: dict[str, str]
) -> dict[str, ModelConfig]:
    """Make each model's ``setParamsByID`` names its aliases, as llama-swap does.

    A name that is the model's own id or already one of its aliases adds
    nothing; one that is another model's id or alias is an error. Adds the
    new aliases to ``aliases`` (alias -> id) and returns the models with them.
    """
    result = dict(built)
    for model_id in sorted(built):
        model = built[model_id]
        added: list[str] = []
        for name in model.filters.set_params_by_id:
            where = f"{join_path('models', model_id)}.filters.setParamsByID"
            if name == model_id:
                continue
            if name in declared:
                r.error(where, f"'{name}' is already a model id")
            elif aliases.get(name, model_id) != model_id:
                r.error(where, f"'{name}' is already an alias of model '{aliases[name]}'")
            elif name not in aliases:
                aliases[name] = model_id
                added.append(name)
        if added:
            result[model_id] = attrs.evolve(model, aliases=(*model.aliases, *added))
    return result


def _peer_timeouts(
    r: Reader, value: object, path: str, global_macros: dict[str, Any] | None
) -> UpstreamTimeouts | None:
    """A peer's timeouts; global macros expand in them, as in the peer's proxy."""
    raw = raw_timeouts(r, value, path)
    if global_macros is not None:
        try:
            raw = expand_value(raw, global_macros, path=path)
        except ConfigError as exc:
            r.errors.append(exc)
            return None
    for key, item in raw.items():
        for macro in unknown_macros(item)[:1]:
            r.error(join_path(path, key), f"unknown macro '${{{macro}}}'")
            return None
    return build_timeouts(r, raw, path, DEFAULT_PEER_TIMEOUTS)


def _costs_file(r: Reader, value: object, base_dir: str | None) -> str | None:
    """``swapcore.costs_file``: a path made absolute against ``base_dir`` (or the cwd)."""
    path = "swapcore.costs_file"
    if value is None:
        return None
    if not isinstance(value, str):
        r.error(path, f"must be a file path, got {kind(value)}")
        return None
    text = value
    if not text.strip():
        r.error(path, "must be a file path, or null for none")
        return None
    if "\0" in text:
        r.error(path, "must not contain a NUL character")
        return None
    expanded = os.path.expanduser(text)
    return os.path.abspath(os.path.join(base_dir or os.getcwd(), expanded))


def _memory_budget(root: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """Whether ``swapcore.memory_budget`` is given (its key path) and its size, if valid.

    Read ahead of the ``swapcore:`` section, since it selects the router;
    :func:`_swapcore` reports its problems.
    """
    section = root.get("swapcore")
    value = section.get("memory_budget") if isinstance(section, Mapping) else None
    if value is None:
        return None, None
    return "swapcore.memory_budget", read_size(Reader(), value, "swapcore.memory_budget")


def _swapcore(r: Reader, root: Mapping[str, Any], base_dir: str | None) -> SwapcoreSettings:
    section = r.mapping(root.get("swapcore"), "swapcore") or {}
    r.keys(section, "swapcore", _SWAPCORE)
    scheduler = r.string(section.get("scheduler"), "swapcore.scheduler", "fifo")
    if scheduler not in SWAPCORE_SCHEDULERS:
        r.error(
            "swapcore.scheduler",
            f"unknown scheduler '{scheduler}' (valid: {', '.join(sorted(SWAPCORE_SCHEDULERS))})",
        )
        scheduler = "fifo"
    max_wait = section.get("max_wait")
    return SwapcoreSettings(
        scheduler=scheduler,
        max_wait=None
        if max_wait is None
        else r.number(max_wait, "swapcore.max_wait", 0, minimum=0),
        default_concurrency_limit=r.integer(
            section.get("default_concurrency_limit"),
            "swapcore.default_concurrency_limit",
            DEFAULT_CONCURRENCY_LIMIT,
            minimum=1,
        ),
        start_retries=r.integer(
            section.get("start_retries"),
            "swapcore.start_retries",
            DEFAULT_START_RETRIES,
            minimum=0,
        ),
        host_memory_budget=read_size(
            r, section.get("host_memory_budget"), "swapcore.host_memory_budget"
        ),
        memory_budget=read_size(
            r, section.get("memory_budget"), "swapcore.memory_budget", positive=True
        ),
        costs_file=_costs_file(r, section.get("costs_file"), base_dir),
    )


def _globals(r: Reader, root: Mapping[str, Any]) -> dict[str, Any]:
    timeout = r.number(
        root.get("healthCheckTimeout"), "healthCheckTimeout", DEFAULT_HEALTH_CHECK_TIMEOUT
    )
    if timeout < MIN_HEALTH_CHECK_TIMEOUT:
        r.warn(
            "healthCheckTimeout",
            f"{timeout:g} is below the minimum of {MIN_HEALTH_CHECK_TIMEOUT:g} seconds, "
            f"using {MIN_HEALTH_CHECK_TIMEOUT:g}",
        )
        timeout = MIN_HEALTH_CHECK_TIMEOUT
    return {
        "health_check_timeout": timeout,
        "start_port": r.integer(
            root.get("startPort"), "startPort", DEFAULT_START_PORT, minimum=1, maximum=MAX_PORT
        ),
        "global_ttl": r.number(root.get("globalTTL"), "globalTTL", 0, minimum=0),
        # llama-swap: an unloadTimeout of 0 means the default.
        "unload_timeout": r.number(root.get("unloadTimeout"), "unloadTimeout", 0, minimum=0)
        or DEFAULT_UNLOAD_TIMEOUT,
        "send_loading_state": r.boolean(root.get("sendLoadingState"), "sendLoadingState", False),
        "include_aliases_in_list": r.boolean(
            root.get("includeAliasesInList"), "includeAliasesInList", False
        ),
    }


def parse_config(
    data: object,
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    allow_unsupported: bool = False,
) -> GatewayConfig:
    """Validate a llama-swap configuration already parsed into Python objects.

    ``env`` supplies ``${env.NAME}`` values (default: ``os.environ``).
    ``allow_unsupported`` turns the keys swapcore does not implement whose
    loss would change what is sent upstream or who may call (``profiles``,
    ``selectors``, ``hooks.on_startup.profile``, ``peers.*.tailcatKey``,
    unknown keys inside ``filters``) from errors into warnings.
    ``source`` names the configuration in messages and in the result.
    ``base_dir`` is the directory relative paths (``swapcore.costs_file``)
    are relative to (default: the current working directory).
    Returns a :class:`GatewayConfig` whose ``warnings`` list every ignored
    key. Raises :class:`~swapcore.ConfigError` (nothing else) listing every
    problem found, one per line, each starting with its key path; a single
    matrix DSL error is raised as :class:`~swapcore.MatrixSyntaxError`.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: the top level must be a mapping of settings, got {kind(data)}"
        )
    r = Reader(allow_unsupported=allow_unsupported)
    document = substitute_env(data, os.environ if env is None else env, r.errors)
    root = r.mapping(document, source) or {}
    r.keys(root, "", _TOP, _TOP_UNSUPPORTED, _TOP_POLICY)
    gw = _globals(r, root)

    global_entries = macro_entries(r, root.get("macros"), "macros")
    try:
        global_macros: dict[str, Any] | None = resolve_macros(global_entries, path="macros")
    except ConfigError as exc:
        r.errors.append(exc)
        global_macros = None

    raw_models: dict[str, RawModel] = {}
    readable: set[str] = set()  # read without errors: safe to expand
    declared = r.mapping(root.get("models"), "models") or {}
    for model_id, value in declared.items():
        path = join_path("models", model_id)
        if not model_id.strip():
            r.error("models", "model ids must not be empty")
            continue
        if problem := invisible_character(model_id):
            r.error("models", f"model id {model_id!r} contains {problem}")
            continue
        errors_before = len(r.errors)
        model = read_model(r, model_id, value, path, gw)
        if model is not None:
            raw_models[model_id] = model
            if len(r.errors) == errors_before:
                readable.add(model_id)
    aliases = check_aliases(r, raw_models)
    model_ids = [m for m in declared if m.strip()]

    # Ports go to the models whose cmd uses ${PORT}, in sorted id order, as in
    # llama-swap: adding a model can shift the ports of models sorted after it.
    built: dict[str, ModelConfig] = {}
    next_port = gw["start_port"]
    for model_id in sorted(readable):
        errors_before = len(r.errors)
        config, took_port = expand_model(r, raw_models[model_id], global_entries, next_port)
        next_port += took_port
        if config is not None and len(r.errors) == errors_before:
            built[model_id] = config

    built = {m: built[m] for m in declared if m in built}  # definition order
    built = _by_id_aliases(r, built, declared, aliases)
    budget_key, budget = _memory_budget(root)
    gpus = read_gpus(r, root, model_ids, aliases)
    if gpus is not None:
        sizes, sources = check_gpu_sizes(r, gpus, built)
        gpus = attrs.evolve(gpus, sizes=sizes, size_sources=sources)
    if root.get("gpus") is not None and budget_key is not None:
        r.error(
            "gpus",
            "cannot be combined with swapcore.memory_budget: devices replace the one budget; "
            "remove one of them",
        )
    errors_before_routing = len(r.errors)
    routing = read_routing(
        r,
        root,
        model_ids,
        aliases,
        memory_budget=budget_key or ("gpus" if root.get("gpus") is not None else None),
    )
    if gpus is not None and routing.router == "memory":
        routing = attrs.evolve(routing, router="placement")
    if len(r.errors) == errors_before_routing:  # who may run together is known
        check_shared_upstreams(r, built, routing, budget, gpus)
    preload = _preload(r, root, model_ids, aliases)
    api_keys = _api_keys(r, root)
    peers = _peers(r, root, global_macros, model_ids, aliases)
    swapcore = _swapcore(r, root, None if base_dir is None else os.fspath(base_dir))
    check_residency(r, built, swapcore, declared)
    if root.get("models") in (None, {}) and not root.get("peers"):
        r.error("models", "at least one model is required")

    # A broken global macro is reported once per model that uses it: keep one.
    errors = list({str(exc): exc for exc in r.errors}.values())
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigError("\n".join(str(exc) for exc in errors))
    return GatewayConfig(
        models=built,
        routing=routing,
        peers=peers,
        api_keys=api_keys,
        preload=preload,
        swapcore=swapcore,
        gpus=gpus,
        warnings=r.warnings,
        source=source,
        **gw,
    )


def load_config(
    path_or_text: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    source: str | None = None,
    allow_unsupported: bool = False,
) -> GatewayConfig:
    """Load a llama-swap ``config.yaml`` from a file or from YAML text.

    A :class:`os.PathLike` is always a file. A ``str`` is YAML text when it
    contains a newline; otherwise it is a file path when such a file exists
    or when it ends in ``.yaml``/``.yml``, and YAML text otherwise.
    ``source`` overrides the name used in messages (default: the path, or
    ``<string>``). A relative ``swapcore.costs_file`` is relative to the
    file's directory (to the current directory for YAML text). Needs PyYAML
    (the ``config`` extra). ``allow_unsupported`` is as for
    :func:`parse_config`.

    Raises :class:`~swapcore.ConfigError` for an unreadable file, a YAML
    error (naming file, line and column), a document past the limits of
    :mod:`swapcore.config.limits`, an empty document, a root that is not a
    mapping, and every problem :func:`parse_config` finds.
    """
    text, name = read_source(path_or_text)
    base_dir = None if name == "<string>" else os.path.dirname(os.path.abspath(name))
    name = source or name
    data = parse_yaml(text, name)
    if data is None:
        raise ConfigError(f"{name}: the configuration is empty")
    return parse_config(
        data, source=name, env=env, base_dir=base_dir, allow_unsupported=allow_unsupported
    )
