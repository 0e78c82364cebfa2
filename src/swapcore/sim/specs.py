"""The CLI's scheduler and planner specs: short strings that name a recipe and its options.

:func:`scheduler_from_spec` turns ``fifo:max_wait=30`` into a
:class:`~swapcore.sim.schedulers.SimScheduler`, :func:`planner_from_spec`
turns ``max-loaded:n=2`` into a :class:`PlannerRecipe`,
:func:`cluster_policy_from_spec` turns ``affinity:spill=4`` into a
:class:`~swapcore.cluster.ClusterPolicy`; :func:`parse_options`
splits the ``key=value;...`` part. Every problem raises
:class:`~swapcore.ConfigError` naming the spec and the option. All of these
are importable from :mod:`swapcore.sim.config` as well.
"""

from __future__ import annotations

import inspect
import math
import types
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from swapcore.errors import ConfigError
from swapcore.planners.base import SwapPlanner
from swapcore.sim._values import _integer, _number
from swapcore.sim.profiles import ModelProfile
from swapcore.sim.schedulers import SimScheduler, arrival_order, cost_aware, fifo

if TYPE_CHECKING:
    from swapcore.cluster import ClusterPolicy
    from swapcore.sim.config import SimConfig

__all__ = [
    "CLUSTER_POLICIES",
    "PLANNERS",
    "SCHEDULERS",
    "PlannerRecipe",
    "cluster_policy_from_spec",
    "parse_options",
    "planner_from_spec",
    "scheduler_from_spec",
]

SCHEDULERS: Mapping[str, Callable[..., SimScheduler]] = types.MappingProxyType(
    {"fifo": fifo, "arrival": arrival_order, "cost-aware": cost_aware}
)
"""Scheduler names accepted by specs and configurations, with their recipe builders."""

PLANNERS = ("config", "max-loaded", "memory", "placement", "groups", "matrix")
"""Planner names: ``config`` is the configuration file's own planner."""

CLUSTER_POLICIES = ("affinity",)
"""Cluster policy names accepted by :func:`cluster_policy_from_spec`."""


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
    spec: str,
    *,
    models: Mapping[str, ModelProfile],
    config: SimConfig | None = None,
    devices: Mapping[str, float] | None = None,
) -> PlannerRecipe:
    """Build a planner recipe from ``NAME[:key=value;...]``.

    ``config``: the configuration's own planner. ``max-loaded[:n=N]``
    (default 1): any N models at once, least recently used evicted.
    ``memory:budget=B``: :class:`~swapcore.MemoryBudgetPlanner` over the
    profiles' sizes (every model needs one). ``placement[:split=false]``:
    :class:`~swapcore.PlacementPlanner` over the profiles' sizes and
    ``devices`` (device -> budget; default: ``config.devices``); ``split``
    false keeps every model on one device. Group and matrix planners need
    their structure, so they come from a configuration file (``config``).
    """
    name, rest, where = _split_spec(spec, "planner")
    options = parse_options(rest, where)
    if name == "placement":
        _allow(options, where, ("split",))
        split = _scalar(options.get("split", "true"))
        if not isinstance(split, bool):
            raise ConfigError(f"{where}: split must be true or false, got {options['split']!r}")
        if devices is None and config is not None:
            devices = config.devices
        return _placement(models, devices, None, split, where)
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


def cluster_policy_from_spec(spec: str) -> ClusterPolicy:
    """Build a cluster policy from ``NAME[:key=value;...]``.

    ``affinity[:spill=N]``: :class:`~swapcore.cluster.AffinityPolicy`, with
    ``spill_queue=N`` when ``spill`` is given (a whole number >= 1, or
    ``none``: never load a second copy).
    """
    from swapcore.cluster import AffinityPolicy

    name, rest, where = _split_spec(spec, "cluster policy")
    options = parse_options(rest, where)
    if name == "affinity":
        _allow(options, where, ("spill",))
        spill = _scalar(options.get("spill", "none"))
        if spill is not None:
            spill = _integer(spill, f"{where}: spill", minimum=1)
        return AffinityPolicy(spill_queue=spill)
    raise ConfigError(f"{where}: unknown cluster policy (valid: {', '.join(CLUSTER_POLICIES)})")


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


def _placement(
    models: Mapping[str, ModelProfile],
    devices: Mapping[str, float] | None,
    evict_costs: Mapping[str, int] | None,
    split: bool,
    where: str,
) -> PlannerRecipe:
    from swapcore.planners.placement import PlacementPlanner

    if not devices:
        raise ConfigError(
            f"{where}: the placement planner needs devices "
            "(a top-level devices: mapping of device -> budget)"
        )
    missing = [model for model, profile in models.items() if profile.size is None]
    if missing:
        raise ConfigError(f"{where}: the placement planner needs a size for {', '.join(missing)}")
    sizes = {model: profile.size for model, profile in models.items() if profile.size is not None}
    budgets = dict(devices)
    try:
        PlacementPlanner(sizes, budgets, evict_costs=evict_costs, split=split)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    label = "placement" if split else "placement(split=false)"
    return PlannerRecipe(
        label, lambda: PlacementPlanner(sizes, budgets, evict_costs=evict_costs, split=split)
    )
