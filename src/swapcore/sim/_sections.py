"""The ``planner`` and ``scheduler`` sections of a simulator configuration file.

Each section is a spec string (see :mod:`swapcore.sim.specs`) or a mapping
with ``use:`` and its settings; problems raise
:class:`~swapcore.ConfigError` naming the section and key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from swapcore.config._reader import require_mapping
from swapcore.errors import ConfigError
from swapcore.sim._values import _check_keys, _integer, _number
from swapcore.sim.profiles import ModelProfile
from swapcore.sim.schedulers import SimScheduler, fifo
from swapcore.sim.specs import (
    SCHEDULERS,
    PlannerRecipe,
    _check_scheduler_options,
    _inherited,
    _max_loaded,
    _memory,
    _placement,
    _titled,
    planner_from_spec,
    scheduler_from_spec,
)

__all__ = ["planner_section", "scheduler_section"]

# Scheduler options the sim config sets per model instead: option -> model key.
_SCHEDULER_CONFIG_KEYS = {"priority": "priority", "concurrency_limits": "concurrency_limit"}


def planner_section(
    raw: object,
    models: Mapping[str, ModelProfile],
    devices: Mapping[str, float] | None = None,
) -> PlannerRecipe:
    if raw is None:
        return _max_loaded(1)
    if isinstance(raw, str):
        if raw.split(":")[0].strip() in ("groups", "matrix", "config"):
            raise ConfigError(f"planner: {raw!r} needs settings: use a mapping with use: {raw}")
        try:
            return planner_from_spec(raw, models=models, devices=devices)
        except ConfigError as exc:
            raise ConfigError(f"planner: {exc}") from None
    section = require_mapping(raw, "planner")
    use = section.get("use")
    settings = {k: v for k, v in section.items() if k != "use"}
    if use == "max-loaded":
        _check_keys(settings, "planner", ("use", "n"))
        return _max_loaded(_integer(settings.get("n", 1), "planner.n", minimum=1))
    if use == "memory":
        _check_keys(settings, "planner", ("use", "budget", "evict_costs"))
        if "budget" not in settings:
            raise ConfigError("planner.budget: required for the memory planner")
        budget = settings["budget"]
        budget = math.inf if budget in ("inf", ".inf") else budget
        costs = settings.get("evict_costs")
        return _memory(
            models,
            _number(budget, "planner.budget"),
            None if costs is None else require_mapping(costs, "planner.evict_costs"),
            "planner",
        )
    if use == "placement":
        _check_keys(settings, "planner", ("use", "split", "evict_costs"))
        split = settings.get("split", True)
        if not isinstance(split, bool):
            raise ConfigError(f"planner.split: must be true or false, got {split!r}")
        costs = settings.get("evict_costs")
        return _placement(
            models,
            devices,
            None if costs is None else require_mapping(costs, "planner.evict_costs"),
            split,
            "planner",
        )
    if use == "groups":
        _check_keys(settings, "planner", ("use", "groups"))
        return _groups(require_mapping(settings.get("groups", {}), "planner.groups"), models)
    if use == "matrix":
        _check_keys(settings, "planner", ("use", "sets", "vars", "evict_costs"))
        return _matrix(settings, models)
    raise ConfigError(
        f"planner.use: must be one of max-loaded, memory, placement, groups, matrix, got {use!r}"
    )


def _groups(groups: Mapping[str, Any], models: Mapping[str, ModelProfile]) -> PlannerRecipe:
    from swapcore.planners.groups import GroupPlanner

    try:
        planner = GroupPlanner(groups, models=list(models))
    except ConfigError as exc:
        raise ConfigError(f"planner.groups: {exc}") from None
    unknown = [m for g in planner.groups.values() for m in g.members if m not in models]
    if unknown:
        raise ConfigError(f"planner.groups: {unknown[0]!r} is not a model")
    return PlannerRecipe("groups", lambda: GroupPlanner(groups, models=list(models)))


def _matrix(settings: Mapping[str, Any], models: Mapping[str, ModelProfile]) -> PlannerRecipe:
    from swapcore.matrix import MatrixSolver, compile_matrix
    from swapcore.planners.matrix import MatrixPlanner

    sets = require_mapping(settings.get("sets"), "planner.sets")
    variables = require_mapping(settings.get("vars", {}), "planner.vars")
    costs = require_mapping(settings.get("evict_costs", {}), "planner.evict_costs")
    try:
        program = compile_matrix(sets, vars=variables, models=list(models))
        MatrixSolver(program, costs)
    except ConfigError as exc:
        raise ConfigError(f"planner: {exc}") from None
    return PlannerRecipe("matrix", lambda: MatrixPlanner(MatrixSolver(program, costs)))


def scheduler_section(raw: object, defaults: dict[str, Any]) -> SimScheduler:
    if raw is None:
        return _titled(fifo(), defaults, ())  # FIFO takes every default
    if isinstance(raw, str):
        try:
            return scheduler_from_spec(raw, defaults=defaults)
        except ConfigError as exc:
            raise ConfigError(f"scheduler: {exc}") from None
    section = require_mapping(raw, "scheduler")
    use = section.get("use", "fifo")
    if not isinstance(use, str) or use not in SCHEDULERS:
        raise ConfigError(f"scheduler.use: must be one of {', '.join(SCHEDULERS)}, got {use!r}")
    recipe = SCHEDULERS[use]()
    options = {k: v for k, v in section.items() if k != "use"}
    for key, model_key in _SCHEDULER_CONFIG_KEYS.items():
        if key in options:
            raise ConfigError(f"scheduler.{key}: set it per model (models.<id>.{model_key})")
    _check_scheduler_options(recipe, options, "scheduler")
    if options.get("max_wait") is not None:
        options["max_wait"] = _number(options["max_wait"], "scheduler.max_wait", strict=True)
    defaults.update(options)
    return _titled(recipe, _inherited(recipe, defaults), ())
