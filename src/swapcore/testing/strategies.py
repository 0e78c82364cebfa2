"""Hypothesis strategies for swap policies: DSL, matrix and group configs, traces, replica reports.

Every strategy here is public and composable: pass your own strategies (or
plain sequences) for the parts you want to control. They need the
``testing`` extra (hypothesis).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs
from hypothesis import strategies as st

from swapcore.matrix import MatrixProgram, MatrixSolver, compile_matrix
from swapcore.planners.groups import DEFAULT_GROUP, Group

if TYPE_CHECKING:
    from swapcore.cluster import ReplicaReport
    from swapcore.sim.traces import Arrival

__all__ = [
    "MatrixSpec",
    "dsl_expressions",
    "group_configs",
    "matrix_configs",
    "replica_reports",
    "request_traces",
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


# -- request traces ------------------------------------------------------------


def _maybe_none(
    values: Sequence[int] | st.SearchStrategy[int | None] | None,
) -> st.SearchStrategy[int | None]:
    if values is None:
        return st.none()
    if isinstance(values, st.SearchStrategy):
        return values
    return st.none() | st.sampled_from(list(values))


def _seconds(maximum: float) -> st.SearchStrategy[float]:
    # Zero is common on purpose: simultaneous arrivals and instant services are
    # where collation and tie-breaking happen.
    return st.just(0.0) | st.floats(
        min_value=0.0,
        max_value=maximum,
        allow_nan=False,
        allow_infinity=False,
        allow_subnormal=False,
    )


@st.composite
def _traces(
    draw: st.DrawFn,
    models: st.SearchStrategy[str],
    min_size: int,
    max_size: int,
    gaps: st.SearchStrategy[float],
    services: st.SearchStrategy[float],
    priorities: st.SearchStrategy[int | None],
) -> list[Arrival]:
    from swapcore.sim.traces import Arrival

    steps = draw(
        st.lists(
            st.tuples(gaps, models, services, priorities), min_size=min_size, max_size=max_size
        )
    )
    trace = []
    at = 0.0
    for gap, model, service, priority in steps:
        at += gap
        trace.append(Arrival(at, model, service, priority))
    return trace


def request_traces(
    models: Sequence[str] | st.SearchStrategy[str],
    *,
    min_size: int = 0,
    max_size: int = 30,
    max_gap: float = 2.0,
    max_service: float = 2.0,
    priorities: Sequence[int] | st.SearchStrategy[int | None] | None = None,
) -> st.SearchStrategy[list[Arrival]]:
    """Request traces for the simulator: lists of :class:`~swapcore.sim.traces.Arrival`.

    Arrivals are sorted by time (``at`` starts at the first gap and never
    decreases); each asks for a model drawn from ``models`` (a sequence is
    sampled from, a strategy drawn from, so unknown models can be mixed in),
    serves for ``0..max_service`` seconds and arrives ``0..max_gap`` seconds
    after the previous one; zero gaps (simultaneous arrivals) and zero
    services are frequent. ``priorities``: None (every priority None), a
    sequence of ints (each arrival gets None or one of them), or a strategy.
    The list has ``min_size..max_size`` arrivals and shrinks towards fewer,
    earlier, shorter ones.
    """
    if min_size < 0 or max_size < min_size:
        raise ValueError(f"need 0 <= min_size <= max_size, got {min_size}, {max_size}")
    if max_gap < 0 or max_service < 0:
        raise ValueError("max_gap and max_service must be >= 0")
    return _traces(
        _as_strategy(models),
        min_size,
        max_size,
        _seconds(max_gap),
        _seconds(max_service),
        _maybe_none(priorities),
    )


# -- group configurations -------------------------------------------------------


@st.composite
def _group_configs(
    draw: st.DrawFn,
    models: tuple[str, ...],
    max_groups: int,
    ungrouped: bool,
    declare_default: bool,
) -> dict[str, Group]:
    count = draw(st.integers(0, max_groups))
    # Each model goes to a group index, or to `count` (ungrouped: "(default)").
    slots = count + 1 if ungrouped or count == 0 else count
    homes = draw(st.lists(st.integers(0, slots - 1), min_size=len(models), max_size=len(models)))
    flags = st.tuples(st.booleans(), st.booleans(), st.booleans())
    groups: dict[str, Group] = {}
    if declare_default and draw(st.booleans()):
        swap, exclusive, persistent = draw(flags)
        groups[DEFAULT_GROUP] = Group((), swap=swap, exclusive=exclusive, persistent=persistent)
    for index in range(count):
        members = tuple(m for m, home in zip(models, homes, strict=True) if home == index)
        if members:
            swap, exclusive, persistent = draw(flags)
            groups[f"g{index}"] = Group(
                members, swap=swap, exclusive=exclusive, persistent=persistent
            )
    return groups


def group_configs(
    models: Sequence[str],
    *,
    max_groups: int = 4,
    ungrouped: bool = True,
    declare_default: bool = True,
) -> st.SearchStrategy[dict[str, Group]]:
    """Valid :class:`~swapcore.GroupPlanner` configurations over ``models``.

    Each drawn mapping partitions ``models`` into up to ``max_groups``
    non-empty groups named ``g0``, ``g1``, ... with random ``swap``,
    ``exclusive`` and ``persistent`` flags. With ``ungrouped`` some models
    may stay out of every group (they join ``"(default)"`` once you pass
    ``models=models`` to the planner); with ``declare_default`` the
    ``"(default)"`` group is sometimes declared explicitly with random flags.
    Build the planner with ``GroupPlanner(config, models=models)``. Shrinks
    towards no groups (llama-swap's one-model-at-a-time default).
    """
    names = tuple(dict.fromkeys(models))
    if max_groups < 0:
        raise ValueError(f"max_groups must be >= 0, got {max_groups}")
    return _group_configs(names, max_groups, ungrouped, declare_default)


# -- cluster replica reports -----------------------------------------------------

_NOT_HELD, _READY, _LOADING, _SLEEPING = range(4)


@st.composite
def _replica_report(
    draw: st.DrawFn, replica: str, models: tuple[str, ...], max_requests: int
) -> ReplicaReport:
    from swapcore.cluster import ReplicaReport

    served = draw(st.lists(st.sampled_from(models), unique=True)) if models else []
    status = {m: draw(st.sampled_from((_NOT_HELD, _READY, _LOADING, _SLEEPING))) for m in served}
    ready = [m for m in served if status[m] == _READY]
    loading = [m for m in served if status[m] == _LOADING]
    held = ready + loading
    busy = draw(st.lists(st.sampled_from(held), unique=True)) if held else []
    idle = [m for m in ready if m not in busy]
    would_evict = {}
    for model in served:
        if status[model] in (_READY, _LOADING) or not draw(st.booleans()):
            continue
        evict = draw(st.lists(st.sampled_from(idle), unique=True)) if idle else []
        would_evict[model] = tuple(evict)
    requests = st.integers(0, max_requests)
    in_flight = len(busy) + draw(requests) if busy else 0
    free = draw(st.none() | st.floats(0.0, 100.0, allow_nan=False, allow_subnormal=False))
    return ReplicaReport(
        replica=replica,
        models=served,
        ready=ready,
        loading=loading,
        sleeping=[m for m in served if status[m] == _SLEEPING],
        busy=busy,
        would_evict=would_evict,
        queued=draw(requests),
        in_flight=in_flight,
        free_memory=free,
    )


@st.composite
def _replica_reports(
    draw: st.DrawFn,
    models: tuple[str, ...],
    replica_ids: tuple[str, ...],
    min_size: int,
    max_requests: int,
) -> list[ReplicaReport]:
    ids = draw(st.lists(st.sampled_from(replica_ids), unique=True, min_size=min_size))
    return [draw(_replica_report(replica, models, max_requests)) for replica in ids]


def replica_reports(
    models: Sequence[str] = ("a", "b", "c", "d"),
    replica_ids: Sequence[str] = ("r0", "r1", "r2", "r3"),
    *,
    min_size: int = 1,
    max_requests: int = 8,
) -> st.SearchStrategy[list[ReplicaReport]]:
    """Consistent :class:`~swapcore.cluster.ReplicaReport` lists, one per replica, as a cluster's.

    Each list holds ``min_size..len(replica_ids)`` reports with distinct ids
    from ``replica_ids``, in a drawn order. Each report serves a subset of
    ``models`` (maybe none); ``ready``, ``loading`` and ``sleeping`` are
    disjoint subsets of it; ``busy`` is a subset of ``ready`` and
    ``loading``; ``would_evict`` names only models neither ready nor
    loading, each evicting ready models that are not busy (maybe none:
    room); ``in_flight`` is at least the number of busy models (zero with
    none busy) and ``queued`` is ``0..max_requests``; ``free_memory`` is
    None or ``0..100``. Shrinks towards fewer replicas serving fewer models.
    """
    names = tuple(dict.fromkeys(models))
    ids = tuple(dict.fromkeys(replica_ids))
    if isinstance(models, str) or isinstance(replica_ids, str):
        raise ValueError("models and replica_ids must be collections of ids, not strings")
    if not 0 <= min_size <= len(ids):
        raise ValueError(f"min_size must be in 0..{len(ids)} (the replica ids), got {min_size}")
    if max_requests < 0:
        raise ValueError(f"max_requests must be >= 0, got {max_requests}")
    return _replica_reports(names, ids, min_size, max_requests)
