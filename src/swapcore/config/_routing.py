"""Reading the routing section: groups or matrix, and the FIFO scheduler settings.

Private to :mod:`swapcore.config`. Accepts llama-swap's ``routing.router``
block (``use: group|matrix`` with ``settings.groups``/``settings.matrix``)
and the legacy top-level ``groups``/``matrix`` keys, never both (as
llama-swap). Matrix expressions are compiled here so DSL errors surface at
load time with their key path. ``swapcore.memory_budget`` selects the
memory router instead, and then neither groups nor a matrix may be given.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from swapcore.config._reader import Reader, kind
from swapcore.config.macros import join_path
from swapcore.config.schema import MatrixConfig, RoutingConfig
from swapcore.errors import ConfigError, MatrixSyntaxError
from swapcore.planners.groups import Group

__all__ = ["KNOWN_SCHEDULERS", "SWAPCORE_SCHEDULERS", "read_routing"]

KNOWN_SCHEDULERS = frozenset({"fifo"})
"""Values accepted for llama-swap's ``routing.scheduler.use``."""

SWAPCORE_SCHEDULERS = frozenset({"fifo", "cost-aware"})
"""Values accepted for ``swapcore.scheduler``: llama-swap's FIFO, or swapcore's cost-aware."""

_GROUP = frozenset({"members", "swap", "exclusive", "persistent"})
_MATRIX = frozenset({"vars", "evict_costs", "sets"})
_VAR_NAME = re.compile(r"[a-zA-Z0-9.-]{1,32}")


def _not_a_model(name: str, aliases: Mapping[str, str]) -> str:
    if name in aliases:
        return f"'{name}' is an alias of '{aliases[name]}'; use the model id"
    return f"'{name}' is not a model"


def _not_a_model_ignored(name: str, aliases: Mapping[str, str]) -> str:
    if name in aliases:
        return f"'{name}' is an alias of '{aliases[name]}', not a model id, ignored"
    return f"'{name}' is not a defined model, ignored"


def _groups(
    r: Reader, value: object, path: str, models: Collection[str], aliases: Mapping[str, str]
) -> dict[str, Group]:
    groups: dict[str, Group] = {}
    group_of: dict[str, str] = {}
    for name, raw_group in (r.mapping(value, path) or {}).items():
        gpath = join_path(path, name)
        if not name:
            r.error(path, "group names must not be empty")
            continue
        raw = r.mapping(raw_group, gpath)
        if raw is None:
            if raw_group is None:
                r.error(gpath, "must be a mapping with members")
            continue
        r.keys(raw, gpath, _GROUP)
        members: list[str] = []
        for index, member in enumerate(r.string_list(raw.get("members"), f"{gpath}.members")):
            where = f"{gpath}.members[{index}]"
            if member not in models:
                # llama-swap accepts such members (its own config.example.yaml
                # has them) and they never match a model: ignore, loudly.
                r.warn(where, _not_a_model_ignored(member, aliases))
            elif member in members:
                r.error(where, f"model '{member}' is listed twice")
            elif group_of.setdefault(member, name) != name:
                r.error(
                    where,
                    f"model '{member}' is already in group '{group_of[member]}'; "
                    "a model can be in only one group",
                )
            else:
                members.append(member)
        groups[name] = Group(
            tuple(members),
            swap=r.boolean(raw.get("swap"), f"{gpath}.swap", True),
            exclusive=r.boolean(raw.get("exclusive"), f"{gpath}.exclusive", True),
            persistent=r.boolean(raw.get("persistent"), f"{gpath}.persistent", False),
        )
    return groups


