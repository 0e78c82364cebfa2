"""Reading the ``gpus:`` section: devices, their budgets, and every model's size.

Private to :mod:`swapcore.config`. A model's size is its ``memory`` when
written, else the estimate of the GGUF file its llama.cpp ``cmd`` names
(``-m``), so that a configuration pointing at model files needs no size
typed by hand. Every problem is an error naming its key path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from typing import Any

from swapcore.config._reader import Reader, kind
from swapcore.config._residency import read_size
from swapcore.config.macros import join_path
from swapcore.config.schema import GpuConfig, ModelConfig, format_size
from swapcore.errors import ConfigError

__all__ = ["check_gpu_sizes", "model_size", "read_gpus"]

_KEYS = ("devices", "split", "env", "reserve", "evict_costs")
DEFAULT_RESERVE = 1 << 30
"""Bytes left free on each device when ``devices: auto`` reads the budgets (1 GiB)."""


def read_gpus(
    r: Reader, root: Mapping[str, Any], models: Collection[str], aliases: Mapping[str, str]
) -> GpuConfig | None:
    """The ``gpus:`` section without model sizes (None when absent or wrong)."""
    value = root.get("gpus")
    if value is None:
        return None
    section = r.mapping(value, "gpus")
    if section is None:
        return None
    r.keys(section, "gpus", _KEYS)
    errors_before = len(r.errors)
    raw = section.get("devices")
    devices: dict[str, int] = {}
    auto = raw == "auto"
    if raw is None:
        r.error("gpus.devices", "required: each device's budget (e.g. '0': 24GiB), or auto")
    elif not auto and not isinstance(raw, Mapping):
        r.error("gpus.devices", f"must map device names to budgets (or be auto), got {kind(raw)}")
    elif not auto:
        if not raw:
            r.error("gpus.devices", "must name at least one device")
        for key, budget in raw.items():
            name = str(key).strip()
            where = join_path("gpus.devices", name or repr(key))
            if isinstance(key, bool) or not isinstance(key, (str, int)) or not name:
                r.error("gpus.devices", f"device names must be strings or numbers, got {key!r}")
                continue
            if "," in name or any(char.isspace() for char in name):
                r.error(where, f"device name {name!r} must not contain commas or whitespace")
                continue
            if name in devices:
                r.error(where, "named twice")
                continue
            size = read_size(r, budget, where, positive=True)
            if size is not None:
                devices[name] = size
    reserve = read_size(r, section.get("reserve"), "gpus.reserve")
    if reserve is not None and not auto:
        r.warn("gpus.reserve", "ignored: it applies to devices: auto only")
    split = r.boolean(section.get("split"), "gpus.split", True)
    env = r.text(section.get("env"), "gpus.env", "CUDA_VISIBLE_DEVICES").strip()
    if env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
        r.error("gpus.env", f"must be an environment variable name (or empty), got {env!r}")
    evict_costs: dict[str, int] = {}
    for name, cost in (r.mapping(section.get("evict_costs"), "gpus.evict_costs") or {}).items():
        where = join_path("gpus.evict_costs", name)
        model = name if name in models else aliases.get(name)
        if model is None:
            r.error(where, f"unknown model {name!r}")
        elif isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            r.error(where, f"must be an integer >= 1, got {cost!r}")
        else:
            evict_costs[model] = cost
    if len(r.errors) != errors_before:
        return None
    return GpuConfig(
        evict_costs=evict_costs,
        devices=devices,
        auto=auto,
        reserve=DEFAULT_RESERVE if reserve is None else reserve,
        split=split,
        env=env,
    )


def model_size(model: ModelConfig) -> tuple[int, str]:
    """``model``'s size in bytes and where it comes from; ConfigError says why there is none.

    Its ``memory`` when set; else the estimate of the llama.cpp model file
    its ``cmd`` names (needs the ``memory`` extra).
    """
    if model.memory is not None:
        return model.memory, "memory"
    from swapcore.memory._estimate import estimate_command, parse_llama_options

    try:
        options = parse_llama_options(model.cmd)
    except (ConfigError, ValueError) as exc:
        raise ConfigError(f"required: cmd cannot be read for a model file ({exc})") from None
    path = options.model
    if path is None:
        raise ConfigError("required: cmd names no model file (-m PATH) to estimate the size from")
    if not os.path.isfile(path):
        raise ConfigError(
            f"required: the model file {path!r} that cmd names does not exist, "
            "so its size cannot be estimated"
        )
    try:
        estimate = estimate_command(model.cmd)
    except ImportError:
        raise ConfigError(
            f"required: estimating the size of {path!r} needs the gguf package "
            "(pip install 'swapcore[memory]')"
        ) from None
    except (ConfigError, ValueError, OSError) as exc:
        raise ConfigError(f"required: the size of {path!r} cannot be estimated ({exc})") from None
    return estimate.total_bytes, f"estimated from {path}"


def check_gpu_sizes(
    r: Reader, gpus: GpuConfig, models: Mapping[str, ModelConfig]
) -> tuple[dict[str, int], dict[str, str]]:
    """Every model's size and its source; an error for each missing or impossible size."""
    sizes: dict[str, int] = {}
    sources: dict[str, str] = {}
    budgets = list(gpus.devices.values())
    room = (sum(budgets) if gpus.split else max(budgets)) if budgets else None
    for model in models.values():
        where = f"{join_path('models', model.id)}.memory"
        try:
            size, source = model_size(model)
        except ConfigError as exc:
            r.error(where, f"{exc} (gpus: is set: every model needs a size)")
            continue
        if room is not None and size > room:
            held = "all devices together" if gpus.split else "the largest device"
            r.error(
                where,
                f"{format_size(size)} ({source}) is more than {held} can hold "
                f"({format_size(room)}): the model could never load",
            )
            continue
        sizes[model.id], sources[model.id] = size, source
    return sizes, sources
