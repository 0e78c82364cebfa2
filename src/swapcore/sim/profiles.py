"""Model profiles: how long a simulated model takes to load, stop, sleep and wake; sizes; TTL."""

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


def _wake(value: object) -> float | None:
    if value is None:
        return None
    return _seconds("wake", value)


def _sleep(value: object) -> float:
    return _seconds("sleep", value)


def _level(value: object) -> int:
    if value == 1 and not isinstance(value, bool):
        return 1
    if value == 2 and not isinstance(value, bool):
        return 2
    raise ConfigError(f"ModelProfile.sleep_level must be 1 or 2, got {value!r}")


def _host_size(value: object) -> float | None:
    if value is None:
        return None
    number = _as_float(value)
    if math.isfinite(number) and number >= 0:
        return number
    raise ConfigError(f"ModelProfile.host_size must be None or a finite number >= 0, got {value!r}")


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
    in flight or waiting; None or 0 (stored as None) means never.

    Sleep (vLLM's sleep mode): ``wake`` is the seconds from asleep to ready;
    None (the default) means the model cannot sleep and is always stopped.
    ``sleep`` is the seconds from ready to asleep, ``sleep_level`` 1 (the
    weights wait in host memory) or 2 (dropped), and ``host_size`` the host
    memory it holds asleep at level 1 (in the unit of the simulation's host
    budget; None: 0). Invalid values raise :class:`~swapcore.ConfigError`
    naming the field.
    """

    load: float = attrs.field(converter=_load)
    stop: float = attrs.field(default=0.0, converter=_stop)
    size: float | None = attrs.field(default=None, converter=_size)
    ttl: float | None = attrs.field(default=None, converter=_ttl)
    wake: float | None = attrs.field(default=None, converter=_wake)
    sleep: float = attrs.field(default=0.0, converter=_sleep)
    sleep_level: int = attrs.field(default=1, converter=_level)
    host_size: float | None = attrs.field(default=None, converter=_host_size)

    @property
    def sleeps(self) -> bool:
        """True when the model can sleep (it has a ``wake`` time)."""
        return self.wake is not None
