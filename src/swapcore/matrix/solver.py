"""The swap-matrix solver: which running models to evict so a target can load."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs

from swapcore.errors import ConfigError
from swapcore.matrix.graph import iter_bits
from swapcore.matrix.program import MatrixProgram
from swapcore.matrix.projection import Projection

__all__ = ["MatrixSolver", "SolveResult", "resolve_evict_costs"]


@attrs.frozen
class SolveResult:
    """One swap decision.

    ``evict``: running models to stop, in the order ``running`` gave them.
    ``target_set``: the chosen combination, sorted (with subset semantics,
    only the target is started; the rest is what may stay or come later).
    ``set_name`` and ``dsl``: the chosen set and its expression text, both
    ``""`` when no set applies. ``total_cost``: sum of the evicted models'
    costs.
    """

    evict: tuple[str, ...]
    target_set: tuple[str, ...]
    set_name: str
    dsl: str
    total_cost: int


def resolve_evict_costs(
    program: MatrixProgram, evict_costs: Mapping[str, int] | None
) -> dict[str, int]:
    """Validate ``evict_costs`` against ``program`` and key it by real model id.

    Keys are models or aliases (resolved to their model); values must be
    positive ints (``bool`` is refused). When the program was compiled with
    ``models``, a key that is neither a known model nor an alias is an error.
    Two keys naming the same model with different costs are an error. Raises
    ConfigError naming the key.
    """
    if evict_costs is None:
        return {}
    if not isinstance(evict_costs, Mapping):
        raise ConfigError(f"evict_costs must be a mapping of model to cost, not {evict_costs!r}")
    aliases, known = program.vars, program.known_models
    resolved: dict[str, int] = {}
    named_by: dict[str, str] = {}
    for key, cost in evict_costs.items():
        if not isinstance(key, str):
            raise ConfigError(f"evict_costs: key {key!r} must be a string")
        if isinstance(cost, bool) or not isinstance(cost, int) or cost <= 0:
            raise ConfigError(
                f"evict_costs[{key!r}]: cost must be a positive integer, not {cost!r}"
            )
        model = aliases.get(key)
        if model is None:
            if known is not None and key not in known:
                raise ConfigError(f"evict_costs: unknown var or model {key!r}")
            model = key
        if model in resolved and resolved[model] != cost:
            raise ConfigError(
                f"evict_costs: {named_by[model]!r} and {key!r} both name model {model!r}"
                f" with different costs ({resolved[model]} and {cost})"
            )
        resolved[model] = int(cost)
        named_by[model] = key
    return resolved


class MatrixSolver:
    """Answers swap queries on one program with fixed eviction costs (default 1 each).

    Costs are validated and resolved once, here (ConfigError on bad input);
    :meth:`solve` is then pure and deterministic. The solver never expands
    a Cartesian product: see ``swapcore.matrix.projection``.
    """

    __slots__ = ("_bits", "_costs", "_costs_view", "_graph", "_program")

    def __init__(
        self, program: MatrixProgram, evict_costs: Mapping[str, int] | None = None
    ) -> None:
        """Bind ``program`` and resolve ``evict_costs`` (model or alias -> positive int)."""
        self._program = program
        self._costs = resolve_evict_costs(program, evict_costs)
        self._costs_view: Mapping[str, int] = MappingProxyType(self._costs)
        self._graph = program._graph
        self._bits = self._graph.model_bits

    def __repr__(self) -> str:
        return f"<MatrixSolver {self._program!r} evict_costs={self._costs!r}>"

    @property
    def program(self) -> MatrixProgram:
        """The program this solver answers for."""
        return self._program

    @property
    def evict_costs(self) -> Mapping[str, int]:
        """Resolved costs, keyed by real model id; models not listed cost 1."""
        return self._costs_view

    def cost_of(self, model: str) -> int:
        """The eviction cost of ``model`` (1 unless configured)."""
        return self._costs.get(model, 1)

    def solve(self, target: str, running: Iterable[str]) -> SolveResult:
        """Decide which of ``running`` must stop so ``target`` can load.

        1. ``target`` already running: evict nothing, cost 0; report the first
           set and combination (tie-break order) holding all of ``running``,
           else set ``""`` and ``target_set`` = sorted ``running``.
        2. ``target`` in no set: it runs alone; evict all of ``running``.
        3. Otherwise pick, over every combination containing ``target``, the
           one whose missing running models cost least; ties go to the
           earlier set (``program.set_names``), then the earlier combination
           (``program.combinations`` order).
        ``running`` is deduplicated, keeping first occurrences.
        """
        ordered = list(dict.fromkeys(running))
        if target in ordered:
            return self._resident(ordered)
        program, bits, costs = self._program, self._bits, self._costs
        target_bit = bits.get(target, 0)
        candidates = program._candidates.get(target_bit, ()) if target_bit else ()
        if not candidates:
            total = sum(costs.get(model, 1) for model in ordered)
            return SolveResult(tuple(ordered), (target,), "", "", total)

        relevant = target_bit
        cost_by_bit: dict[int, int] = {}
        total = 0
        for model in ordered:
            cost = costs.get(model, 1)
            total += cost
            bit = bits.get(model)
            if bit is not None:
                relevant |= bit
                cost_by_bit[bit] = cost
        running_bits = relevant & ~target_bit
        floor = total - sum(cost_by_bit.values())  # nothing can do better than this

        projection = Projection(self._graph, relevant)
        best_cost = -1
        best_set = candidates[0]
        best_goals: list[int] = []
        for compiled in candidates:
            if best_cost >= 0:
                kept_at_most = sum(
                    cost_by_bit[b] for b in iter_bits(compiled.support & running_bits)
                )
                if total - kept_at_most >= best_cost:
                    continue  # cannot beat the current best, and ties go to earlier sets
            set_cost = -1
            goals: list[int] = []
            for mask in projection.root_masks(compiled.root, compiled.schedule):
                if not mask & target_bit:
                    continue
                cost = total - sum(cost_by_bit[b] for b in iter_bits(mask & running_bits))
                if set_cost < 0 or cost < set_cost:
                    set_cost, goals = cost, [mask]
                elif cost == set_cost:
                    goals.append(mask)
            if best_cost < 0 or set_cost < best_cost:
                best_cost, best_set, best_goals = set_cost, compiled, goals
                if best_cost == floor:
                    break
        chosen = projection.first(best_set.root, best_goals)
        evict = tuple(model for model in ordered if not bits.get(model, 0) & chosen)
        target_set = tuple(sorted(self._graph.names_of(chosen)))
        return SolveResult(evict, target_set, best_set.name, best_set.dsl, best_cost)

    def _resident(self, running: list[str]) -> SolveResult:
        found = self._program._containing(running)
        if found is None:
            return SolveResult((), tuple(sorted(running)), "", "", 0)
        compiled, chosen = found
        return SolveResult(
            (), tuple(sorted(self._graph.names_of(chosen))), compiled.name, compiled.dsl, 0
        )
