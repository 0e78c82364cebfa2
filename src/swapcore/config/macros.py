"""Macro expansion for llama-swap configurations, with llama-swap's rules.

Three kinds of ``${...}`` references exist:

- ``${env.NAME}``: the environment variable NAME. Substituted first, in every
  string value of the document; a variable that is not set is an error.
- ``${name}``: a user macro from the global ``macros`` section or the
  model's own ``macros`` (the model's win). A macro's value may use macros
  defined *before* it (definition order; a model macro that overrides a
  global one takes the global one's place). ``${MODEL_ID}`` is the model's
  id and comes before every user macro.
- ``${PORT}``: the port assigned to a model whose ``cmd`` uses it, and
  ``${PID}`` in ``cmdStop``, filled in when the process is stopped.

A reference to a macro that does not exist is left untouched by expansion;
the loader then reports it as an error (llama-swap does the same).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from swapcore.config.limits import MAX_CONFIG_DEPTH, MAX_CONFIG_NODES
from swapcore.errors import ConfigError

__all__ = [
    "ENV_REFERENCE",
    "MACRO_NAME",
    "MACRO_REFERENCE",
    "RESERVED_MACROS",
    "check_macro",
    "clean_command",
    "expand",
    "expand_value",
    "join_path",
    "macro_text",
    "merge_macros",
    "resolve_macros",
    "substitute_env",
    "unknown_macros",
]

MACRO_NAME = re.compile(r"[a-zA-Z0-9_-]+")
"""What a macro name may contain (checked with ``fullmatch``); at most 63 characters."""
MACRO_REFERENCE = re.compile(r"\$\{([a-zA-Z0-9_-]+)\}")
"""A ``${name}`` reference; names outside :data:`MACRO_NAME` are plain text."""
ENV_REFERENCE = re.compile(r"\$\{env\.([a-zA-Z_][a-zA-Z0-9_]*)\}")
"""An ``${env.NAME}`` reference."""
RESERVED_MACROS = frozenset({"PORT", "MODEL_ID", "PID"})
"""Names users cannot define: the loader or the process manager provides them."""

_MAX_NAME = 63


def join_path(path: str, key: object) -> str:
    """Return the key path ``path.key`` (just ``key`` at the top level)."""
    return f"{path}.{key}" if path else str(key)


def macro_text(value: object) -> str:
    """Render a scalar macro value as text, as llama-swap's Go formatting does.

    Booleans are ``true``/``false``; integral floats lose their ``.0``.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if (
        isinstance(value, float)
        and math.isfinite(value)
        and value.is_integer()
        and abs(value) < 1e21
    ):
        return str(int(value))
    return str(value)


def _is_scalar(value: object) -> bool:
    return isinstance(value, (str, int, float, bool))


def check_macro(name: object, value: object) -> str | None:
    """Return what is wrong with one macro definition, or None if it is valid.

    Names: 1-63 characters of letters, digits, ``_`` and ``-``, not reserved
    (``PORT``, ``MODEL_ID``, ``PID``). Values: a string, number, boolean or
    mapping (a mapping can only be used as a whole value), not referring to
    the macro itself.
    """
    if not isinstance(name, str) or not MACRO_NAME.fullmatch(name):
        return "macro names may contain only letters, digits, '_' and '-'"
    if len(name) > _MAX_NAME:
        return f"macro names may be at most {_MAX_NAME} characters long"
    if name in RESERVED_MACROS:
        return f"'{name}' is a reserved macro name"
    if not (_is_scalar(value) or isinstance(value, Mapping)):
        kind = "empty" if value is None else type(value).__name__
        return f"a macro value must be a string, number, boolean or mapping, not {kind}"
    if f"${{{name}}}" in repr(value):
        return f"macro '{name}' refers to itself"
    return None


def merge_macros(
    global_macros: Sequence[tuple[str, object]],
    model_macros: Sequence[tuple[str, object]],
    model_id: str,
) -> list[tuple[str, object]]:
    """Return one model's macro list in resolution order.

    ``MODEL_ID`` first, then the global macros, each replaced in place by a
    model macro of the same name, then the model's remaining macros.
    """
    model = dict(model_macros)
    merged: list[tuple[str, object]] = [("MODEL_ID", model_id)]
    merged.extend((name, model.pop(name, value)) for name, value in global_macros)
    merged.extend(model.items())
    return merged