def _matrix(
    r: Reader, value: object, path: str, models: Collection[str], aliases: Mapping[str, str]
) -> MatrixConfig | None:
    raw = r.mapping(value, path)
    if raw is None:
        if value is None:
            r.error(path, "must be a mapping with sets")
        return None
    errors_before = len(r.errors)
    r.keys(raw, path, _MATRIX)

    variables: dict[str, str] = {}
    for name, target in (r.mapping(raw.get("vars"), f"{path}.vars") or {}).items():
        where = f"{path}.vars.{name}"
        if not _VAR_NAME.fullmatch(name):
            r.error(where, "var names are 1-32 letters, digits, '-' or '.'")
        elif not isinstance(target, str):
            r.error(where, f"must be a model id, got {kind(target)}")
        elif target not in models:
            r.error(where, _not_a_model(target, aliases))
        else:
            variables[name] = target

    costs: dict[str, int] = {}
    for name, cost in (r.mapping(raw.get("evict_costs"), f"{path}.evict_costs") or {}).items():
        where = f"{path}.evict_costs.{name}"
        if name not in variables and name not in models:
            r.error(where, f"unknown var or model '{name}'")
        elif isinstance(cost, bool) or not isinstance(cost, int) or cost <= 0:
            r.error(where, f"must be a positive integer, got {cost!r}")
        else:
            costs[name] = cost

    sets: list[tuple[str, str]] = []
    raw_sets = r.mapping(raw.get("sets"), f"{path}.sets")
    if raw_sets is not None and not raw_sets and raw.get("sets") is not None:
        r.error(f"{path}.sets", "must define at least one set")
    elif raw_sets is None and raw.get("sets") is None:
        r.error(f"{path}.sets", "required: the matrix must define at least one set")
    for name, expression in (raw_sets or {}).items():
        if not isinstance(expression, str):
            r.error(f"{path}.sets.{name}", f"must be a DSL expression, got {kind(expression)}")
        else:
            sets.append((name, expression))

    if len(r.errors) == errors_before:
        _compile_check(r, path, sets, variables, models)
    return MatrixConfig(sets=tuple(sets), vars=variables, evict_costs=costs)


def _compile_check(
    r: Reader,
    path: str,
    sets: list[tuple[str, str]],
    variables: Mapping[str, str],
    models: Collection[str],
) -> None:
    """Compile the sets now so DSL errors surface at load time, with their key path."""
    try:
        from swapcore.matrix import compile_matrix
    except ImportError:  # pragma: no cover - the matrix package is part of swapcore
        return
    try:
        compile_matrix(dict(sets), vars=variables, models=list(models))
    except MatrixSyntaxError as exc:
        message = str(exc).removeprefix(f"set {exc.set_name!r}: ")
        r.errors.append(
            MatrixSyntaxError(
                f"{path}.sets.{exc.set_name}: {message}",
                set_name=exc.set_name,
                position=exc.position,
            )
        )
    except ConfigError as exc:
        r.error(path, str(exc))


def _memory_routing(
    r: Reader,
    root: Mapping[str, Any],
    router: Mapping[str, Any],
    settings: Mapping[str, Any],
    budget_key: str,
) -> None:
    """Record an error for each groups or matrix key given beside the memory budget."""
    given = [
        key
        for key, value in (
            ("groups", root.get("groups")),
            ("matrix", root.get("matrix")),
            ("routing.router.use", router.get("use")),
            ("routing.router.settings.groups", settings.get("groups")),
            ("routing.router.settings.matrix", settings.get("matrix")),
        )
        if value is not None and value != {}
    ]
    for key in given:
        r.error(
            budget_key,
            f"cannot be combined with {key}: memory budgets replace groups and the matrix; "
            f"remove one of them",
        )


