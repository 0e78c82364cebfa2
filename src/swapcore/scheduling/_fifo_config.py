"""Validation of FIFOScheduler's configuration; each error names the offending key."""

from __future__ import annotations

import math
from collections.abc import Mapping

from swapcore.errors import ConfigError

__all__ = ["check_limit", "check_limits", "check_max_wait", "check_priority"]


def _as_int(value: object) -> int | None:
    # bool is an int subclass, but `priority: {a: true}` is a config mistake.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _check_mapping(name: str, value: object) -> Mapping[object, object]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping of model -> int, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{name} keys must be model ids (str), got {key!r}")
    return value


def check_priority(priority: Mapping[str, int] | None) -> dict[str, int]:
    """Return a copy of the model priority map; every value must be an int."""
    if priority is None:
        return {}
    out: dict[str, int] = {}
    for model, value in _check_mapping("priority", priority).items():
        number = _as_int(value)
        if number is None:
            raise ConfigError(f"priority[{model!r}] must be an int, got {value!r}")
        out[str(model)] = number
    return out


def check_limit(name: str, value: object) -> int:
    """Return ``value`` if it is a positive int, else raise ConfigError naming ``name``."""
    number = _as_int(value)
    if number is None or number <= 0:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return number


def check_limits(limits: Mapping[str, int] | None) -> dict[str, int]:
    """Return a copy of the per-model concurrency limits; each must be a positive int."""
    if limits is None:
        return {}
    return {
        str(model): check_limit(f"concurrency_limits[{model!r}]", value)
        for model, value in _check_mapping("concurrency_limits", limits).items()
    }


def check_max_wait(max_wait: float | None) -> float | None:
    """Return ``max_wait`` if it is None or a number of seconds > 0 (inf allowed)."""
    if max_wait is None:
        return None
    if (
        isinstance(max_wait, bool)
        or not isinstance(max_wait, (int, float))
        or math.isnan(max_wait)
        or max_wait <= 0
    ):
        raise ConfigError(f"max_wait must be None or a number of seconds > 0, got {max_wait!r}")
    return float(max_wait)
