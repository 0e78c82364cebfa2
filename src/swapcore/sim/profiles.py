"""Model profiles: how long a simulated model takes to load and to stop, its size and idle TTL."""

from __future__ import annotations

import math

import attrs

from swapcore.errors import ConfigError

__all__ = ["ModelProfile"]


def _as_float(value: object) -> float:
    """``value`` as a float (inf for an int too large), or NaN if it is not a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.inf
    return math.nan


def _seconds(name: str, value: object) -> float:
    number = _as_float(value)
    if math.isfinite(number) and number >= 0:
        return number + 0.0
    raise ConfigError(f"ModelProfile.{name} must be a finite number of seconds >= 0, got {value!r}")


def _load(value: object) -> float:
    return _seconds("load", value)


def _stop(value: object) -> float:
    return _seconds("stop", value)


def _size(value: object) -> float | None:
    if value is None:
        return None
    number = _as_float(value)
    if math.isfinite(number) and number > 0:
        return number
    raise ConfigError(f"ModelProfile.size must be None or a finite number > 0, got {value!r}")


def _ttl(value: object) -> float | None:
    if value is None:
        return None
    number = _as_float(value)
    if math.isfinite(number) and number >= 0:
        return number or None  # 0 means never, as None does: one spelling
    raise ConfigError(
        f"ModelProfile.ttl must be None or a finite number of seconds >= 0, got {value!r}"
    )


@attrs.frozen
class ModelProfile:
    """How one model behaves in the simulator.

    ``load`` is the seconds from start to ready, ``stop`` the seconds from
    the stop request to stopped (evicted models stop in parallel; the target
    loads once they all have). ``size`` (e.g. GiB) is optional; when every
    model has one the report includes the peak memory in use. ``ttl`` is
    the idle TTL in seconds, as the router's ``idle_ttl`` (llama-swap's
    ``ttl``): the model is unloaded once it has sat that long with nothing
    in flight or waiting; None or 0 (stored as None) means never. Invalid
    values raise :class:`~swapcore.ConfigError` naming the field.
    """

    load: float = attrs.field(converter=_load)
    stop: float = attrs.field(default=0.0, converter=_stop)
    size: float | None = attrs.field(default=None, converter=_size)
    ttl: float | None = attrs.field(default=None, converter=_ttl)
