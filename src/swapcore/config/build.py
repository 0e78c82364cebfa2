"""Turn a :class:`GatewayConfig` into the objects a gateway runs.

:func:`build_router` wires everything; the smaller builders let an embedding
gateway take only the parts it wants (say, the planner with its own
processes). Nothing here starts a process or a task: the router starts
processes on demand once it runs, and the caller preloads
``config.preload`` (``await router.preload(*config.preload)``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from swapcore.config.schema import GatewayConfig, GpuConfig, ModelConfig, format_size
from swapcore.costs import SwapCosts
from swapcore.errors import ConfigError
from swapcore.planners.base import SwapPlanner
from swapcore.planners.groups import GroupPlanner
from swapcore.planners.residency import SleepRules
from swapcore.scheduling.effects import SchedulerFactory

if TYPE_CHECKING:
    from swapcore.adapters.subprocess import SubprocessProcess
    from swapcore.memory import GPUProbe
    from swapcore.router import BaseRouter

__all__ = [
    "build_costs",
    "build_planner",
    "build_processes",
    "build_router",
    "build_scheduler_factory",
    "build_sleep_rules",
    "device_env",
    "gpu_budgets",
    "process_key",
    "router_kwargs",
]


def build_planner(
    config: GatewayConfig, *, costs: SwapCosts | None = None, probe: GPUProbe | None = None
) -> SwapPlanner:
    """Return the eviction policy the configuration selects, with its sleep rules.

    ``group`` routing gives a :class:`~swapcore.GroupPlanner` over the
    configured groups (every other model joins ``"(default)"``); ``matrix``
    routing gives a :class:`~swapcore.planners.matrix.MatrixPlanner` over the
    compiled sets with the configured ``evict_costs``; ``memory`` routing
    (``swapcore.memory_budget``) gives a
    :class:`~swapcore.planners.memory.MemoryBudgetPlanner` over the models'
    ``memory``, in bytes; ``placement`` routing (the ``gpus:`` section)
    gives a :class:`~swapcore.planners.placement.PlacementPlanner` over the
    devices (:func:`gpu_budgets`, read with ``probe`` for ``devices: auto``)
    and the models' sizes, whose measurements in ``costs`` replace the
    configured or estimated sizes. When any model has ``sleepMode``, the
    planner's ``sleep_rules`` are :func:`build_sleep_rules`'s.
    """
    planner: SwapPlanner
    matrix = config.routing.matrix
    budget = config.swapcore.memory_budget
    gpus = config.gpus
    if config.routing.router == "placement" and gpus is not None:
        from swapcore.planners.placement import PlacementPlanner

        planner = PlacementPlanner(
            dict(gpus.sizes),
            gpu_budgets(gpus, probe),
            split=gpus.split,
            evict_costs=dict(gpus.evict_costs),
            costs=costs,
            show_size=lambda size: format_size(round(size)),
        )
    elif config.routing.router == "memory" and budget is not None:
        from swapcore.planners.memory import MemoryBudgetPlanner

        sizes = {m.id: m.memory for m in config.models.values() if m.memory is not None}
        planner = MemoryBudgetPlanner(sizes, budget)
    elif config.routing.router == "matrix" and matrix is not None:
        from swapcore.matrix import MatrixSolver, compile_matrix
        from swapcore.planners.matrix import MatrixPlanner

        program = compile_matrix(matrix.sets, vars=matrix.vars, models=list(config.models))
        planner = MatrixPlanner(MatrixSolver(program, matrix.evict_costs))
    else:
        planner = GroupPlanner(config.routing.groups, models=config.models)
    rules = build_sleep_rules(config)
    if rules is not None:
        planner.sleep_rules = rules
    return planner


def gpu_budgets(gpus: GpuConfig, probe: GPUProbe | None = None) -> dict[str, int]:
    """Each device's budget in bytes: as declared, or for ``devices: auto`` read from the GPUs.

    ``auto`` takes each device the probe lists (default: NVML) by its index,
    with its total memory less ``reserve``. Raises
    :class:`~swapcore.ConfigError` when the GPUs cannot be read, or when a
    model could not fit on them.
    """
    if not gpus.auto:
        return dict(gpus.devices)
    if probe is None:
        from swapcore.memory import NvmlProbe

        probe, reason = NvmlProbe.open()
        if probe is None:
            raise ConfigError(f"gpus.devices: auto needs to read the GPUs, but {reason}")
    budgets: dict[str, int] = {}
    for device in probe.devices():
        budget = device.total_bytes - gpus.reserve
        if budget <= 0:
            raise ConfigError(
                f"gpus.reserve: {format_size(gpus.reserve)} leaves nothing of GPU "
                f"{device.index} ({device.name}, {format_size(device.total_bytes)})"
            )
        budgets[str(device.index)] = budget
    if not budgets:
        raise ConfigError("gpus.devices: auto found no GPU")
    room = sum(budgets.values()) if gpus.split else max(budgets.values())
    for model, size in gpus.sizes.items():
        if size > room:
            held = "all GPUs together" if gpus.split else "the largest GPU"
            raise ConfigError(
                f"models.{model}.memory: {format_size(size)} is more than {held} can hold "
                f"({format_size(room)} after gpus.reserve): the model could never load"
            )
    return budgets


def device_env(planner: SwapPlanner, model: str, variable: str) -> dict[str, str]:
    """``{variable: "0,1"}``: the devices ``planner`` placed ``model`` on ({} if none)."""
    placement_of = getattr(planner, "placement_of", None)
    if placement_of is None:
        return {}
    devices: Mapping[str, float] = placement_of(model)
    return {variable: ",".join(devices)} if devices else {}


def build_sleep_rules(config: GatewayConfig) -> SleepRules | None:
    """Return which models sleep instead of stopping, or None when none does.

    ``levels`` holds each model with ``sleepMode`` and its level,
    ``host_memory`` each sleeping model's ``hostMemory`` in bytes (a model
    without it counts as holding none), and ``host_budget`` is
    ``swapcore.host_memory_budget`` (None: unbounded). An evicted model then
    sleeps when its host memory fits the budget beside the models already
    asleep, and is stopped otherwise; a sleeper is never displaced.
    """
    levels = {m.id: m.sleep_level for m in config.models.values() if m.sleep_level is not None}
    if not levels:
        return None
    host_memory = {
        m.id: m.host_memory
        for m in config.models.values()
        if m.id in levels and m.host_memory is not None
    }
    return SleepRules(
        levels=levels,
        host_memory=host_memory,
        host_budget=config.swapcore.host_memory_budget,
    )


def build_costs(config: GatewayConfig) -> SwapCosts:
    """Return a :class:`~swapcore.costs.SwapCosts` with each model's ``swapCosts`` as priors.

    It holds no measurement: loading ``swapcore.costs_file`` is the caller's
    choice (``costs.load(config.swapcore.costs_file)``).
    """
    return SwapCosts({m.id: dict(m.swap_costs) for m in config.models.values() if m.swap_costs})


def build_processes(
    config: GatewayConfig,
    *,
    planner: SwapPlanner | Callable[[], SwapPlanner] | None = None,
    **process_kwargs: Any,
) -> dict[str, SubprocessProcess]:
    """Return one :class:`~swapcore.adapters.subprocess.SubprocessProcess` per model.

    Each gets the model's expanded ``cmd``, ``cmdStop``, ``proxy``,
    ``checkEndpoint``, ``env``, assigned port and ``sleepMode`` (its level
    and endpoints). With a ``gpus:`` section and the placement ``planner``
    (or a function returning the planner in use, read at each start, for a
    router whose planner may be replaced), each start also gets ``gpus.env``
    (``CUDA_VISIBLE_DEVICES``) set to the devices the planner chose for it
    (:func:`device_env`). ``process_kwargs`` (for example
    ``health_interval`` or ``on_state_change``) go to every process.
    """
    gpus = config.gpus
    if gpus is not None and gpus.env and planner is not None and "start_env" not in process_kwargs:
        variable = gpus.env
        current = planner if callable(planner) else functools.partial(_same, planner)
        return {
            model.id: _process(
                model,
                start_env=functools.partial(_device_env_now, current, model.id, variable),
                **process_kwargs,
            )
            for model in config.models.values()
        }
    return {model.id: _process(model, **process_kwargs) for model in config.models.values()}


def _same(planner: SwapPlanner) -> SwapPlanner:
    return planner


def _device_env_now(
    planner: Callable[[], SwapPlanner], model: str, variable: str
) -> dict[str, str]:
    return device_env(planner(), model, variable)


def process_key(config: GatewayConfig, model: str) -> tuple[object, ...]:
    """What defines ``model``'s process: two configurations with equal keys run the same server.

    The expanded ``cmd``, ``cmdStop``, ``proxy``, ``checkEndpoint``,
    ``env``, port, ``sleepMode`` (level and endpoints) and ``gpus.env``.
    """
    entry = config.models[model]
    return (
        entry.cmd,
        entry.cmd_stop,
        entry.proxy,
        entry.check_endpoint,
        tuple(sorted(dict(entry.env).items())),
        entry.port,
        entry.sleep_level,
        entry.sleep_endpoint,
        entry.wake_endpoint,
        config.gpus.env if config.gpus is not None else None,
    )


def _process(model: ModelConfig, **process_kwargs: Any) -> SubprocessProcess:
    from swapcore.adapters.subprocess import SubprocessProcess

    return SubprocessProcess(
        name=model.id,
        cmd=model.cmd,
        port=model.port,
        proxy=model.proxy,
        check_endpoint=model.check_endpoint,
        env=dict(model.env),
        cmd_stop=model.cmd_stop or None,
        sleep_level=model.sleep_level,
        sleep_endpoint=model.sleep_endpoint,
        wake_endpoint=model.wake_endpoint,
        **process_kwargs,
    )


def build_scheduler_factory(
    config: GatewayConfig, costs: SwapCosts | None = None
) -> SchedulerFactory:
    """Return the scheduler factory: ``swapcore.scheduler`` with the configured settings.

    ``fifo`` (the default) is :class:`~swapcore.FIFOScheduler`;
    ``cost-aware`` is :class:`~swapcore.CostAwareScheduler` pricing swaps
    with ``costs`` (the router's learned costs; default: the configured
    priors). Priorities come from ``routing.scheduler.settings.fifo.priority``,
    concurrency limits from each model's ``concurrencyLimit``, the default
    limit and ``max_wait`` from the ``swapcore:`` section.
    """
    limits = {
        model.id: model.concurrency_limit
        for model in config.models.values()
        if model.concurrency_limit is not None
    }
    options: dict[str, Any] = {
        "priority": dict(config.routing.priority),
        "concurrency_limits": limits,
        "default_concurrency_limit": config.swapcore.default_concurrency_limit,
        "max_wait": config.swapcore.max_wait,
    }
    if config.swapcore.scheduler == "cost-aware":
        from swapcore.scheduling.costaware import CostAwareScheduler

        costs = build_costs(config) if costs is None else costs
        return functools.partial(CostAwareScheduler, costs=costs, **options)
    from swapcore.scheduling.fifo import FIFOScheduler

    return functools.partial(FIFOScheduler, **options)


def router_kwargs(config: GatewayConfig) -> dict[str, Any]:
    """Return the :class:`~swapcore.router.BaseRouter` timing keyword arguments.

    ``swap_timeout`` is ``healthCheckTimeout``; ``unload_timeout`` maps each
    model to its resolved ``unloadTimeout``; ``idle_ttl`` maps each model
    whose resolved ``ttl`` (``globalTTL`` when unset) is above 0 to it, or is
    None when no model unloads on idle.
    """
    idle_ttl = {model.id: model.ttl for model in config.models.values() if model.ttl > 0}
    return {
        "swap_timeout": config.health_check_timeout,
        "unload_timeout": {model.id: model.unload_timeout for model in config.models.values()},
        "idle_ttl": idle_ttl or None,
        "start_retries": config.swapcore.start_retries,
    }


def build_router(config: GatewayConfig, **overrides: Any) -> BaseRouter:
    """Return a :class:`~swapcore.router.BaseRouter` for the configuration (not started).

    ``overrides`` replace any constructor argument: ``processes`` (for
    example fakes in tests), ``planner``, ``scheduler``, ``costs``,
    ``swap_timeout``, ``unload_timeout``, ``idle_ttl``, ``on_event``. The
    router's learned costs start from the models' ``swapCosts`` (and a
    cost-aware scheduler prices swaps with them); loading
    ``swapcore.costs_file`` into ``router.costs`` is the caller's choice
    (``swapcore serve`` does it). Use the router with ``async with`` and
    preload ``config.preload`` once it runs.
    """
    from swapcore.router import BaseRouter

    processes = overrides.pop("processes", None)
    planner = overrides.pop("planner", None)
    scheduler = overrides.pop("scheduler", None)
    costs = overrides.pop("costs", None)
    costs = build_costs(config) if costs is None else costs
    kwargs = {**router_kwargs(config), **overrides}
    planner = build_planner(config, costs=costs) if planner is None else planner
    return BaseRouter(
        processes if processes is not None else build_processes(config, planner=planner),
        planner,
        scheduler=scheduler if scheduler is not None else build_scheduler_factory(config, costs),
        costs=costs,
        **kwargs,
    )
