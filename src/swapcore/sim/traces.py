"""Request traces for the simulator: arrivals, a JSONL file format, and generators.

A trace is a list of :class:`Arrival` sorted by time. Traces are read from
and written to JSON Lines files (see ``docs/traces.md``) or generated:
:func:`round_robin`, :func:`poisson_mix`, :func:`bursts` and
:func:`dominant`. Generators are deterministic: the same arguments and
``seed`` always give the same trace, on every platform (they draw only from
their own ``random.Random(seed)``).
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import IO

import attrs

from swapcore.errors import ConfigError

__all__ = [
    "Arrival",
    "bursts",
    "dominant",
    "poisson_mix",
    "read_trace",
    "round_robin",
    "write_trace",
]

_FIELDS = ("at", "model", "service", "priority", "patience")


def _time(name: str, value: object) -> float:
    """``value`` as a float >= 0 (-0.0 becomes 0.0); ConfigError naming ``name`` otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number) and number >= 0:
            return number + 0.0
    raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")


def _positive_or_none(name: str, value: object) -> float | None:
    """``value`` as a float > 0, or None; ConfigError naming ``name`` otherwise."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number) and number > 0:
            return number
    raise ConfigError(f"{name} must be a finite number > 0 or None, got {value!r}")


def _convert_at(value: float) -> float:
    return _time("Arrival.at", value)


def _convert_service(value: float) -> float:
    return _time("Arrival.service", value)


def _convert_patience(value: float | None) -> float | None:
    return _positive_or_none("Arrival.patience", value)


def _check_model(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"Arrival.model must be a non-empty string, got {value!r}")


def _check_priority(
    _instance: object, _attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"Arrival.priority must be an int or None, got {value!r}")


@attrs.frozen
class Arrival:
    """One request of a trace: ``model`` is asked for at time ``at`` and serves for ``service``.

    ``at`` and ``service`` are seconds on the simulator's clock, finite and
    >= 0, stored as floats. ``priority`` overrides the model's priority for
    this request when not None (higher is served first). ``patience`` is
    how long the caller waits for its grant: a request not granted within
    ``patience`` seconds of ``at`` gives up (finite, > 0, stored as a float;
    None waits forever, or takes :func:`~swapcore.sim.simulate`'s
    ``patience``). Invalid values raise :class:`~swapcore.ConfigError`
    naming the field.
    """

    at: float = attrs.field(converter=_convert_at)
    model: str = attrs.field(validator=_check_model)
    service: float = attrs.field(converter=_convert_service)
    priority: int | None = attrs.field(default=None, validator=_check_priority)
    patience: float | None = attrs.field(default=None, converter=_convert_patience)


# --------------------------------------------------------------------------- JSONL


class _FieldError(Exception):
    """A problem inside one line; read_trace adds the file and line number."""


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _FieldError(f"duplicate field {_dump(key)}")
        result[key] = value
    return result


OTHER_RECORDS = ("cost", "swap")
"""Keys of the records a recorded trace holds besides arrivals (see ``swapcore.sim.record``)."""


def _parse_line(text: str) -> Arrival | None:
    try:
        raw = json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        raise _FieldError(f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise _FieldError(f"expected a JSON object, got {_json_type(raw)}")
    if len(raw) == 1 and next(iter(raw)) in OTHER_RECORDS:
        return None  # a measured cost or a swap: read by swapcore.sim.record
    for key in raw:
        if key not in _FIELDS:
            raise _FieldError(f"unknown field {_dump(key)} (expected {', '.join(_FIELDS)})")
    for key in ("at", "model", "service"):
        if key not in raw:
            raise _FieldError(f'missing "{key}"')
    at, model, service = raw["at"], raw["model"], raw["service"]
    priority = raw.get("priority")
    for key, value in (("at", at), ("service", service)):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _FieldError(f'"{key}" must be a number >= 0, got {_dump(value)}')
        if not _finite_non_negative(value):
            raise _FieldError(f'"{key}" must be a finite number >= 0, got {_dump(value)}')
    if not isinstance(model, str) or not model:
        raise _FieldError(f'"model" must be a non-empty string, got {_dump(model)}')
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
        raise _FieldError(f'"priority" must be an integer or null, got {_dump(priority)}')
    patience = raw.get("patience")
    if patience is not None:
        if not isinstance(patience, (int, float)) or isinstance(patience, bool):
            raise _FieldError(f'"patience" must be a number > 0 or null, got {_dump(patience)}')
        if not _finite_non_negative(patience) or patience == 0:
            raise _FieldError(f'"patience" must be a finite number > 0, got {_dump(patience)}')
    assert isinstance(at, (int, float)) and isinstance(service, (int, float))
    return Arrival(at, model, service, priority, patience)


def _finite_non_negative(value: float) -> bool:
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:  # an int too large for a float
        return False


def _dump(value: object) -> str:
    """``value`` as JSON, shortened for an error message."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a number"


