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
"""

from __future__ import annotations

import inspect
import json
import math
import os
import types
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from swapcore.errors import ConfigError
from swapcore.planners.base import SwapPlanner
from swapcore.sim import traces
from swapcore.sim.engine import ModelProfile, SimScheduler, arrival_order, cost_aware, fifo

__all__ = [
    "DEFAULT_LOAD",
    "PLANNERS",
    "SCHEDULERS",
    "PlannerRecipe",
    "SimConfig",
    "generate_trace",
    "load_sim_config",
    "parse_options",
    "planner_from_spec",
    "scheduler_from_spec",
]

DEFAULT_LOAD = 10.0
"""Load seconds assumed for a llama-swap model without ``metadata.swapcore.load``."""

SCHEDULERS: Mapping[str, Callable[..., SimScheduler]] = types.MappingProxyType(
    {"fifo": fifo, "arrival": arrival_order, "cost-aware": cost_aware}
)
"""Scheduler names accepted by specs and configurations, with their recipe builders."""

PLANNERS = ("config", "max-loaded", "memory", "groups", "matrix")
"""Planner names: ``config`` is the configuration file's own planner."""

_MODEL_KEYS = ("load", "stop", "size", "priority", "concurrency_limit")
_TOP_KEYS = ("models", "planner", "scheduler")
_SCHEDULER_CONFIG_KEYS = ("priority", "concurrency_limits")


@attrs.frozen
class PlannerRecipe:
    """A named way to build a fresh planner: ``build()`` returns a new one each call.

    Stateful planners (least recently used) must not carry one run's state
    into the next, so simulations take a recipe, not an instance.
    """

    name: str
    build: Callable[[], SwapPlanner]

    def __call__(self) -> SwapPlanner:
        """Build a fresh planner."""
        return self.build()


