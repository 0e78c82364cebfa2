"""Validation of ``compile_matrix``'s inputs and the tie-break order of sets.

Every function raises ConfigError (MatrixSyntaxError inside an expression)
naming the offending set, alias or key, and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from swapcore.errors import ConfigError, MatrixSyntaxError
from swapcore.matrix.dsl import IDENT_CHARS, Expression, Ident

__all__ = ["check_atoms", "read_models", "read_sets", "read_vars", "tie_break_order"]

_SET_NAME_RE = re.compile(f"[{IDENT_CHARS}]+")
_ALIAS_RE = re.compile(r"[A-Za-z0-9.\-]{1,32}")


def read_sets(sets: object) -> list[tuple[str, str]]:
    """The (name, expression) pairs of ``sets`` in definition order, validated.

    Set names are non-empty runs of identifier characters (so ``+name`` can
    refer to them); expressions are strings; pairs may not repeat a name.
    """
    if isinstance(sets, Mapping):
        pairs: Iterable[object] = list(sets.items())
        from_mapping = True
    elif isinstance(sets, (str, bytes)) or not isinstance(sets, Iterable):
        raise ConfigError(f"sets must be a mapping or (name, expression) pairs, not {sets!r}")
    else:
        pairs = sets
        from_mapping = False
    result: list[tuple[str, str]] = []
    seen: set[str] = set()
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ConfigError(f"sets: expected a (name, expression) pair, got {pair!r}")
        name, text = pair
        if not isinstance(name, str):
            raise ConfigError(f"set name {name!r} must be a string")
        if not _SET_NAME_RE.fullmatch(name):
            raise ConfigError(
                f"set name {name!r} is invalid: use one or more ASCII letters, digits,"
                " '_', '-' or '.' (so '+name' can refer to it)"
            )
        if name in seen and not from_mapping:
            raise ConfigError(f"set {name!r} is defined twice")
        seen.add(name)
        if not isinstance(text, str):
            raise ConfigError(
                f"set {name!r}: expression must be a string, not {type(text).__name__}"
            )
        result.append((name, text))
    return result


def read_models(models: object) -> frozenset[str] | None:
    """The known model ids (strings), or None when ``models`` is None."""
    if models is None:
        return None
    if isinstance(models, (str, bytes)) or not isinstance(models, Iterable):
        raise ConfigError(f"models must be an iterable of model ids, not {models!r}")
    known: set[str] = set()
    for model in models:
        if not isinstance(model, str):
            raise ConfigError(f"models: model id {model!r} must be a string")
        known.add(model)
    return frozenset(known)


def read_vars(vars: object, known: frozenset[str] | None) -> dict[str, str]:
    """The aliases, validated: 1-32 letters, digits, ``-``, ``.``; known targets."""
    if vars is None:
        return {}
    if not isinstance(vars, Mapping):
        raise ConfigError(f"vars must be a mapping of alias to model id, not {vars!r}")
    aliases: dict[str, str] = {}
    for alias, model in vars.items():
        if not isinstance(alias, str) or not _ALIAS_RE.fullmatch(alias):
            raise ConfigError(
                f"var {alias!r}: an alias must be 1-32 ASCII letters, digits, '-' or '.'"
            )
        if not isinstance(model, str) or not model:
            raise ConfigError(f"var {alias!r}: model must be a non-empty string, not {model!r}")
        if known is not None and model not in known:
            raise ConfigError(f"var {alias!r}: unknown model {model!r}")
        aliases[alias] = model
    return aliases


def check_atoms(
    name: str,
    expr: Expression,
    aliases: Mapping[str, str],
    known: frozenset[str] | None,
    defined: Mapping[str, str],
) -> list[str]:
    """Check identifiers and references in text order; return the refs, first mention first."""
    refs: dict[str, None] = {}
    for atom in expr.atoms:
        if isinstance(atom, Ident):
            if known is not None and atom.name not in aliases and atom.name not in known:
                raise MatrixSyntaxError(
                    f"set {name!r}: unknown var or model {atom.name!r} at position {atom.position}",
                    set_name=name,
                    position=atom.position,
                )
        elif atom.name not in defined:
            raise MatrixSyntaxError(
                f"set {name!r}: reference to undefined set {atom.name!r}"
                f" at position {atom.position}",
                set_name=name,
                position=atom.position,
            )
        else:
            refs[atom.name] = None
    return list(refs)


def tie_break_order(names: list[str], deps: Mapping[str, list[str]]) -> list[str]:
    """Definition order, each set preceded by its not-yet-placed references (DFS post-order)."""
    placed: set[str] = set()
    order: list[str] = []
    for start in names:
        if start in placed:
            continue
        path = [start]
        on_path = {start}
        pending = [iter(deps[start])]
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                done = path.pop()
                on_path.discard(done)
                pending.pop()
                placed.add(done)
                order.append(done)
            elif nxt in on_path:
                cycle = [*path[path.index(nxt) :], nxt]
                raise MatrixSyntaxError(
                    f"set {nxt!r}: circular reference {' -> '.join(cycle)}",
                    set_name=nxt,
                    position=None,
                )
            elif nxt not in placed:
                path.append(nxt)
                on_path.add(nxt)
                pending.append(iter(deps[nxt]))
    return order