def read_trace(
    source: str | os.PathLike[str] | Iterable[str], *, name: str | None = None
) -> list[Arrival]:
    """Read a JSON Lines trace and return its arrivals sorted by ``at`` (stable).

    ``source`` is a path (``str`` or path-like) to a UTF-8 file, or any other
    iterable of lines (an open text file, a list of strings). Each line holds
    one JSON object ``{"at": ..., "model": ..., "service": ..., "priority":
    ..., "patience": ...}`` (``priority`` and ``patience`` optional or null);
    blank lines and lines starting with ``#`` are skipped, and so are the
    ``{"cost": ...}`` and ``{"swap": ...}`` records a recording adds (read
    them with :func:`swapcore.sim.record.read_recorded`). Arrivals with
    equal ``at`` keep their file order.

    Any problem raises :class:`~swapcore.ConfigError` whose message is
    ``<name>:<line>: <problem>``, the problem naming the field, e.g.
    ``trace.jsonl:12: "service" must be a finite number >= 0, got -1``.
    ``name`` defaults to the path, the open file's ``name``, or ``<trace>``.
    """
    if isinstance(source, (str, os.PathLike)):
        label = name if name is not None else os.fspath(source)
        with open(source, encoding="utf-8") as lines:
            return _read_lines(lines, label)
    if isinstance(source, bytes):
        raise ConfigError("read_trace: source must be a path or an iterable of str lines")
    file_name = getattr(source, "name", None)
    label = name if name is not None else file_name if isinstance(file_name, str) else "<trace>"
    return _read_lines(source, label)


def _read_lines(lines: Iterable[str], label: str) -> list[Arrival]:
    arrivals: list[Arrival] = []
    for number, line in enumerate(lines, start=1):
        if not isinstance(line, str):
            raise ConfigError(f"{label}:{number}: expected a line of text, got {line!r}")
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            arrival = _parse_line(text)
        except _FieldError as exc:
            raise ConfigError(f"{label}:{number}: {exc}") from None
        if arrival is not None:
            arrivals.append(arrival)
    arrivals.sort(key=lambda a: a.at)
    return arrivals


def _to_json(arrival: Arrival) -> str:
    record: dict[str, object] = {
        "at": arrival.at,
        "model": arrival.model,
        "service": arrival.service,
    }
    if arrival.priority is not None:
        record["priority"] = arrival.priority
    if arrival.patience is not None:
        record["patience"] = arrival.patience
    return json.dumps(record, ensure_ascii=False)


def write_trace(arrivals: Iterable[Arrival], path: str | os.PathLike[str] | IO[str]) -> None:
    """Write ``arrivals`` as JSON Lines, one object per line, in the given order.

    ``path`` is a file path (created or replaced, UTF-8) or an open text
    stream. Keys come in the order ``at, model, service, priority,
    patience``; ``priority`` and ``patience`` are left out when None.
    Floats are written with ``repr`` precision, so :func:`read_trace` gives
    back equal arrivals (sorted).
    """
    text = "".join(_to_json(a) + "\n" for a in arrivals)
    if isinstance(path, (str, os.PathLike)):
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(text)
    else:
        path.write(text)


# --------------------------------------------------------------------------- generators


def _check_models(models: Sequence[str], name: str = "models") -> tuple[str, ...]:
    if isinstance(models, str) or not isinstance(models, Iterable):
        raise ConfigError(f"{name} must be a sequence of model names, got {models!r}")
    result = tuple(models)
    if not result:
        raise ConfigError(f"{name} must not be empty")
    for model in result:
        if not isinstance(model, str) or not model:
            raise ConfigError(f"{name} must hold non-empty strings, got {model!r}")
    return result