@attrs.frozen(kw_only=True)
class SimConfig:
    """What to simulate: model profiles, a planner recipe and a scheduler recipe.

    ``scheduler_defaults`` holds the options every scheduler of a comparison
    inherits (priorities, concurrency limits, ``max_wait``); ``scheduler``
    is the configured one with them applied. ``aliases`` maps alias names
    to model ids (llama-swap configurations). ``notes`` lists assumptions
    made while loading (default load times), ``warnings`` ignored keys.
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


# --------------------------------------------------------------------------- values


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _number(value: object, where: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number) and (number > minimum if strict else number >= minimum):
            return number
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    raise ConfigError(f"{where}: must be a finite number {bound}, got {_show(value)}")


def _integer(value: object, where: str, *, minimum: int | None = None) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if minimum is None or value >= minimum:
            return value
        raise ConfigError(f"{where}: must be an integer >= {minimum}, got {value}")
    raise ConfigError(f"{where}: must be an integer, got {_show(value)}")


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) else _kind(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a mapping, got {_kind(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: keys must be strings, got {key!r}")
    return dict(value)


def _check_keys(mapping: Mapping[str, Any], where: str, allowed: Sequence[str]) -> None:
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown key (expected one of {', '.join(allowed)})")


# --------------------------------------------------------------------------- specs


def _scalar(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("none", "null", ""):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text.strip()


def parse_options(text: str, where: str) -> dict[str, str]:
    """Split ``k=v;k2=v2`` into raw strings; ConfigError naming ``where`` when malformed."""
    options: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{where}: expected key=value, got {part.strip()!r}")
        if key in options:
            raise ConfigError(f"{where}: option {key!r} given twice")
        options[key] = value.strip()
    return options


def _split_spec(spec: str, what: str) -> tuple[str, str, str]:
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    return name, rest, f"{what} {spec.strip()!r}"


def scheduler_from_spec(spec: str, *, defaults: Mapping[str, Any] | None = None) -> SimScheduler:
    """Build a scheduler recipe from ``NAME[:key=value;...]``.

    ``NAME`` is one of :data:`SCHEDULERS` (``fifo``, ``arrival``,
    ``cost-aware``). ``defaults`` (the configuration's priorities, limits,
    ``max_wait``) apply first, those the scheduler accepts; then the spec's
    options, whose values are numbers, ``none`` or words, e.g. ``fifo:max_wait=30`` or
    ``fifo:max_wait=none``. Each option must be a keyword the scheduler
    class accepts.
    """
    name, rest, where = _split_spec(spec, "scheduler")
    name = {"arrival-order": "arrival", "costaware": "cost-aware", "cost_aware": "cost-aware"}.get(
        name, name
    )
    builder = SCHEDULERS.get(name)
    if builder is None:
        raise ConfigError(f"{where}: unknown scheduler (valid: {', '.join(SCHEDULERS)})")
    options = {key: _scalar(value) for key, value in parse_options(rest, where).items()}
    recipe = builder()
    _check_scheduler_options(recipe, options, where)
    return _titled(recipe, {**_inherited(recipe, defaults), **options}, options)


def _titled(
    recipe: SimScheduler, merged: Mapping[str, Any], explicit: Collection[str]
) -> SimScheduler:
    """``recipe`` with ``merged`` options, labelled with the explicit ones and ``max_wait``."""
    # Inherited priorities and limits would crowd the label; max_wait changes the policy.
    shown = {k: v for k, v in merged.items() if k in explicit or k == "max_wait"}
    title = attrs.evolve(recipe, options=shown).label
    return attrs.evolve(recipe.with_options(**merged), title=title)


def _inherited(recipe: SimScheduler, defaults: Mapping[str, Any] | None) -> dict[str, Any]:
    """The defaults the scheduler accepts (arrival order has no priorities, no max_wait)."""
    return {key: value for key, value in (defaults or {}).items() if recipe.accepts(key)}


def _check_scheduler_options(recipe: SimScheduler, options: Mapping[str, Any], where: str) -> None:
    try:
        parameters = inspect.signature(recipe.factory).parameters
    except (TypeError, ValueError):  # pragma: no cover - classes always have one
        return
    accepted = [
        p
        for p, param in parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY and p not in ("clock", "load_times")
    ]
    for key in options:
        if key not in accepted:
            raise ConfigError(f"{where}: unknown option {key!r} (valid: {', '.join(accepted)})")


def planner_from_spec(
    spec: str, *, models: Mapping[str, ModelProfile], config: SimConfig | None = None
) -> PlannerRecipe:
    """Build a planner recipe from ``NAME[:key=value;...]``.

    ``config``: the configuration's own planner. ``max-loaded[:n=N]``
    (default 1): any N models at once, least recently used evicted.
    ``memory:budget=B``: :class:`~swapcore.MemoryBudgetPlanner` over the
    profiles' sizes (every model needs one). Group and matrix planners need
    their structure, so they come from a configuration file (``config``).
    """
    name, rest, where = _split_spec(spec, "planner")
    options = parse_options(rest, where)
    if name == "config":
        if config is None:
            raise ConfigError(f"{where}: no configuration to take the planner from")
        _no_options(options, where)
        return config.planner
    if name in ("max-loaded", "maxloaded", "lru"):
        _allow(options, where, ("n",))
        n = _integer(_scalar(options.get("n", "1")), f"{where}: n", minimum=1)
        return _max_loaded(n)
    if name == "memory":
        _allow(options, where, ("budget",))
        if "budget" not in options:
            raise ConfigError(f"{where}: the option budget=<size> is required")
        budget = _scalar(options["budget"])
        budget = math.inf if budget in ("inf", "infinity") else budget
        return _memory(models, _number(budget, f"{where}: budget"), None, where)
    if name in ("groups", "matrix"):
        raise ConfigError(
            f"{where}: {name} planners are defined in the configuration file; use config"
        )
    raise ConfigError(f"{where}: unknown planner (valid: {', '.join(PLANNERS)})")


def _allow(options: Mapping[str, str], where: str, allowed: Sequence[str]) -> None:
    for key in options:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown option {key!r} (valid: {', '.join(allowed)})")


def _no_options(options: Mapping[str, str], where: str) -> None:
    if options:
        raise ConfigError(f"{where}: takes no options")


def _max_loaded(n: int) -> PlannerRecipe:
    from swapcore.planners.lru import MaxLoadedPlanner

    MaxLoadedPlanner(n)  # validate now, not at the first run
    return PlannerRecipe(f"max-loaded(n={n})", lambda: MaxLoadedPlanner(n))


def _memory(
    models: Mapping[str, ModelProfile],
    budget: float,
    evict_costs: Mapping[str, int] | None,
    where: str,
) -> PlannerRecipe:
    from swapcore.planners.memory import MemoryBudgetPlanner

    missing = [model for model, profile in models.items() if profile.size is None]
    if missing:
        raise ConfigError(f"{where}: the memory planner needs a size for {', '.join(missing)}")
    sizes = {model: profile.size for model, profile in models.items() if profile.size is not None}
    try:
        MemoryBudgetPlanner(sizes, budget, evict_costs=evict_costs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    label = f"memory(budget={budget:g})"
    return PlannerRecipe(label, lambda: MemoryBudgetPlanner(sizes, budget, evict_costs=evict_costs))


# --------------------------------------------------------------------------- generators

_GENERATORS: dict[str, tuple[str, ...]] = {
    "round-robin": ("models", "rounds", "interval", "service"),
    "poisson": ("rates", "duration", "service", "seed", "exponential"),
    "bursts": ("models", "burst_size", "bursts", "gap", "spacing", "service", "seed"),
    "dominant": ("model", "rare", "duration", "rate", "rare_every", "service", "seed"),
}


def generate_trace(spec: str) -> list[traces.Arrival]:
    """Generate a trace from ``NAME:key=value;...`` (the CLI's ``--generate``).

    - ``round-robin:models=a,b,c;rounds=4;interval=1;service=1``
    - ``poisson:rates=a:0.5,b:0.1;duration=600;service=2;seed=0;exponential=false``
    - ``bursts:models=a,b,c;burst_size=5;bursts=10;gap=5;spacing=0.5;service=1;seed=0``
    - ``dominant:model=a;rare=b,c;duration=600;rate=1;rare_every=60;service=1;seed=0``

    The values shown for options other than the models are the defaults.
    See :mod:`swapcore.sim.traces` for what each generator does.
    """
    name, rest, where = _split_spec(spec, "generator")
    allowed = _GENERATORS.get(name)
    if allowed is None:
        raise ConfigError(f"{where}: unknown generator (valid: {', '.join(_GENERATORS)})")
    options = parse_options(rest, where)
    _allow(options, where, allowed)

    def number(key: str, default: float) -> float:
        value = _scalar(options[key]) if key in options else default
        return _number(value, f"{where}: {key}")

    def integer(key: str, default: int, minimum: int = 0) -> int:
        value = _scalar(options[key]) if key in options else default
        return _integer(value, f"{where}: {key}", minimum=minimum)

    def names(key: str) -> list[str]:
        if key not in options:
            raise ConfigError(f"{where}: the option {key}=... is required")
        found = [part.strip() for part in options[key].split(",") if part.strip()]
        if not found:
            raise ConfigError(f"{where}: {key} must name at least one model")
        return found

    try:
        if name == "round-robin":
            return traces.round_robin(
                names("models"),
                rounds=integer("rounds", 4),
                interval=number("interval", 1.0),
                service=number("service", 1.0),
            )
        if name == "poisson":
            rates: dict[str, float] = {}
            for part in names("rates"):
                model, sep, rate = part.partition(":")
                if not sep:
                    raise ConfigError(f"{where}: rates: expected model:rate, got {part!r}")
                rates[model.strip()] = _number(_scalar(rate), f"{where}: rates.{model.strip()}")
            exponential = _scalar(options.get("exponential", "false"))
            if not isinstance(exponential, bool):
                raise ConfigError(f"{where}: exponential must be true or false")
            return traces.poisson_mix(
                rates,
                duration=number("duration", 600.0),
                service=number("service", 2.0),
                seed=integer("seed", 0),
                exponential_service=exponential,
            )
        if name == "bursts":
            return traces.bursts(
                names("models"),
                burst_size=integer("burst_size", 5, 1),
                bursts=integer("bursts", 10),
                gap=number("gap", 5.0),
                spacing=number("spacing", 0.5),
                service=number("service", 1.0),
                seed=integer("seed", 0),
            )
        return traces.dominant(
            names("model")[0],
            names("rare"),
            duration=number("duration", 600.0),
            dominant_rate=number("rate", 1.0),
            rare_every=number("rare_every", 60.0),
            service=number("service", 1.0),
            seed=integer("seed", 0),
        )
    except ConfigError as exc:
        if str(exc).startswith(where):
            raise
        raise ConfigError(f"{where}: {exc}") from None


# --------------------------------------------------------------------------- files


def load_sim_config(
    path: str | os.PathLike[str],
    *,
    loads: Mapping[str, float] | None = None,
    default_load: float = DEFAULT_LOAD,
) -> SimConfig:
    """Read a simulator configuration or a llama-swap ``config.yaml``.

    A file whose models are mappings without ``cmd`` (or bare numbers) is a
    simulator configuration; any other is read by
    :func:`swapcore.config.load_config`. ``loads`` overrides load seconds
    per model (the CLI's ``--load``); ``default_load`` is assumed for
    llama-swap models without ``metadata.swapcore.load`` (listed in
    ``notes``). ``.json`` files are parsed as JSON, others as YAML (needs
    PyYAML). Raises :class:`~swapcore.ConfigError` naming the file and key.
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
        raise ConfigError(f"{name}: the configuration must be a mapping, got {_kind(data)}")
    _number(default_load, "default load")
    overrides = dict(loads or {})
    if _is_sim_config(data):
        config = _sim_config(data, name, overrides)
    else:
        config = _llama_swap_config(name, overrides, default_load)
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
        root = _mapping(data, "(root)")
        _check_keys(root, "(root)", _TOP_KEYS)
        if "models" not in root:
            raise ConfigError("models: required (a mapping of model -> profile)")
        raw_models = _mapping(root["models"], "models")
        if not raw_models:
            raise ConfigError("models: must name at least one model")
        models: dict[str, ModelProfile] = {}
        priority: dict[str, int] = {}
        limits: dict[str, int] = {}
        for model, raw in raw_models.items():
            where = f"models.{model}"
            fields = {"load": raw} if not isinstance(raw, Mapping) else _mapping(raw, where)
            _check_keys(fields, where, _MODEL_KEYS)
            if "load" not in fields:
                raise ConfigError(f"{where}.load: required (seconds to load)")
            load = _number(loads.get(model, fields["load"]), f"{where}.load")
            stop = _number(fields.get("stop", 0), f"{where}.stop")
            size = fields.get("size")
            models[model] = ModelProfile(
                load, stop, None if size is None else _number(size, f"{where}.size", strict=True)
            )
            if fields.get("priority") is not None:
                priority[model] = _integer(fields["priority"], f"{where}.priority")
            if fields.get("concurrency_limit") is not None:
                limits[model] = _integer(
                    fields["concurrency_limit"], f"{where}.concurrency_limit", minimum=1
                )
        planner = _planner_section(root.get("planner"), models)
        defaults: dict[str, Any] = {}
        if priority:
            defaults["priority"] = priority
        if limits:
            defaults["concurrency_limits"] = limits
        scheduler = _scheduler_section(root.get("scheduler"), defaults)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return SimConfig(
        source=source,
        kind="sim",
        models=models,
        planner=planner,
        scheduler=scheduler,
        scheduler_defaults=defaults,
    )


def _planner_section(raw: object, models: Mapping[str, ModelProfile]) -> PlannerRecipe:
    if raw is None:
        return _max_loaded(1)
    if isinstance(raw, str):
        if raw.split(":")[0].strip() in ("groups", "matrix", "config"):
            raise ConfigError(f"planner: {raw!r} needs settings: use a mapping with use: {raw}")
        try:
            return planner_from_spec(raw, models=models)
        except ConfigError as exc:
            raise ConfigError(f"planner: {exc}") from None
    section = _mapping(raw, "planner")
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
            None if costs is None else _mapping(costs, "planner.evict_costs"),
            "planner",
        )
    if use == "groups":
        _check_keys(settings, "planner", ("use", "groups"))
        return _groups(_mapping(settings.get("groups", {}), "planner.groups"), models)
    if use == "matrix":
        _check_keys(settings, "planner", ("use", "sets", "vars", "evict_costs"))
        return _matrix(settings, models)
    raise ConfigError(
        f"planner.use: must be one of max-loaded, memory, groups, matrix, got {use!r}"
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

    sets = _mapping(settings.get("sets"), "planner.sets")
    variables = _mapping(settings.get("vars", {}), "planner.vars")
    costs = _mapping(settings.get("evict_costs", {}), "planner.evict_costs")
    try:
        program = compile_matrix(sets, vars=variables, models=list(models))
        MatrixSolver(program, costs)
    except ConfigError as exc:
        raise ConfigError(f"planner: {exc}") from None
    return PlannerRecipe("matrix", lambda: MatrixPlanner(MatrixSolver(program, costs)))


def _scheduler_section(raw: object, defaults: dict[str, Any]) -> SimScheduler:
    if raw is None:
        return _titled(fifo(), defaults, ())  # FIFO takes every default
    if isinstance(raw, str):
        try:
            return scheduler_from_spec(raw, defaults=defaults)
        except ConfigError as exc:
            raise ConfigError(f"scheduler: {exc}") from None
    section = _mapping(raw, "scheduler")
    use = section.get("use", "fifo")
    if not isinstance(use, str) or use not in SCHEDULERS:
        raise ConfigError(f"scheduler.use: must be one of {', '.join(SCHEDULERS)}, got {use!r}")
    recipe = SCHEDULERS[use]()
    options = {k: v for k, v in section.items() if k != "use"}
    for key in _SCHEDULER_CONFIG_KEYS:
        if key in options:
            raise ConfigError(f"scheduler.{key}: set it per model (models.<id>.{key[:-1]})")
    _check_scheduler_options(recipe, options, "scheduler")
    if options.get("max_wait") is not None:
        options["max_wait"] = _number(options["max_wait"], "scheduler.max_wait", strict=True)
    defaults.update(options)
    return _titled(recipe, _inherited(recipe, defaults), ())


def _llama_swap_config(source: str, loads: Mapping[str, float], default_load: float) -> SimConfig:
    from swapcore.config import build_planner, load_config
    from swapcore.config.schema import DEFAULT_CONCURRENCY_LIMIT

    config = load_config(source)
    models: dict[str, ModelProfile] = {}
    assumed: list[str] = []
    for model_id, model in config.models.items():
        where = f"{source}: models.{model_id}.metadata.swapcore"
        raw = model.metadata.get("swapcore")
        fields = {} if raw is None else _mapping(raw, where)
        _check_keys(fields, where, ("load", "stop", "size"))
        if model_id in loads:
            load = _number(loads[model_id], f"--load {model_id}")
        elif "load" in fields:
            load = _number(fields["load"], f"{where}.load")
        else:
            load = default_load
            assumed.append(model_id)
        size = fields.get("size")
        models[model_id] = ModelProfile(
            load,
            _number(fields.get("stop", 0), f"{where}.stop"),
            None if size is None else _number(size, f"{where}.size", strict=True),
        )
    notes = []
    if assumed:
        notes.append(
            f"assumed load {default_load:g} s for {', '.join(assumed)} "
            "(set models.<id>.metadata.swapcore.load, or --load MODEL=SECONDS)"
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
    build_planner(config)  # validate once, now
    name = "matrix" if config.routing.router == "matrix" else "groups"
    return SimConfig(
        source=source,
        kind="llama-swap",
        models=models,
        planner=PlannerRecipe(name, lambda: build_planner(config)),
        scheduler=scheduler_from_spec(config.swapcore.scheduler, defaults=defaults),
        scheduler_defaults=defaults,
        aliases=dict(config.aliases),
        notes=tuple(notes),
        warnings=config.warnings,
    )