def read_routing(
    r: Reader,
    root: Mapping[str, Any],
    models: Collection[str],
    aliases: Mapping[str, str],
    *,
    memory_budget: str | None = None,
) -> RoutingConfig:
    """The routing section; ``memory_budget`` names the budget's key when one is set."""
    routing = r.mapping(root.get("routing"), "routing") or {}
    r.keys(routing, "routing", ("router", "scheduler"))
    router = r.mapping(routing.get("router"), "routing.router") or {}
    r.keys(router, "routing.router", ("use", "settings"))
    settings = r.mapping(router.get("settings"), "routing.router.settings") or {}
    r.keys(settings, "routing.router.settings", ("groups", "matrix"))
    scheduler = r.mapping(routing.get("scheduler"), "routing.scheduler") or {}
    r.keys(scheduler, "routing.scheduler", ("use", "settings"))
    if memory_budget is not None:
        _memory_routing(r, root, router, settings, memory_budget)
        return RoutingConfig(
            router="memory",
            scheduler=_scheduler_use(r, scheduler),
            priority=_priority(r, scheduler, models, aliases),
        )

    # As llama-swap: the legacy keys and routing.router are mutually exclusive.
    legacy = bool(root.get("groups")) or root.get("matrix") is not None
    modern = (
        router.get("use") is not None
        or bool(settings.get("groups"))
        or settings.get("matrix") is not None
    )
    if legacy and modern:
        r.error(
            "routing.router",
            "cannot be combined with the legacy top-level groups/matrix keys; "
            "move them into routing.router.settings",
        )
    groups: dict[str, Group] = {}
    matrix: MatrixConfig | None = None
    kind = "group"
    if legacy and not modern:
        if root.get("groups") and root.get("matrix") is not None:
            r.error("matrix", "cannot be used together with groups; choose one")
        elif root.get("matrix") is not None:
            kind, matrix = "matrix", _matrix(r, root["matrix"], "matrix", models, aliases)
        else:
            groups = _groups(r, root.get("groups"), "groups", models, aliases)
    elif not legacy:
        kind = r.string(router.get("use"), "routing.router.use", "group")
        base = "routing.router.settings"
        if kind == "matrix":
            matrix = _matrix(r, settings.get("matrix"), f"{base}.matrix", models, aliases)
            if settings.get("groups"):
                r.warn(f"{base}.groups", "ignored: routing.router.use is 'matrix'")
        elif kind == "group":
            groups = _groups(r, settings.get("groups"), f"{base}.groups", models, aliases)
            if settings.get("matrix") is not None:
                r.warn(f"{base}.matrix", "ignored: routing.router.use is 'group'")
        else:
            r.error("routing.router.use", f"unknown router '{kind}' (valid: group, matrix)")
            kind = "group"
    if kind == "matrix" and matrix is None:
        kind = "group"  # the error is recorded; keep the result constructible

    return RoutingConfig(
        router="matrix" if kind == "matrix" else "group",
        groups=groups,
        matrix=matrix,
        scheduler=_scheduler_use(r, scheduler),
        priority=_priority(r, scheduler, models, aliases),
    )


def _scheduler_use(r: Reader, scheduler: Mapping[str, Any]) -> str:
    use = r.string(scheduler.get("use"), "routing.scheduler.use", "fifo")
    if use not in KNOWN_SCHEDULERS:
        r.error("routing.scheduler.use", f"unknown scheduler '{use}' (valid: fifo)")
        use = "fifo"
    return use


def _priority(
    r: Reader, scheduler: Mapping[str, Any], models: Collection[str], aliases: Mapping[str, str]
) -> dict[str, int]:
    base = "routing.scheduler.settings"
    settings = r.mapping(scheduler.get("settings"), base) or {}
    r.keys(settings, base, ("fifo",))
    fifo = r.mapping(settings.get("fifo"), f"{base}.fifo") or {}
    r.keys(fifo, f"{base}.fifo", ("priority",))
    path = f"{base}.fifo.priority"
    result: dict[str, int] = {}
    for name, value in (r.mapping(fifo.get("priority"), path) or {}).items():
        where = join_path(path, name)
        model = name if name in models else aliases.get(name)
        if model is None:
            r.error(where, f"unknown model '{name}'")
        elif isinstance(value, bool) or not isinstance(value, int):
            r.error(where, f"must be an integer, got {kind(value)}")
        elif model in result:
            r.error(where, f"model '{model}' already has a priority")
        else:
            result[model] = value
    return result
