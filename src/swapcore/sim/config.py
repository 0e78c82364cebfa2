"""Simulator configurations and the CLI's specs: what to simulate, read from files and strings.

:func:`load_sim_config` reads either a small simulator configuration (YAML
or JSON: model profiles, a planner, a scheduler) or a llama-swap
``config.yaml`` (whose models take their profiles from
``metadata.swapcore``), and returns a :class:`SimConfig`. The spec parsers
turn the CLI's short strings into objects: :func:`scheduler_from_spec`
(``fifo:max_wait=30``), :func:`planner_from_spec` (``max-loaded:n=2``) and
:func:`generate_trace` (``round-robin:models=a,b,c;rounds=4``). Every
problem raises :class:`~swapcore.ConfigError` naming the file and key, or
the spec and option. The format is described in ``docs/simulator.md``.

The spec parsers live in :mod:`swapcore.sim.specs` and
:mod:`swapcore.sim.generate`, and are importable from here as well.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from swapcore.config._reader import kind, require_mapping
from swapcore.errors import ConfigError
from swapcore.sim._devices import check_devices
from swapcore.sim._sections import planner_section, scheduler_section
from swapcore.sim._values import _check_keys, _integer, _number
from swapcore.sim.generate import generate_trace
from swapcore.sim.profiles import ModelProfile
from swapcore.sim.schedulers import SimScheduler

if TYPE_CHECKING:
    from swapcore.config import GatewayConfig
    from swapcore.planners.base import SwapPlanner
    from swapcore.sim.record import Recorded

from swapcore.sim.specs import (
    CLUSTER_POLICIES,
    PLANNERS,
    SCHEDULERS,
    PlannerRecipe,
    cluster_policy_from_spec,
    parse_options,
    planner_from_spec,
    scheduler_from_spec,
)

GIB = 1 << 30

__all__ = [
    "CLUSTER_POLICIES",
    "DEFAULT_LOAD",
    "PLANNERS",
    "SCHEDULERS",
    "PlannerRecipe",
    "SimConfig",
    "cluster_policy_from_spec",
    "generate_trace",
    "load_sim_config",
    "parse_options",
    "planner_from_spec",
    "scheduler_from_spec",
]

DEFAULT_LOAD = 10.0
"""Load seconds assumed for a llama-swap model without ``metadata.swapcore.load``."""
DEFAULT_WAKE = 1.0
"""Wake seconds assumed for a sleeping llama-swap model without ``swapCosts.wake``."""

_MODEL_KEYS = (
    "load",
    "stop",
    "size",
    "ttl",
    "priority",
    "concurrency_limit",
    "wake",
    "sleep",
    "sleep_level",
    "host_size",
)
_TOP_KEYS = ("models", "planner", "scheduler", "host_budget", "devices")


@attrs.frozen(kw_only=True)
class SimConfig:
    """What to simulate: model profiles, a planner recipe and a scheduler recipe.

    ``scheduler_defaults`` holds the options every scheduler of a comparison
    inherits (priorities, concurrency limits, ``max_wait``); ``scheduler``
    is the configured one with them applied. ``aliases`` maps alias names
    to model ids (llama-swap configurations). ``notes`` lists assumptions
    made while loading (default load times), ``warnings`` ignored keys.
    ``devices`` maps each device (GPU) to its budget in the unit of the
    models' ``size`` (None: the simulation has no devices).
    """

    source: str
    kind: str  # "sim" or "llama-swap"
    models: Mapping[str, ModelProfile]
    planner: PlannerRecipe
    scheduler: SimScheduler
    scheduler_defaults: Mapping[str, Any] = attrs.field(factory=dict)
    aliases: Mapping[str, str] = attrs.field(factory=dict)
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    host_budget: float | None = None
    devices: Mapping[str, float] | None = None

    def with_recorded(self, recorded: Recorded, keep: Iterable[str] = ()) -> SimConfig:
        """These profiles with the swap costs a recording measured (the real day's).

        Each model's measured load, stop, wake and sleep seconds replace its
        configured ones, except the load of the models in ``keep`` (given on
        the command line); a model measured waking or sleeping can sleep.
        """
        kept = set(keep)
        models = dict(self.models)
        used = []
        for model, profile in self.models.items():
            fields = recorded.profile_fields(model)
            if model in kept:
                fields.pop("load", None)
            if not fields:
                continue
            models[model] = attrs.evolve(profile, **fields)
            used.append(model)
        if not used:
            return self
        note = f"recorded swap costs used for {', '.join(used)}"
        return attrs.evolve(self, models=models, notes=(*self.notes, note))


# --------------------------------------------------------------------------- files


def load_sim_config(
    path: str | os.PathLike[str],
    *,
    loads: Mapping[str, float] | None = None,
    default_load: float = DEFAULT_LOAD,
    allow_unsupported: bool = False,
) -> SimConfig:
    """Read a simulator configuration or a llama-swap ``config.yaml``.

    A file whose models are mappings without ``cmd`` (or bare numbers) is a
    simulator configuration; any other is read by
    :func:`swapcore.config.load_config`. ``loads`` overrides load seconds
    per model (the CLI's ``--load``); ``default_load`` is assumed for
    llama-swap models without ``metadata.swapcore.load`` (listed in
    ``notes``). Idle TTLs come from a simulator model's ``ttl`` or a
    llama-swap model's ``ttl`` (``globalTTL`` when unset), as the gateway
    reads them. ``.json`` files are parsed as JSON, others as YAML (needs
    PyYAML). ``allow_unsupported`` reads a llama-swap configuration as
    ``swapcore serve --allow-unsupported`` does. Raises
    :class:`~swapcore.ConfigError` naming the file and key.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8-sig") as file:
            text = file.read()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text: {exc.reason}") from None
    data = _parse(text, name)
    if data is None:
        raise ConfigError(f"{name}: the configuration is empty")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{name}: the configuration must be a mapping, got {kind(data)}")
    _number(default_load, "default load")
    overrides = dict(loads or {})
    if _is_sim_config(data):
        config = _sim_config(data, name, overrides)
    else:
        config = _llama_swap_config(name, overrides, default_load, allow_unsupported)
    unknown = [model for model in overrides if model not in config.models]
    if unknown:
        raise ConfigError(f"--load: unknown model {unknown[0]!r} (not in {name})")
    return config


def _parse(text: str, name: str) -> Any:
    if name.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{name}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    from swapcore.config._yaml import parse_yaml

    return parse_yaml(text, name)


def _is_sim_config(data: Mapping[str, Any]) -> bool:
    models = data.get("models")
    if not isinstance(models, Mapping):
        return "planner" in data or "scheduler" in data
    return not any(isinstance(m, Mapping) and "cmd" in m for m in models.values())


def _sim_config(data: Mapping[str, Any], source: str, loads: Mapping[str, float]) -> SimConfig:
    try:
        root = require_mapping(data, "(root)")
        _check_keys(root, "(root)", _TOP_KEYS)
        if "models" not in root:
            raise ConfigError("models: required (a mapping of model -> profile)")
        raw_models = require_mapping(root["models"], "models")
        if not raw_models:
            raise ConfigError("models: must name at least one model")
        models: dict[str, ModelProfile] = {}
        priority: dict[str, int] = {}
        limits: dict[str, int] = {}
        for model, raw in raw_models.items():
            where = f"models.{model}"
            fields = {"load": raw} if not isinstance(raw, Mapping) else require_mapping(raw, where)
            _check_keys(fields, where, _MODEL_KEYS)
            if "load" not in fields:
                raise ConfigError(f"{where}.load: required (seconds to load)")
            load = _number(loads.get(model, fields["load"]), f"{where}.load")
            stop = _number(fields.get("stop", 0), f"{where}.stop")
            size = fields.get("size")
            ttl = fields.get("ttl")
            wake, host = fields.get("wake"), fields.get("host_size")
            models[model] = ModelProfile(
                load,
                stop,
                None if size is None else _number(size, f"{where}.size", strict=True),
                None if ttl is None else _number(ttl, f"{where}.ttl"),
                wake=None if wake is None else _number(wake, f"{where}.wake"),
                sleep=_number(fields.get("sleep", 0), f"{where}.sleep"),
                sleep_level=_integer(fields.get("sleep_level", 1), f"{where}.sleep_level"),
                host_size=None if host is None else _number(host, f"{where}.host_size"),
            )
            if fields.get("priority") is not None:
                priority[model] = _integer(fields["priority"], f"{where}.priority")
            if fields.get("concurrency_limit") is not None:
                limits[model] = _integer(
                    fields["concurrency_limit"], f"{where}.concurrency_limit", minimum=1
                )
        devices = None
        if root.get("devices") is not None:
            devices = check_devices(root["devices"], models)
        planner = planner_section(root.get("planner"), models, devices)
        defaults: dict[str, Any] = {}
        if priority:
            defaults["priority"] = priority
        if limits:
            defaults["concurrency_limits"] = limits
        scheduler = scheduler_section(root.get("scheduler"), defaults)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    budget = root.get("host_budget")
    return SimConfig(
        source=source,
        kind="sim",
        models=models,
        planner=planner,
        scheduler=scheduler,
        scheduler_defaults=defaults,
        host_budget=None if budget is None else _number(budget, f"{source}: host_budget"),
        devices=devices,
    )


def _llama_swap_config(
    source: str, loads: Mapping[str, float], default_load: float, allow_unsupported: bool = False
) -> SimConfig:
    from swapcore.config import build_planner, load_config, router_kwargs
    from swapcore.config.schema import DEFAULT_CONCURRENCY_LIMIT

    config = load_config(source, allow_unsupported=allow_unsupported)
    # The gateway's own idle_ttl: each model's ttl, globalTTL when unset, 0 = never.
    idle_ttl = router_kwargs(config)["idle_ttl"] or {}
    models: dict[str, ModelProfile] = {}
    assumed: list[str] = []
    assumed_wake: list[str] = []
    for model_id, model in config.models.items():
        where = f"{source}: models.{model_id}.metadata.swapcore"
        raw = model.metadata.get("swapcore")
        fields = {} if raw is None else require_mapping(raw, where)
        _check_keys(fields, where, ("load", "stop", "size"))
        costs = model.swap_costs
        if model_id in loads:
            load = _number(loads[model_id], f"--load {model_id}")
        elif "load" in fields:
            load = _number(fields["load"], f"{where}.load")
        elif "load" in costs:
            load = costs["load"]
        else:
            load = default_load
            assumed.append(model_id)
        size = fields.get("size")
        if size is None and config.gpus is not None and model_id in config.gpus.sizes:
            size = config.gpus.sizes[model_id] / GIB  # devices and sizes in GiB
        wake = None
        if model.sleep_level is not None:
            wake = costs.get("wake", DEFAULT_WAKE)
            if "wake" not in costs:
                assumed_wake.append(model_id)
        models[model_id] = ModelProfile(
            load,
            _number(fields.get("stop", costs.get("stop", 0)), f"{where}.stop"),
            None if size is None else _number(size, f"{where}.size", strict=True),
            idle_ttl.get(model_id),
            wake=wake,
            sleep=costs.get("sleep", 0.0),
            sleep_level=model.sleep_level or 1,
            host_size=model.host_memory,
        )
    notes = []
    if assumed:
        notes.append(
            f"assumed load {default_load:g} s for {', '.join(assumed)} "
            "(set models.<id>.swapCosts.load, or --load MODEL=SECONDS)"
        )
    if assumed_wake:
        notes.append(
            f"assumed wake {DEFAULT_WAKE:g} s for {', '.join(assumed_wake)} "
            "(set models.<id>.swapCosts.wake, or replay a recorded trace)"
        )
    limits = {
        m.id: m.concurrency_limit for m in config.models.values() if m.concurrency_limit is not None
    }
    defaults: dict[str, Any] = {}
    if config.swapcore.default_concurrency_limit != DEFAULT_CONCURRENCY_LIMIT:
        defaults["default_concurrency_limit"] = config.swapcore.default_concurrency_limit
    if config.routing.priority:
        defaults["priority"] = dict(config.routing.priority)
    if limits:
        defaults["concurrency_limits"] = limits
    if config.swapcore.max_wait is not None:
        defaults["max_wait"] = config.swapcore.max_wait
    devices: dict[str, float] | None = None
    if config.gpus is not None:
        gpus = config.gpus
        if gpus.auto:
            raise ConfigError(
                f"{source}: gpus.devices: auto is read from the GPUs when the gateway starts; "
                "to simulate, give each device and its budget"
            )
        devices = {d: budget / GIB for d, budget in gpus.devices.items()}
        recipe = PlannerRecipe("placement", functools.partial(_gpu_planner, config, models))
        recipe.build()  # validate once, now
    else:
        build_planner(config)  # validate once, now
        name = {"matrix": "matrix", "memory": "memory"}.get(config.routing.router, "groups")
        recipe = PlannerRecipe(name, lambda: build_planner(config))
    return SimConfig(
        source=source,
        kind="llama-swap",
        models=models,
        planner=recipe,
        scheduler=scheduler_from_spec(config.swapcore.scheduler, defaults=defaults),
        scheduler_defaults=defaults,
        aliases=dict(config.aliases),
        notes=tuple(notes),
        warnings=config.warnings,
        host_budget=config.swapcore.host_memory_budget,
        devices=devices,
    )


def _gpu_planner(config: GatewayConfig, models: Mapping[str, ModelProfile]) -> SwapPlanner:
    """The gateway's placement planner over ``gpus:``, in GiB as the simulated devices are."""
    from swapcore.config import build_sleep_rules
    from swapcore.planners.placement import PlacementPlanner

    gpus = config.gpus
    assert gpus is not None  # only called for a gpus: section
    planner = PlacementPlanner(
        {m: profile.size or 0.0 for m, profile in models.items()},
        {d: budget / GIB for d, budget in gpus.devices.items()},
        split=gpus.split,
        evict_costs=dict(gpus.evict_costs),
    )
    planner.sleep_rules = build_sleep_rules(config)
    return planner
