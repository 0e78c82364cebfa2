"""Hypothesis strategies for swap policies: DSL expressions and matrix configs.

Every strategy here is public and composable: pass your own strategies (or
plain sequences) for the parts you want to control. They need the
``testing`` extra (hypothesis).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
from hypothesis import strategies as st

from swapcore.matrix import MatrixProgram, MatrixSolver, compile_matrix

__all__ = [
    "MatrixSpec",
    "dsl_expressions",
    "matrix_configs",
]

# -- swap matrix ---------------------------------------------------------------

_SPACING = st.sampled_from(["", " ", " ", "  ", "\t", "\n"])


def _as_strategy(values: Sequence[str] | st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    if isinstance(values, st.SearchStrategy):
        return values
    return st.sampled_from(list(values))


def _join(op: str, parts: list[tuple[str, str]], extra: list[bool], space: str) -> tuple[str, str]:
    rendered = []
    for (text, top), wrap in zip(parts, extra, strict=False):
        # `|` inside `&` needs parentheses; anything else may get them anyway.
        if wrap or (top == "|" and op == "&"):
            text = f"({space}{text}{space})"
        rendered.append(text)
    return f"{space}{op}{space}".join(rendered), op


def dsl_expressions(
    atoms: Sequence[str] | st.SearchStrategy[str] = ("a", "b", "c", "d"),
    *,
    max_leaves: int = 10,
    spacing: st.SearchStrategy[str] = _SPACING,
) -> st.SearchStrategy[str]:
    """Valid DSL expression texts over ``atoms``.

    ``atoms`` are the leaves, written as they appear in the DSL: identifiers
    (vars or models) and ``+name`` references; a sequence is sampled from, a
    strategy is drawn from. Expressions mix ``&`` and ``|`` chains of two to
    four operands, parentheses where precedence needs them and at random
    elsewhere, and whitespace drawn from ``spacing`` (``""`` allowed). Every
    drawn text parses; whether it compiles depends on the atoms resolving.
    """
    base = _as_strategy(atoms).map(lambda atom: (atom, ""))

    def extend(
        children: st.SearchStrategy[tuple[str, str]],
    ) -> st.SearchStrategy[tuple[str, str]]:
        return st.builds(
            _join,
            st.sampled_from("&|"),
            st.lists(children, min_size=2, max_size=4),
            st.lists(st.booleans(), min_size=4, max_size=4),
            spacing,
        )

    tree = st.recursive(base, extend, max_leaves=max_leaves)
    return st.builds(lambda pair, space: f"{space}{pair[0]}{space}", tree, spacing)


@attrs.frozen
class MatrixSpec:
    """A generated swap matrix: the arguments of ``compile_matrix`` plus costs.

    ``sets`` are (name, expression) pairs in definition order; ``vars`` maps
    aliases to models; ``models`` lists every model id the spec may mention;
    ``check_models`` says whether :meth:`compile` passes ``models`` (so an
    unknown identifier would be an error) or None (any identifier is a model);
    ``evict_costs`` is keyed by model or alias, never both for one model.
    """

    sets: tuple[tuple[str, str], ...]
    vars: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    models: tuple[str, ...] = ()
    evict_costs: Mapping[str, int] = attrs.field(factory=dict, hash=False)
    check_models: bool = True

    def compile(self) -> MatrixProgram:
        """``compile_matrix(sets, vars=vars, models=models or None)``."""
        known = self.models if self.check_models else None
        return compile_matrix(self.sets, vars=self.vars, models=known)

    def solver(self) -> MatrixSolver:
        """A solver over :meth:`compile` with ``evict_costs``."""
        return MatrixSolver(self.compile(), self.evict_costs)


_MODEL_POOL = ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")
_ALIAS_POOL = ("a", "b", "x", "y", "big.q4", "small-1")


@st.composite
def _matrix_specs(
    draw: st.DrawFn,
    max_models: int,
    max_sets: int,
    max_leaves: int,
    with_vars: bool,
    with_refs: bool,
    with_costs: bool,
    max_cost: int,
) -> MatrixSpec:
    count = draw(st.integers(1, max_models))
    models = list(_MODEL_POOL[:count]) if count <= len(_MODEL_POOL) else []
    models += [f"m{i}" for i in range(len(models), count)]
    aliases: dict[str, str] = {}
    if with_vars:
        # Aliases may shadow a model of the same name ("a" -> "c"): the alias wins.
        aliases = draw(st.dictionaries(st.sampled_from(_ALIAS_POOL), st.sampled_from(models)))
    identifiers = sorted(set(models) | set(aliases))
    set_count = draw(st.integers(1, max_sets))
    names = [f"s{i}" for i in range(set_count)]
    # A random topological order decides who may reference whom, so references
    # point both forwards and backwards in definition order, never in a cycle.
    rank = draw(st.permutations(range(set_count)))
    sets = []
    for i, name in enumerate(names):
        refs = [f"+{names[j]}" for j in range(set_count) if with_refs and rank[j] < rank[i]]
        atoms = identifiers + refs
        sets.append((name, draw(dsl_expressions(atoms, max_leaves=max_leaves))))
    costs: dict[str, int] = {}
    if with_costs:
        for model in draw(st.lists(st.sampled_from(models), unique=True)):
            # An alias shadows the model of the same name, even as a cost key.
            keys = sorted(a for a, m in aliases.items() if m == model)
            if model not in aliases:
                keys.append(model)
            if keys:
                costs[draw(st.sampled_from(keys))] = draw(st.integers(1, max_cost))
    return MatrixSpec(tuple(sets), aliases, tuple(models), costs, draw(st.booleans()))


def matrix_configs(
    *,
    max_models: int = 6,
    max_sets: int = 4,
    max_leaves: int = 8,
    vars: bool = True,
    refs: bool = True,
    evict_costs: bool = True,
    max_cost: int = 5,
) -> st.SearchStrategy[MatrixSpec]:
    """Small, valid swap matrices as :class:`MatrixSpec` (they always compile).

    Models are short identifiers (``a``, ``b``, ...); sets are named ``s0``,
    ``s1``, ...; set references form a random acyclic graph (so tie-break
    order differs from definition order); aliases may shadow model names;
    costs are ints in ``1..max_cost``. Turn parts off with ``vars``,
    ``refs`` and ``evict_costs``.
    """
    return _matrix_specs(max_models, max_sets, max_leaves, vars, refs, evict_costs, max_cost)
