"""compile_matrix and MatrixProgram: linking sets into one graph, and queries on it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

import attrs

from swapcore.errors import ConfigError, MatrixSyntaxError
from swapcore.matrix.dsl import Expression, parse_dsl
from swapcore.matrix.graph import ExpressionGraph, iter_bits
from swapcore.matrix.projection import Projection
from swapcore.matrix.validate import (
    check_atoms,
    read_models,
    read_sets,
    read_vars,
    tie_break_order,
)

if TYPE_CHECKING:
    from swapcore.matrix.solver import MatrixSolver, SolveResult

__all__ = ["MAX_DEPTH", "MatrixProgram", "compile_matrix"]

#: Deepest allowed nesting of alternating ``|``/``&`` levels in one set, set
#: references included (parentheses alone and same-operator chains do not count).
MAX_DEPTH = 100


@attrs.frozen
class _CompiledSet:
    name: str
    dsl: str
    root: int
    schedule: tuple[int, ...]
    support: int


class MatrixProgram:
    """A compiled, immutable swap matrix: named sets of models allowed to run together.

    Build it with :func:`compile_matrix`. Every query works on projections of
    the compiled expressions and never expands a set's Cartesian product,
    except :meth:`combinations`, which expands lazily on request.
    """

    __slots__ = ("_by_name", "_candidates", "_default_solver", "_graph", "_known", "_sets", "_vars")

    def __init__(
        self,
        graph: ExpressionGraph,
        sets: tuple[_CompiledSet, ...],
        aliases: Mapping[str, str],
        known: frozenset[str] | None,
    ) -> None:
        """Internal: use :func:`compile_matrix`."""
        self._graph = graph
        self._sets = sets
        self._by_name = {s.name: s for s in sets}
        self._vars: Mapping[str, str] = MappingProxyType(dict(aliases))
        self._known = known
        candidates: dict[int, list[_CompiledSet]] = {}
        for s in sets:
            for bit in iter_bits(s.support):
                candidates.setdefault(bit, []).append(s)
        self._candidates = {bit: tuple(found) for bit, found in candidates.items()}
        self._default_solver: MatrixSolver | None = None

    def __repr__(self) -> str:
        return f"<MatrixProgram sets={list(self.set_names)!r}>"

    @property
    def set_names(self) -> tuple[str, ...]:
        """Set names in tie-break order.

        Sets are taken in definition order, but each set is preceded by the
        sets it references (recursively, in the order its expression first
        mentions them) that are not placed yet: a referenced set is placed
        just before its first referrer.
        """
        return tuple(s.name for s in self._sets)

    @property
    def models(self) -> frozenset[str]:
        """Every real model (vars resolved) that some set mentions."""
        return frozenset(self._graph.model_names)

    @property
    def vars(self) -> Mapping[str, str]:
        """The aliases (alias -> real model id), read-only."""
        return self._vars

    @property
    def known_models(self) -> frozenset[str] | None:
        """The ``models`` given to :func:`compile_matrix`, or None when any id was allowed."""
        return self._known

    def _set(self, set_name: str) -> _CompiledSet:
        found = self._by_name.get(set_name)
        if found is None:
            raise ConfigError(f"unknown set {set_name!r}")
        return found

    def expression(self, set_name: str) -> str:
        """The original DSL text of ``set_name`` (ConfigError if no such set)."""
        return self._set(set_name).dsl

    def set_models(self, set_name: str) -> frozenset[str]:
        """Every real model ``set_name`` mentions, references included."""
        return frozenset(self._graph.names_of(self._set(set_name).support))

    def combination_count(self, set_name: str, *, exact: bool = False) -> int:
        """How many combinations ``set_name`` has, without expanding them.

        By default this is arithmetic (``|`` adds, ``&`` multiplies, a model
        counts 1): the number of combinations the expansion walks. It is an
        upper bound on the number of *distinct* combinations, and exact when
        no model appears twice in the expanded expression (``a & a`` counts
        1, but ``a | a`` counts 2). ``exact=True`` counts the distinct
        combinations by lazy expansion, in time proportional to the bound.
        """
        compiled = self._set(set_name)
        if exact:
            return sum(1 for _ in self.combinations(set_name))
        return self._graph.count(compiled.root, compiled.schedule)

    def combinations(self, set_name: str) -> Iterator[frozenset[str]]:
        """Lazily yield the distinct combinations of ``set_name`` (ConfigError if unknown).

        Order: at ``|`` the left choice first; at ``&`` the left operand varies
        slowest; a combination seen before is skipped (so memory grows with
        the number yielded). This is the order the solver's "earlier
        combination" tie-break uses.
        """
        compiled = self._set(set_name)
        return self._expand(compiled.root)

    def _expand(self, root: int) -> Iterator[frozenset[str]]:
        seen: set[int] = set()
        graph = self._graph
        for mask in graph.iter_masks(root):
            if mask not in seen:
                seen.add(mask)
                yield frozenset(graph.names_of(mask))

    def can_contain_all(self, models: Iterable[str]) -> bool:
        """True when some combination of some set contains every one of ``models``.

        ``models`` are real model ids (not vars). An empty ``models`` is
        always containable.
        """
        wanted = list(dict.fromkeys(models))
        if not wanted:
            return True
        return self._containing(wanted) is not None

    def _containing(self, models: list[str]) -> tuple[_CompiledSet, int] | None:
        """The first set and first combination (mask) containing all of ``models``."""
        bits = self._graph.model_bits
        relevant = 0
        for model in models:
            bit = bits.get(model)
            if bit is None:
                return None
            relevant |= bit
        projection = Projection(self._graph, relevant)
        for compiled in self._candidates.get(relevant & -relevant, ()):
            if compiled.support & relevant != relevant:
                continue
            if relevant in projection.root_masks(compiled.root, compiled.schedule):
                return compiled, projection.first(compiled.root, [relevant])
        return None

    def solve(
        self, target: str, running: Iterable[str], evict_costs: Mapping[str, int] | None = None
    ) -> SolveResult:
        """Decide what to evict so ``target`` can load next to ``running``.

        Same as ``MatrixSolver(self, evict_costs).solve(target, running)``;
        with ``evict_costs`` given, the costs are validated on every call, so
        keep a :class:`MatrixSolver` for repeated queries.
        """
        from swapcore.matrix.solver import MatrixSolver

        if evict_costs is not None:
            return MatrixSolver(self, evict_costs).solve(target, running)
        if self._default_solver is None:
            self._default_solver = MatrixSolver(self)
        return self._default_solver.solve(target, running)


def compile_matrix(
    sets: Mapping[str, str] | Iterable[tuple[str, str]],
    *,
    vars: Mapping[str, str] | None = None,
    models: Iterable[str] | None = None,
) -> MatrixProgram:
    """Compile named DSL expressions into a :class:`MatrixProgram`.

    ``sets`` maps set names to expressions, in definition order (a mapping, or
    (name, expression) pairs, where a repeated name is an error). ``vars``
    maps aliases to real model ids; an alias wins over a same-named model.
    ``models`` lists the known model ids; when None, any identifier that is
    not an alias is a model id. An empty ``sets`` gives a program in which
    every model runs alone.

    Raises ConfigError (MatrixSyntaxError for a bad expression, with the set
    name and the 0-based position where one applies) naming the offending
    set, alias or key, and never any other exception, whatever the input.
    """
    definitions = read_sets(sets)
    known = read_models(models)
    aliases = read_vars(vars, known)
    texts = dict(definitions)
    parsed: dict[str, Expression] = {}
    deps: dict[str, list[str]] = {}
    for name, text in definitions:
        parsed[name] = parse_dsl(text, set_name=name)
        deps[name] = check_atoms(name, parsed[name], aliases, known, texts)
    graph = ExpressionGraph()
    roots: dict[str, int] = {}
    compiled: list[_CompiledSet] = []

    def resolve(identifier: str) -> str:
        return aliases.get(identifier, identifier)

    for name in tie_break_order(list(texts), deps):
        root = graph.build(parsed[name].root, resolve, roots)
        if graph.depth[root] > MAX_DEPTH:
            raise MatrixSyntaxError(
                f"set {name!r}: expression nests more than {MAX_DEPTH} levels deep",
                set_name=name,
                position=None,
            )
        roots[name] = root
        compiled.append(
            _CompiledSet(name, texts[name], root, graph.schedule(root), graph.support[root])
        )
    return MatrixProgram(graph, tuple(compiled), aliases, known)