def resolve_macros(
    entries: Iterable[tuple[str, object]],
    *,
    path: str = "macros",
    paths: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Expand each macro's value with the macros defined before it.

    References to later macros stay as they are (and are reported later as
    unknown, since a macro must be defined before it is used). Errors name
    ``paths[name]`` when given, else ``path.name``.
    """
    resolved: dict[str, Any] = {}
    for name, value in entries:
        where = (paths or {}).get(name) or join_path(path, name)
        resolved[name] = expand_value(value, resolved, path=where)
    return resolved


def expand(text: str, macros: Mapping[str, Any], *, path: str) -> str:
    """Replace every ``${name}`` whose name is in ``macros``; leave the others.

    One pass: text a macro brings in is not scanned again. Raises
    :class:`~swapcore.ConfigError` naming ``path`` when a mapping-valued
    macro is used inside a longer string.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in macros:
            return match.group(0)
        value = macros[name]
        if not _is_scalar(value):
            raise ConfigError(
                f"{path}: macro '{name}' has a mapping value and can only be used as a whole value"
            )
        return macro_text(value)

    return MACRO_REFERENCE.sub(replace, text)


def expand_value(value: object, macros: Mapping[str, Any], *, path: str) -> Any:
    """Expand macros in a string, or recursively in a mapping or list.

    A string that is exactly one known reference (``"${port}"``) becomes
    the macro's value with its type kept, so ``port: ${PORT}`` in metadata
    stays an integer.
    """
    if isinstance(value, str):
        match = MACRO_REFERENCE.fullmatch(value)
        if match and match.group(1) in macros:
            return macros[match.group(1)]
        return expand(value, macros, path=path)
    if isinstance(value, Mapping):
        return {k: expand_value(v, macros, path=join_path(path, k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [expand_value(v, macros, path=f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def unknown_macros(value: object) -> list[str]:
    """Return the names of every ``${name}`` reference left in a value, in order."""
    if isinstance(value, str):
        return MACRO_REFERENCE.findall(value)
    if isinstance(value, Mapping):
        return [name for v in value.values() for name in unknown_macros(v)]
    if isinstance(value, (list, tuple)):
        return [name for v in value for name in unknown_macros(v)]
    return []


def clean_command(command: str) -> str:
    """Prepare a multi-line ``cmd`` as llama-swap does, before macro expansion.

    Lines whose first non-blank character is ``#`` are comments and are
    dropped; a line ending in ``\\`` (trailing blanks allowed) continues on
    the next line. The result is stripped.
    """
    lines = []
    for line in command.split("\n"):
        text = line.strip()
        if text.startswith("#"):
            continue
        lines.append(text[:-1] + " " if text.endswith("\\") else line)
    return "\n".join(lines).strip()


def substitute_env(
    document: object, env: Mapping[str, str], errors: list[ConfigError], *, path: str = ""
) -> Any:
    """Return ``document`` with ``${env.NAME}`` replaced in every string value.

    Mapping keys are left alone. Each reference to an unset variable adds a
    :class:`~swapcore.ConfigError` naming the key path to ``errors`` (the
    reference is then left in place). Mappings become dicts and sequences
    lists; a container shared through YAML anchors is walked once, and one
    that contains itself is reported and replaced by None.

    Every later pass walks the result as a tree, where a shared container
    counts once per use: a document that would expand to more than
    :data:`~swapcore.config.limits.MAX_CONFIG_NODES` values, or nest deeper
    than :data:`~swapcore.config.limits.MAX_CONFIG_DEPTH`, raises
    :class:`~swapcore.ConfigError` at once (measured on the shared graph, so
    in linear time).
    """
    done: dict[int, tuple[Any, int, int]] = {}  # id -> (result, expanded size, depth)
    active: set[int] = set()
    total = 0

    def grow(size: int, depth: int, where: str) -> None:
        nonlocal total
        total += size
        if total <= MAX_CONFIG_NODES and depth <= MAX_CONFIG_DEPTH:
            return
        where = where or "<root>"
        if len(where) > 60:  # a path 100 levels deep says nothing more than its start
            where = where[:60] + "..."
        if total > MAX_CONFIG_NODES:
            raise ConfigError(
                f"{where}: the document expands to more than {MAX_CONFIG_NODES:,} values "
                "(a value shared through YAML aliases counts once per use)"
            )
        raise ConfigError(
            f"{where}: the document is nested more than {MAX_CONFIG_DEPTH} levels deep"
        )

    def walk(node: object, where: str) -> tuple[Any, int, int]:
        if not isinstance(node, (Mapping, list, tuple)):
            grow(1, len(active) + 1, where)
            if isinstance(node, str):
                return _env_in_string(node, env, errors, where), 1, 1
            return node, 1, 1
        key = id(node)
        if key in done:
            result, size, depth = done[key]
            grow(size, len(active) + depth, where)
            return result, size, depth
        if key in active:
            errors.append(ConfigError(f"{where}: a YAML alias refers to its own ancestor"))
            return None, 1, 1
        grow(1 + (len(node) if isinstance(node, Mapping) else 0), len(active) + 1, where)
        active.add(key)
        walked: Any
        if isinstance(node, Mapping):
            walked = {k: walk(v, join_path(where, k)) for k, v in node.items()}
            items = list(walked.values())
            walked = {k: item[0] for k, item in walked.items()}
            size = 1 + len(items)  # keys are values too
        else:
            items = [walk(v, f"{where}[{i}]") for i, v in enumerate(node)]
            walked = [item[0] for item in items]
            size = 1
        active.discard(key)
        size += sum(item[1] for item in items)
        depth = 1 + max((item[2] for item in items), default=0)
        done[key] = (walked, size, depth)
        return walked, size, depth

    return walk(document, path)[0]


def _env_in_string(text: str, env: Mapping[str, str], errors: list[ConfigError], path: str) -> str:
    if "${env." not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        value = env.get(name)
        if value is None:
            errors.append(
                ConfigError(f"{path or '<root>'}: environment variable '{name}' is not set")
            )
            return match.group(0)
        return value

    return ENV_REFERENCE.sub(replace, text)
