"""The CLI's generator specs: ``NAME:key=value;...`` to a seeded trace (``--generate``).

:func:`generate_trace` is importable from :mod:`swapcore.sim.config` as well.
"""

from __future__ import annotations

from swapcore.errors import ConfigError
from swapcore.sim import traces
from swapcore.sim._values import _integer, _number
from swapcore.sim.specs import _allow, _scalar, _split_spec, parse_options

__all__ = ["generate_trace"]

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