def _check_count(name: str, value: int, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_positive(name: str, value: float) -> float:
    number = _time(name, value)
    if number <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def round_robin(
    models: Sequence[str], *, rounds: int, interval: float, service: float
) -> list[Arrival]:
    """``rounds`` rounds of one request per model, in order: ``A B C A B C ...``.

    The i-th arrival (from 0) is at ``i * interval``; each serves for
    ``service``. Returns ``rounds * len(models)`` arrivals. No randomness.
    Raises :class:`~swapcore.ConfigError` naming the invalid argument.
    """
    names = _check_models(models)
    _check_count("rounds", rounds)
    step = _time("interval", interval)
    service = _time("service", service)
    count = rounds * len(names)
    return [Arrival(i * step, names[i % len(names)], service) for i in range(count)]


def poisson_mix(
    rates: Mapping[str, float],
    *,
    duration: float,
    service: float | Mapping[str, float],
    seed: int = 0,
    exponential_service: bool = False,
) -> list[Arrival]:
    """Independent Poisson arrivals per model over ``[0, duration)``.

    ``rates`` maps each model to its mean arrivals per second (>= 0; 0
    gives none): inter-arrival times are exponential with mean
    ``1 / rate``, starting from 0. ``service`` is one number for every
    model, or a mapping with a number for each model of ``rates``. Service
    times are that number exactly, or, with ``exponential_service=True``,
    drawn from an exponential distribution with that mean.

    Deterministic given the arguments (including ``rates``' order, the
    order in which models draw) and ``seed``. Arrivals at equal times keep
    ``rates``' order. Raises :class:`~swapcore.ConfigError` naming the
    invalid argument or key.
    """
    if not isinstance(rates, Mapping) or not rates:
        raise ConfigError(f"rates must be a non-empty mapping of models to rates, got {rates!r}")
    _check_models(list(rates), "rates")
    for model, rate in rates.items():
        _time(f"rates[{model!r}]", rate)
    end = _time("duration", duration)
    means: dict[str, float] = {}
    for model in rates:
        if isinstance(service, Mapping):
            if model not in service:
                raise ConfigError(f"service has no entry for model {model!r}")
            means[model] = _time(f"service[{model!r}]", service[model])
        else:
            means[model] = _time("service", service)
    rng = random.Random(seed)
    arrivals: list[Arrival] = []
    for model, rate in rates.items():
        if rate <= 0:
            continue
        mean = means[model]
        t = rng.expovariate(rate)
        while t < end:
            length = rng.expovariate(1 / mean) if exponential_service and mean > 0 else mean
            arrivals.append(Arrival(t, model, length))
            t += rng.expovariate(rate)
    arrivals.sort(key=lambda a: a.at)
    return arrivals


def bursts(
    models: Sequence[str],
    *,
    burst_size: int,
    bursts: int,
    gap: float,
    spacing: float,
    service: float,
    seed: int = 0,
) -> list[Arrival]:
    """``bursts`` bursts of ``burst_size`` requests, each burst for one model.

    Each burst's model is drawn uniformly from ``models``, never the
    previous burst's model when there are two or more (so every burst
    boundary asks for a swap). Within a burst, requests are ``spacing``
    apart; the next burst starts ``gap`` after the previous burst's last
    request. The first request is at 0. Returns ``bursts * burst_size``
    arrivals. Deterministic given the arguments and ``seed``. Raises
    :class:`~swapcore.ConfigError` naming the invalid argument.
    """
    names = _check_models(models)
    _check_count("burst_size", burst_size, 1)
    _check_count("bursts", bursts)
    gap = _time("gap", gap)
    spacing = _time("spacing", spacing)
    service = _time("service", service)
    rng = random.Random(seed)
    arrivals: list[Arrival] = []
    t = 0.0
    previous: str | None = None
    for _ in range(bursts):
        choices = [m for m in names if m != previous] or list(names)
        model = rng.choice(choices)
        for j in range(burst_size):
            arrivals.append(Arrival(t + j * spacing, model, service))
        t = arrivals[-1].at + gap
        previous = model
    return arrivals


def dominant(
    dominant_model: str,
    rare_models: Sequence[str],
    *,
    duration: float,
    dominant_rate: float,
    rare_every: float,
    service: float,
    seed: int = 0,
) -> list[Arrival]:
    """A steady Poisson stream for one model, with a rare request for the others.

    ``dominant_model`` gets Poisson arrivals at ``dominant_rate`` per second
    over ``[0, duration)`` (seeded). The rare models get one request every
    ``rare_every`` seconds, at ``rare_every, 2 * rare_every, ...`` (before
    ``duration``), taking ``rare_models`` in turn. Every request serves for
    ``service``. This is llama-swap's starvation case: under plain FIFO collation,
    requests for a running model overtake a queued swap, so a steady stream
    for one model can keep the rare models waiting indefinitely.

    Deterministic given the arguments and ``seed``; at equal times the
    dominant arrival comes first. Raises :class:`~swapcore.ConfigError`
    naming the invalid argument, also when ``dominant_model`` is one of
    ``rare_models``.
    """
    if not isinstance(dominant_model, str) or not dominant_model:
        raise ConfigError(f"dominant_model must be a non-empty string, got {dominant_model!r}")
    name = dominant_model
    rare = _check_models(rare_models, "rare_models")
    if name in rare:
        raise ConfigError(f"rare_models must not contain the dominant model {name!r}")
    end = _time("duration", duration)
    rate = _time("dominant_rate", dominant_rate)
    every = _check_positive("rare_every", rare_every)
    service = _time("service", service)
    rng = random.Random(seed)
    arrivals: list[Arrival] = []
    if rate > 0:
        t = rng.expovariate(rate)
        while t < end:
            arrivals.append(Arrival(t, name, service))
            t += rng.expovariate(rate)
    k = 1
    while k * every < end:
        arrivals.append(Arrival(k * every, rare[(k - 1) % len(rare)], service))
        k += 1
    arrivals.sort(key=lambda a: a.at)
    return arrivals
