"""Reading ``filters`` on a model or a peer into :class:`~swapcore.config.Filters`.

Private to :mod:`swapcore.config`. Three steps, as for the rest of a model:
:func:`read_filters` checks the shape (before macros), :func:`expand_filters`
expands macros in the values and in ``setParamsByID``'s keys (llama-swap
expands nothing else in a mapping's keys), and :func:`build_filters` cleans
the result into :class:`Filters` and checks every value is JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from swapcore.config._reader import Reader, kind
from swapcore.config.filters import PROTECTED_PARAMS, Filters
from swapcore.config.macros import expand, expand_value, join_path, unknown_macros
from swapcore.config.schema import invisible_character
from swapcore.errors import ConfigError

__all__ = ["build_filters", "expand_filters", "read_filters"]

_KEYS = ("stripParams", "setParams", "setParamsByID")
_LEGACY_STRIP = "strip_params"  # llama-swap's older name, read for models when stripParams is unset
# Characters llama-swap's JSON path syntax gives a meaning in a parameter name
# ("a.b" is b inside a). swapcore filters top-level parameters only, so a name
# with one of them would not do what it does in llama-swap: it is refused.
_PATH_SYNTAX = frozenset(".*?\\|#@")


def read_filters(r: Reader, value: object, path: str, *, legacy: bool) -> dict[str, Any]:
    """``filters`` with its types checked: ``{stripParams, setParams, setParamsByID}``.

    ``legacy`` reads ``strip_params`` when ``stripParams`` is unset (models
    only, as llama-swap does). Unknown keys are errors unless the reader
    allows unsupported keys: a misspelt filter would silently send upstream
    what the configuration meant to remove.
    """
    raw = r.mapping(value, path) or {}
    known = (*_KEYS, _LEGACY_STRIP) if legacy else _KEYS
    for key in raw:
        if key not in known:
            r.policy_key(
                join_path(path, key),
                "unknown filter (known: stripParams, setParams, setParamsByID)",
            )
    strip = raw.get("stripParams")
    strip_path = join_path(path, "stripParams")
    if strip in (None, "") and legacy and raw.get(_LEGACY_STRIP) is not None:
        strip, strip_path = raw[_LEGACY_STRIP], join_path(path, _LEGACY_STRIP)
    if isinstance(strip, (list, tuple, Mapping)):
        r.error(
            strip_path, f"must be a comma-separated string of parameter names, got {kind(strip)}"
        )
        strip = None
    by_id: dict[str, Any] = {}
    by_id_path = join_path(path, "setParamsByID")
    for key, params in (r.mapping(raw.get("setParamsByID"), by_id_path) or {}).items():
        where = join_path(by_id_path, key)
        by_id[key] = r.mapping(params, where) or {}
    return {
        "stripParams": r.string(strip, strip_path, ""),
        "stripPath": strip_path,
        "setParams": r.mapping(raw.get("setParams"), join_path(path, "setParams")) or {},
        "setParamsByID": by_id,
    }


def expand_filters(
    raw: dict[str, Any], macros: Mapping[str, Any], path: str, *, keys: bool = True
) -> dict[str, Any]:
    """``raw`` with macros expanded in the values and (``keys``) in ``setParamsByID``'s keys.

    llama-swap expands a model's ``setParamsByID`` keys (so ``${MODEL_ID}:high``
    works) but not a peer's.

    Raises :class:`ConfigError` for a broken macro, or for two
    ``setParamsByID`` keys that expand to the same name.
    """
    by_id_path = join_path(path, "setParamsByID")
    by_id: dict[str, Any] = {}
    written: dict[str, str] = {}  # expanded name -> the key as written
    for key, params in raw["setParamsByID"].items():
        name = expand(key, macros, path=by_id_path) if keys else key
        if name in by_id:
            raise ConfigError(
                f"{by_id_path}: keys {written[name]!r} and {key!r} both resolve to {name!r}"
            )
        written[name] = key
        by_id[name] = expand_value(params, macros, path=join_path(by_id_path, name))
    return {
        **raw,
        "stripParams": expand(raw["stripParams"], macros, path=raw["stripPath"]),
        "setParams": expand_value(raw["setParams"], macros, path=join_path(path, "setParams")),
        "setParamsByID": by_id,
    }


def build_filters(r: Reader, raw: dict[str, Any], path: str) -> Filters | None:
    """:class:`Filters` from expanded ``raw``; None (with errors recorded) when invalid."""
    errors_before = len(r.errors)
    by_id_path = join_path(path, "setParamsByID")
    for where, value in (
        (raw["stripPath"], raw["stripParams"]),
        (join_path(path, "setParams"), raw["setParams"]),
    ):
        for macro in unknown_macros(value)[:1]:
            r.error(where, f"unknown macro '${{{macro}}}'")
    for key in raw["setParamsByID"]:
        for macro in unknown_macros(key)[:1]:
            r.error(by_id_path, f"unknown macro '${{{macro}}}' in key {key!r}")
    strip = _strip_params(r, raw["stripParams"], raw["stripPath"])
    set_params = _params(r, raw["setParams"], join_path(path, "setParams"))
    by_id = {}
    for name, params in raw["setParamsByID"].items():
        where = join_path(by_id_path, name)
        if not name.strip():
            r.error(by_id_path, "model names must not be empty")
        elif problem := invisible_character(name):
            r.error(by_id_path, f"model name {name!r} contains {problem}")
        else:
            for macro in unknown_macros(params)[:1]:
                r.error(where, f"unknown macro '${{{macro}}}'")
            by_id[name] = _params(r, params, where)
    if len(r.errors) != errors_before:
        return None
    return Filters(strip_params=strip, set_params=set_params, set_params_by_id=by_id)


def _name_problem(name: str) -> str | None:
    if not name:
        return "parameter names must not be empty"
    bad = sorted(set(name) & _PATH_SYNTAX)
    if bad:
        return (
            f"parameter {name!r} contains {bad[0]!r}, which llama-swap reads as JSON path "
            "syntax; filters apply to top-level parameters only"
        )
    if problem := invisible_character(name):
        return f"parameter {name!r} contains {problem}"
    return None


def _strip_params(r: Reader, text: str, path: str) -> list[str]:
    names: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if not name or name in names:
            continue  # llama-swap skips empty entries and duplicates
        if name in PROTECTED_PARAMS:
            r.warn(path, f"{name!r} is protected and never stripped, ignored")
        elif problem := _name_problem(name):
            r.error(path, problem)
        else:
            names.append(name)
    return names


def _params(r: Reader, params: Mapping[str, Any], path: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in params.items():
        where = join_path(path, name)
        if name in PROTECTED_PARAMS:
            r.warn(where, f"{name!r} is protected and never set, ignored")
        elif problem := _name_problem(name):
            r.error(path, problem)
        elif problem := _json_problem(value):
            r.error(where, problem)
        else:
            result[name] = value
    return result


def _json_problem(value: object) -> str | None:
    """Why ``value`` cannot be sent as JSON, or None."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"must be a finite number, got {value}"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"JSON object keys must be strings, got {key!r}"
            if problem := _json_problem(item):
                return problem
        return None
    if isinstance(value, (list, tuple)):
        for item in value:
            if problem := _json_problem(item):
                return problem
        return None
    return (
        f"must be a JSON value (string, number, boolean, null, list or mapping), got {kind(value)}"
    )
