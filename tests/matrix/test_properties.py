"""Properties: the projection solver equals brute force; no input escapes ConfigError.

The oracle below shares no code with swapcore.matrix: its own parser, its own
tie-break order, and a plain Cartesian expansion of every set.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from swapcore import ConfigError, MatrixSyntaxError
from swapcore.matrix import compile_matrix
from swapcore.testing.strategies import MatrixSpec, dsl_expressions, matrix_configs

# -- the oracle --------------------------------------------------------------------

Node = tuple[str, Any]  # ("leaf" | "ref", name) or ("and" | "or", [Node, ...])
_TOKEN = re.compile(r"\s*(\+?[A-Za-z0-9_.\-]+|[&|()])")


def naive_parse(text: str) -> Node:
    tokens = _TOKEN.findall(text)
    pos = 0

    def expr() -> Node:
        nonlocal pos
        parts = [conj()]
        while pos < len(tokens) and tokens[pos] == "|":
            pos += 1
            parts.append(conj())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def conj() -> Node:
        nonlocal pos
        parts = [atom()]
        while pos < len(tokens) and tokens[pos] == "&":
            pos += 1
            parts.append(atom())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def atom() -> Node:
        nonlocal pos
        token = tokens[pos]
        pos += 1
        if token == "(":
            inner = expr()
            assert tokens[pos] == ")"
            pos += 1
            return inner
        return ("ref", token[1:]) if token.startswith("+") else ("leaf", token)

    root = expr()
    assert pos == len(tokens)
    return root


def first_occurrences(combos: list[frozenset[str]]) -> list[frozenset[str]]:
    return list(dict.fromkeys(combos))


class Oracle:
    """Brute force over fully expanded sets, straight from llama-swap's matrix rules."""

    def __init__(self, spec: MatrixSpec) -> None:
        self.trees = {name: naive_parse(text) for name, text in spec.sets}
        self.texts = dict(spec.sets)
        self.vars = dict(spec.vars)
        self.costs = {self.vars.get(k, k): v for k, v in spec.evict_costs.items()}
        self.order = self._order([name for name, _ in spec.sets])
        self.expanded = {name: self.expand(self.trees[name]) for name in self.trees}

    def _refs(self, node: Node) -> list[str]:
        kind, value = node
        if kind == "ref":
            assert isinstance(value, str)
            return [value]
        if kind == "leaf":
            return []
        assert isinstance(value, list)
        return list(dict.fromkeys(r for child in value for r in self._refs(child)))

    def _order(self, names: list[str]) -> list[str]:
        order: list[str] = []

        def visit(name: str) -> None:
            if name in order:
                return
            for ref in self._refs(self.trees[name]):
                visit(ref)
            order.append(name)

        for name in names:
            visit(name)
        return order

    def expand(self, node: Node) -> list[frozenset[str]]:
        # Deduplicating at every node keeps the first-occurrence order of the full
        # expansion (a later duplicate only ever repeats an earlier union) and
        # keeps the oracle small.
        kind, value = node
        if kind == "leaf":
            assert isinstance(value, str)
            return [frozenset({self.vars.get(value, value)})]
        if kind == "ref":
            assert isinstance(value, str)
            return self.expand(self.trees[value])
        assert isinstance(value, list)
        children = [self.expand(child) for child in value]
        if kind == "or":
            return first_occurrences([c for child in children for c in child])
        # Lexicographic product, folded pairwise (the order is the same).
        combos = children[0]
        for child in children[1:]:
            combos = first_occurrences([a | b for a, b in itertools.product(combos, child)])
        return combos

    def raw_count(self, node: Node) -> int:
        kind, value = node
        if kind == "leaf":
            return 1
        if kind == "ref":
            assert isinstance(value, str)
            return self.raw_count(self.trees[value])
        assert isinstance(value, list)
        counts = [self.raw_count(child) for child in value]
        return sum(counts) if kind == "or" else int(__import__("math").prod(counts))

    def cost(self, model: str) -> int:
        return self.costs.get(model, 1)

    def solve(self, target: str, running: Sequence[str]) -> tuple[Any, ...]:
        ordered = list(dict.fromkeys(running))
        if target in ordered:
            for name in self.order:
                for combo in self.expanded[name]:
                    if set(ordered) <= combo:
                        return ((), tuple(sorted(combo)), name, self.texts[name], 0)
            return ((), tuple(sorted(ordered)), "", "", 0)
        best: tuple[int, str, frozenset[str]] | None = None
        for name in self.order:
            for combo in self.expanded[name]:
                if target in combo:
                    cost = sum(self.cost(m) for m in ordered if m not in combo)
                    if best is None or cost < best[0]:
                        best = (cost, name, combo)
        if best is None:
            return (tuple(ordered), (target,), "", "", sum(self.cost(m) for m in ordered))
        cost, name, combo = best
        evict = tuple(m for m in ordered if m not in combo)
        return (evict, tuple(sorted(combo)), name, self.texts[name], cost)


