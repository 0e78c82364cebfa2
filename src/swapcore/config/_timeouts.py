"""Reading a model's or a peer's ``timeouts`` section.

Private to :mod:`swapcore.config`. Two steps, so macros can expand between
them: :func:`raw_timeouts` checks the section's shape and keys when the
model or peer is read; :func:`build_timeouts` turns the expanded values into
an :class:`~swapcore.config.schema.UpstreamTimeouts`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from swapcore.config._reader import Reader
from swapcore.config.macros import join_path
from swapcore.config.schema import TIMEOUT_KEYS, UpstreamTimeouts

__all__ = ["build_timeouts", "raw_timeouts"]


def raw_timeouts(r: Reader, value: object, path: str) -> dict[str, Any]:
    """The section's known keys and their raw values; unknown keys are warnings."""
    section = r.mapping(value, path) or {}
    r.keys(section, path, TIMEOUT_KEYS)
    return {key: item for key, item in section.items() if key in TIMEOUT_KEYS}


def build_timeouts(
    r: Reader, raw: Mapping[str, Any], path: str, defaults: UpstreamTimeouts
) -> UpstreamTimeouts | None:
    """``defaults`` with the given values (seconds >= 0; 0 = no timeout), or None after errors.

    An empty value keeps the default. Numbers only: a string, even one
    holding digits, is an error, as in llama-swap, where these are integers.
    """
    errors_before = len(r.errors)
    changes: dict[str, float | None] = {}
    for key, value in raw.items():
        where = join_path(path, key)
        seconds = r.number(value, where, -1.0, minimum=0)
        if value is None or seconds < 0:
            continue  # absent (the default stays) or already reported
        if not math.isfinite(seconds):
            r.error(where, "must be a finite number of seconds (0 for no timeout)")
            continue
        changes[TIMEOUT_KEYS[key]] = float(seconds) or None
    if len(r.errors) != errors_before:
        return None
    return attrs.evolve(defaults, **changes)
