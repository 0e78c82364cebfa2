"""Learned swap costs: how long each model takes to load cold, wake, stop and sleep.

A swap's price depends on the model and on the tier it comes from: a cold
start of a large server takes a minute, a wake from sleep a second.
:class:`SwapCosts` keeps, per model and per kind of transition, the seconds
measured by the router and answers with a robust estimate; a configured
value is the prior until a measurement exists. Schedulers price swaps with
it, the gateway shows it, and it can be saved to a small JSON file so a
restart does not forget.

**The estimator.** The median of the last ``window`` measurements (9 by
default). A median ignores the odd outlier (the first load after boot that
reads the weights from a cold disk, a wake delayed by a busy host) that
would drag a mean, and it follows a real change (a new model file, another
quantisation) once half the window has seen it. With an even number of
measurements it is the mean of the two middle ones.
"""

from __future__ import annotations

import collections
import json
import math
import os
import statistics
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from swapcore.errors import ConfigError

__all__ = ["COST_KINDS", "MEASURE_KINDS", "CostKind", "CostSource", "SwapCosts"]

CostKind = Literal["load", "wake", "stop", "sleep", "memory"]
"""A kind of measurement: the seconds of a cold ``load`` (start to ready), a
``wake`` from sleep, a ``stop``, or going to ``sleep``; or the bytes of
accelerator ``memory`` a running server uses."""

COST_KINDS: tuple[CostKind, ...] = ("load", "wake", "stop", "sleep")
"""The kinds measured in seconds, in display order."""

MEASURE_KINDS: tuple[CostKind, ...] = (*COST_KINDS, "memory")
"""Every :data:`CostKind`: the seconds kinds, then ``memory`` (bytes)."""

_FORMAT = 1  # the JSON file's version


class CostSource(Protocol):
    """What schedulers read: a cost estimate in seconds, or None when nothing is known."""

    def estimate(self, model: str, kind: CostKind) -> float | None:
        """Seconds ``model`` is expected to take for ``kind``; None when unknown."""
        ...


def _seconds(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _kind(where: str, kind: object) -> CostKind:
    if kind not in MEASURE_KINDS:
        raise ConfigError(f"{where}: unknown cost kind {kind!r} (expected one of {MEASURE_KINDS})")
    return kind


class SwapCosts:
    """Per-model, per-kind swap durations: configured priors refined by measurements.

    ``priors`` maps a model to ``{kind: seconds}`` (the configured values);
    ``window`` is how many recent measurements the estimate uses (>= 1).
    :meth:`record` adds a measurement; :meth:`estimate` answers with the
    median of the recent measurements, or the prior, or None. Not
    thread-safe: use it from one event loop.
    """

    def __init__(
        self,
        priors: Mapping[str, Mapping[str, float]] | None = None,
        *,
        window: int = 9,
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError(f"window must be an int >= 1, got {window!r}")
        self.window = window
        self._priors: dict[tuple[str, CostKind], float] = {}
        self._samples: dict[tuple[str, CostKind], collections.deque[float]] = {}
        self._counts: dict[tuple[str, CostKind], int] = {}
        for model, kinds in (priors or {}).items():
            for kind, seconds in kinds.items():
                where = f"priors[{model!r}][{kind!r}]"
                self._priors[(model, _kind(where, kind))] = _seconds(where, seconds)

    def set_prior(self, model: str, kind: CostKind, seconds: float) -> None:
        """Set the configured value used until ``model`` has a measurement of ``kind``."""
        where = f"prior for {model!r} {kind!r}"
        self._priors[(model, _kind(where, kind))] = _seconds(where, seconds)

    def record(self, model: str, kind: CostKind, seconds: float) -> None:
        """Add one measurement (seconds >= 0; others are ignored)."""
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            return
        key = (model, _kind("record", kind))
        samples = self._samples.get(key)
        if samples is None:
            samples = self._samples[key] = collections.deque(maxlen=self.window)
        samples.append(float(seconds))
        self._counts[key] = self._counts.get(key, 0) + 1

    def estimate(self, model: str, kind: CostKind) -> float | None:
        """The median of the recent measurements, else the prior, else None."""
        key = (model, kind)
        samples = self._samples.get(key)
        if samples:
            return statistics.median(samples)
        return self._priors.get(key)

    def measured(self, model: str, kind: CostKind) -> int:
        """How many measurements of ``kind`` were recorded for ``model`` (all time)."""
        return self._counts.get((model, kind), 0)

    def models(self) -> list[str]:
        """Every model with a prior or a measurement, sorted."""
        return sorted({model for model, _ in (*self._priors, *self._samples)})

    def describe(self, model: str) -> dict[str, dict[str, Any]]:
        """``{kind: {"seconds": estimate, "measured": count, "source": ...}}`` for known kinds.

        ``source`` is ``"measured"`` or ``"configured"``; ``memory`` gives
        ``"bytes"`` instead of ``"seconds"``.
        """
        out: dict[str, dict[str, Any]] = {}
        for kind in MEASURE_KINDS:
            estimate = self.estimate(model, kind)
            if estimate is None:
                continue
            count = self.measured(model, kind)
            value = (
                {"bytes": int(estimate)} if kind == "memory" else {"seconds": round(estimate, 3)}
            )
            out[kind] = {
                **value,
                "measured": count,
                "source": "measured" if self._samples.get((model, kind)) else "configured",
            }
        return out

    # -- persistence -------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The measurements as a JSON-ready mapping (priors are configuration, not saved)."""
        models: dict[str, dict[str, Any]] = {}
        for (model, kind), samples in sorted(self._samples.items()):
            models.setdefault(model, {})[kind] = {
                "samples": [round(s, 6) for s in samples],
                "measured": self._counts.get((model, kind), len(samples)),
            }
        return {"format": _FORMAT, "window": self.window, "models": models}

    def load_json(self, data: object, *, source: str = "<costs>") -> None:
        """Add the measurements of a :meth:`to_json` mapping (raises ConfigError if malformed)."""
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise ConfigError(f"{source}: not a swapcore costs file (format {_FORMAT})")
        models = data.get("models")
        if not isinstance(models, Mapping):
            raise ConfigError(f"{source}: 'models' must be a mapping")
        for model, kinds in models.items():
            if not isinstance(kinds, Mapping):
                raise ConfigError(f"{source}: models.{model} must be a mapping")
            for kind, entry in kinds.items():
                where = f"{source}: models.{model}.{kind}"
                checked = _kind(where, kind)
                samples = entry.get("samples") if isinstance(entry, Mapping) else None
                if not isinstance(samples, list):
                    raise ConfigError(f"{where}.samples must be a list of seconds")
                values = [_seconds(f"{where}.samples", s) for s in samples]
                for value in values:
                    self.record(model, checked, value)
                count = entry.get("measured", len(values))
                if isinstance(count, int) and not isinstance(count, bool) and count >= len(values):
                    self._counts[(model, checked)] = (
                        self._counts.get((model, checked), 0) - len(values) + count
                    )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the measurements to ``path`` atomically (a temporary file, then a rename)."""
        target = Path(path)
        text = json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=target.name + ".", dir=target.parent)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, path: str | os.PathLike[str]) -> bool:
        """Add the measurements saved at ``path``; False when the file does not exist.

        Raises :class:`~swapcore.ConfigError` naming the file when it is not
        a costs file.
        """
        target = Path(path)
        try:
            text = target.read_text()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ConfigError(f"{target}: cannot read the costs file: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{target}: not JSON: {exc}") from None
        self.load_json(data, source=str(target))
        return True