# -- solver == oracle ----------------------------------------------------------------


@st.composite
def specs_and_queries(draw: st.DrawFn) -> tuple[MatrixSpec, list[tuple[str, list[str]]]]:
    spec = draw(matrix_configs())
    pool = [*spec.models, "outside"]
    queries = draw(
        st.lists(
            st.tuples(st.sampled_from(pool), st.lists(st.sampled_from(pool), max_size=7)),
            min_size=1,
            max_size=6,
        )
    )
    return spec, queries


@given(specs_and_queries())
def test_solver_matches_brute_force(case: tuple[MatrixSpec, list[tuple[str, list[str]]]]) -> None:
    spec, queries = case
    solver = spec.solver()
    oracle = Oracle(spec)
    assert list(solver.program.set_names) == oracle.order
    for target, running in queries:
        result = solver.solve(target, running)
        got = (result.evict, result.target_set, result.set_name, result.dsl, result.total_cost)
        assert got == oracle.solve(target, running), (target, running)


@given(matrix_configs(max_leaves=6))
def test_combinations_match_brute_force(spec: MatrixSpec) -> None:
    program = spec.compile()
    oracle = Oracle(spec)
    for name in program.set_names:
        expected = oracle.expanded[name]
        assert list(program.combinations(name)) == expected
        assert program.combination_count(name) == oracle.raw_count(oracle.trees[name])
        assert program.combination_count(name, exact=True) == len(expected)
    assert program.models == {m for combos in oracle.expanded.values() for c in combos for m in c}


@given(matrix_configs(), st.lists(st.sampled_from("abcdefx"), max_size=4))
def test_can_contain_all_matches_brute_force(spec: MatrixSpec, models: list[str]) -> None:
    program = spec.compile()
    oracle = Oracle(spec)
    expected = not models or any(
        set(models) <= combo for combos in oracle.expanded.values() for combo in combos
    )
    assert program.can_contain_all(models) == expected


@given(specs_and_queries())
def test_solve_invariants(case: tuple[MatrixSpec, list[tuple[str, list[str]]]]) -> None:
    spec, queries = case
    solver = spec.solver()
    for target, running in queries:
        result = solver.solve(target, running)
        assert set(result.evict) <= set(running)
        assert target not in result.evict
        assert len(set(result.evict)) == len(result.evict)
        assert target in result.target_set or target in running
        assert list(result.target_set) == sorted(set(result.target_set))
        assert result.total_cost == sum(solver.cost_of(m) for m in result.evict)
        kept = set(running) - set(result.evict)
        if result.set_name:
            assert kept <= set(result.target_set)
            assert frozenset(result.target_set) in set(solver.program.combinations(result.set_name))


# -- nothing escapes but ConfigError ----------------------------------------------------

_DSLISH = st.text(alphabet="abc+()&| \t\n._-x@é0", max_size=40)
_NAMES = st.sampled_from(["a", "b", "c", "", "b c", "é"])


def _compile_or_config_error(sets: Any, **kwargs: Any) -> None:
    try:
        compile_matrix(sets, **kwargs)
    except MatrixSyntaxError as error:
        assert error.set_name in [name for name, _ in _pairs(sets)]
        text = dict(_pairs(sets))[error.set_name]
        assert error.position is None or 0 <= error.position <= len(text)
        assert str(error).startswith(f"set {error.set_name!r}: ")
    except ConfigError:
        pass


def _pairs(sets: Any) -> list[tuple[str, str]]:
    return list(sets.items()) if isinstance(sets, Mapping) else list(sets)


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=40), max_size=4))
def test_random_text_only_raises_config_error(sets: dict[str, str]) -> None:
    _compile_or_config_error(sets)


@given(
    st.dictionaries(
        _NAMES, _DSLISH | dsl_expressions(["a", "b", "x", "+a", "+b", "+c"]), max_size=3
    ),
    st.none() | st.dictionaries(st.sampled_from(["x", "y_z", "a"]), st.sampled_from(["a", "q"])),
    st.none() | st.lists(st.sampled_from(["a", "b", "x"])),
)
def test_dslish_text_only_raises_config_error(
    sets: dict[str, str], aliases: dict[str, str] | None, models: list[str] | None
) -> None:
    _compile_or_config_error(sets, vars=aliases, models=models)


@given(st.lists(st.tuples(_NAMES, _DSLISH), max_size=4))
def test_pairs_only_raise_config_error(pairs: list[tuple[str, str]]) -> None:
    _compile_or_config_error(pairs)


@given(st.integers(1, 3000), st.sampled_from(["(", "(a&", "(a|(b&", "a|(", "+", ")"]))
def test_deep_input_only_raises_config_error(depth: int, unit: str) -> None:
    text = unit * depth
    _compile_or_config_error({"s": text})
    _compile_or_config_error({"s": text + "a" + ")" * depth})
    _compile_or_config_error({"s": text + "a" + "))" * depth})
