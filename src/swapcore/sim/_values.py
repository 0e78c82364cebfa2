"""Strict checks of configuration values for the simulator: the first problem raises.

Each check raises :class:`~swapcore.ConfigError` naming where the value came
from (a file's key or a spec's option). Mappings are checked by
:func:`swapcore.config._reader.require_mapping`, shared with the llama-swap
configuration reader.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from swapcore.config._reader import kind
from swapcore.errors import ConfigError


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
    text = repr(value) if isinstance(value, str) else kind(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_keys(mapping: Mapping[str, Any], where: str, allowed: Sequence[str]) -> None:
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown key (expected one of {', '.join(allowed)})")
