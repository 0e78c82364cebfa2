"""Reading the residency keys: ``sleepMode``, ``hostMemory``, ``memory``, ``swapCosts``.

Private to :mod:`swapcore.config`. Sizes are a number of GiB or a string with
a unit (``16GiB``, ``512MiB``, ``16GB``, ``1.5TiB``, ``123B``) and are stored
as whole bytes. :func:`check_residency` runs once every model is built: the
rules that tie models to the ``swapcore:`` section's budgets.
"""

from __future__ import annotations

import math
import re
import types
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import attrs

from swapcore.config._reader import Reader, kind
from swapcore.config.macros import join_path
from swapcore.config.schema import ModelConfig, SwapcoreSettings, format_size
from swapcore.costs import COST_KINDS

__all__ = [
    "SIZE_UNITS",
    "SleepMode",
    "check_residency",
    "parse_size",
    "read_size",
    "read_sleep_mode",
    "read_swap_costs",
]

GIB = 1 << 30
SIZE_UNITS: Mapping[str, int] = types.MappingProxyType(
    {
        "b": 1,
        "kb": 10**3,
        "mb": 10**6,
        "gb": 10**9,
        "tb": 10**12,
        "kib": 1 << 10,
        "mib": 1 << 20,
        "gib": 1 << 30,
        "tib": 1 << 40,
    }
)
"""Units a size string may end with (any case), in bytes."""

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")
_UNITS_TEXT = "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"
_SLEEP_MODE = frozenset({"level", "sleepEndpoint", "wakeEndpoint"})


def parse_size(value: object) -> int:
    """``value`` in bytes: a number of GiB, or a string with a unit; ValueError says why.

    The result is rounded to a whole byte. Negative, infinite and NaN
    values, booleans and strings without a known unit are refused.
    """
    if isinstance(value, bool):
        raise ValueError(f"must be a size, got {kind(value)}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"must be a size >= 0, got {value!r}")
        exact = Fraction(value) if isinstance(value, int) else Fraction(repr(value))
        return round(exact * GIB)
    if not isinstance(value, str):
        raise ValueError(
            f"must be a size (a number of GiB or a string such as 16GiB), got {kind(value)}"
        )
    match = _SIZE.fullmatch(value)
    if match is None:
        raise ValueError(f"must be a size such as 16GiB or 512MiB, got {value!r}")
    number, unit = match.groups()
    if not unit:
        raise ValueError(f"{value!r} needs a unit ({_UNITS_TEXT}), or write a number of GiB")
    scale = SIZE_UNITS.get(unit.lower())
    if scale is None:
        raise ValueError(f"unknown unit {unit!r} in {value!r} (valid: {_UNITS_TEXT})")
    return round(Fraction(number) * scale)


def read_size(r: Reader, value: object, path: str, *, positive: bool = False) -> int | None:
    """A size in bytes, or None when absent or wrong (then an error names ``path``)."""
    if value is None:
        return None
    try:
        size = parse_size(value)
    except ValueError as exc:
        r.error(path, str(exc))
        return None
    if positive and size == 0:
        r.error(path, "must be more than 0 bytes")
        return None
    return size


@attrs.frozen
class SleepMode:
    """A model's ``sleepMode``, read but not yet macro-expanded."""

    level: int
    sleep_endpoint: str
    wake_endpoint: str


def read_sleep_mode(r: Reader, value: object, path: str) -> SleepMode | None:
    """``sleepMode: {level, sleepEndpoint, wakeEndpoint}``; None when absent or ``false``."""
    if value is None or value is False:
        return None
    if not isinstance(value, Mapping):
        r.error(path, f"must be a mapping with level (or false), got {_shown(value)}")
        return None
    raw = r.mapping(value, path) or {}
    r.keys(raw, path, _SLEEP_MODE)
    errors_before = len(r.errors)
    level = raw.get("level")
    if level is None:
        r.error(join_path(path, "level"), "required: 1 or 2")
    elif isinstance(level, bool) or level not in (1, 2):
        r.error(join_path(path, "level"), f"must be 1 or 2, got {_shown(level)}")
    endpoints = {
        key: r.text(raw.get(key), join_path(path, key), default).strip()
        for key, default in (
            ("sleepEndpoint", "/sleep?level={level}"),
            ("wakeEndpoint", "/wake_up"),
        )
    }
    if len(r.errors) != errors_before or not isinstance(level, int):
        return None
    return SleepMode(level, endpoints["sleepEndpoint"], endpoints["wakeEndpoint"])


def endpoint_problem(value: str) -> str | None:
    """Why ``value`` is not a usable sleep or wake path, or None."""
    if not value.startswith("/"):
        return f"must be a path starting with '/', got {value!r}"
    if any(char.isspace() for char in value):
        return f"must not contain whitespace, got {value!r}"
    return None


def read_swap_costs(r: Reader, value: object, path: str) -> dict[str, float]:
    """``swapCosts: {load, wake, stop, sleep}``: seconds >= 0, each optional."""
    raw = r.mapping(value, path) or {}
    r.keys(raw, path, COST_KINDS)
    costs: dict[str, float] = {}
    for key in COST_KINDS:
        where = join_path(path, key)
        seconds = r.number(raw.get(key), where, -1.0, minimum=0)
        if raw.get(key) is None or seconds < 0:
            continue  # absent, or already reported
        if not math.isfinite(seconds):
            r.error(where, "must be a finite number of seconds")
            continue
        costs[key] = float(seconds)
    return costs


def check_residency(
    r: Reader,
    models: Mapping[str, ModelConfig],
    settings: SwapcoreSettings,
    declared: Mapping[str, Any],
) -> None:
    """The rules between models and the budgets, each error or warning with its key path.

    ``declared`` maps model ids to their raw settings (to tell a key that
    was written from one that was left out).
    """
    sleepers = [m for m in models.values() if m.sleep_level is not None]
    for model in models.values():
        path = join_path("models", model.id)
        written = declared.get(model.id)
        wrote_host = isinstance(written, Mapping) and written.get("hostMemory") is not None
        if wrote_host and model.sleep_level is None:
            r.warn(f"{path}.hostMemory", "ignored: the model has no sleepMode")
        elif wrote_host and model.sleep_level == 2:
            r.warn(f"{path}.hostMemory", "ignored: at sleep level 2 a model holds no host memory")
        elif (
            model.sleep_level == 1
            and model.host_memory is None
            and settings.host_memory_budget is not None
        ):
            r.warn(
                f"{path}.hostMemory",
                "not set: asleep, this model counts as holding none of swapcore.host_memory_budget",
            )
    if settings.host_memory_budget is not None and not sleepers:
        r.warn("swapcore.host_memory_budget", "ignored: no model has sleepMode")

    budget = settings.memory_budget
    if budget is None:
        return
    for model in models.values():
        where = f"{join_path('models', model.id)}.memory"
        if model.memory is None:
            r.error(where, "required when swapcore.memory_budget is set")
        elif model.memory > budget:
            r.error(
                where,
                f"{format_size(model.memory)} is more than swapcore.memory_budget "
                f"({format_size(budget)}): the model could never load",
            )


def _shown(value: object) -> str:
    """A YAML value as the user wrote it: ``true``, ``3``, ``'one'``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return repr(value)
    return kind(value)
