"""Per-query projection of compiled expressions onto the few relevant models.

A query (target T, running R) only cares which of T and R a combination
contains. Projecting a combination means AND-ing its model mask with
``relevant`` (the bits of T and R). Per node we keep the **maximal** projected
masks only: if a combination's projection is a subset of another's, the
superset keeps every running model the subset keeps, so (eviction costs being
positive) it is never worse. Maximality is preserved by the operators::

    max(OR(children))  = max(union of the children's maximal masks)
    max(AND(children)) = max({a | b : a in max(left), b in max(right)}) folded left

so the Cartesian product is never expanded: a node costs O(A^2) for an
antichain of width A, and A is bounded by the number of relevant models, not
by the number of combinations.

The tie-break "first combination in enumeration order" is answered afterwards
by :meth:`Projection.first`, a guided descent: at an OR take the first child
that can reach a goal; at an AND pick, child by child, the first choice that
can still be completed by the children after it.
"""

from __future__ import annotations

from swapcore.matrix.graph import LEAF, OR, ExpressionGraph, iter_bits

__all__ = ["Projection", "maximal", "minimal"]

_ZERO = [0]


def maximal(masks: list[int]) -> list[int]:
    """The masks not strictly contained in another (an antichain), deduplicated."""
    if len(masks) < 2:
        return masks
    distinct = set(masks)
    if len(distinct) > 1:
        distinct.discard(0)
    if len(distinct) == 1:
        return list(distinct)
    kept: list[int] = []
    for mask in sorted(distinct, key=int.bit_count, reverse=True):
        for other in kept:
            if mask & other == mask:
                break
        else:
            kept.append(mask)
    return kept


def minimal(masks: list[int]) -> list[int]:
    """The masks not strictly containing another, deduplicated (0 absorbs all)."""
    if len(masks) < 2:
        return masks
    distinct = set(masks)
    if len(distinct) < 2:
        return list(distinct)
    if 0 in distinct:
        return [0]
    kept: list[int] = []
    for mask in sorted(distinct, key=int.bit_count):
        for other in kept:
            if mask & other == other:
                break
        else:
            kept.append(mask)
    return kept


def _covers(masks: list[int], goals: list[int]) -> bool:
    for mask in masks:
        for goal in goals:
            if mask & goal == goal:
                return True
    return False


class Projection:
    """One query's projection: memoised maximal masks per node of a graph.

    ``relevant`` is the bitmask (over the graph's model bits) of the models
    the query is about. Build one per query; nodes shared between sets are
    evaluated once.
    """

    __slots__ = ("_graph", "_memo", "relevant")

    def __init__(self, graph: ExpressionGraph, relevant: int) -> None:
        """Start an empty projection of ``graph`` onto the ``relevant`` model bits."""
        self._graph = graph
        self.relevant = relevant
        self._memo: dict[int, list[int]] = {}

    def root_masks(self, root: int, schedule: tuple[int, ...]) -> list[int]:
        """The maximal projected masks of ``root``'s combinations.

        ``schedule`` is ``graph.schedule(root)``: non-leaf nodes, children first.
        """
        graph = self._graph
        kind, kids, support, leafy = graph.kind, graph.kids, graph.support, graph.leafy
        relevant = self.relevant
        memo = self._memo
        for nid in schedule:
            if nid in memo:
                continue
            inter = support[nid] & relevant
            if not inter:
                memo[nid] = _ZERO
            elif leafy[nid]:
                # An OR of leaves: each relevant leaf is one bit, bits are
                # incomparable, and an irrelevant leaf (0) is dominated.
                memo[nid] = [inter] if inter & (inter - 1) == 0 else list(iter_bits(inter))
            elif kind[nid] == OR:
                masks: list[int] = []
                for c in kids[nid]:
                    if kind[c] == LEAF:
                        masks.append(support[c] & relevant)
                    else:
                        masks.extend(memo[c])
                memo[nid] = maximal(masks)
            else:
                fixed = 0
                acc = _ZERO
                for c in kids[nid]:
                    if kind[c] == LEAF:
                        fixed |= support[c]
                        continue
                    child = memo[c]
                    if len(child) == 1:
                        fixed |= child[0]
                    else:
                        acc = maximal([a | b for a in acc for b in child])
                fixed &= relevant
                memo[nid] = [acc[0] | fixed] if len(acc) == 1 else maximal([a | fixed for a in acc])
        if kind[root] == LEAF:
            return [support[root] & relevant]
        return memo[root]

    def _masks(self, nid: int) -> list[int]:
        graph = self._graph
        if graph.kind[nid] == LEAF:
            return [graph.support[nid] & self.relevant]
        return self._memo[nid]

    def first_any(self, nid: int) -> int:
        """The model mask of ``nid``'s first combination."""
        graph = self._graph
        kind = graph.kind[nid]
        if kind == LEAF:
            return graph.support[nid]
        if kind == OR:
            return self.first_any(graph.kids[nid][0])
        mask = 0
        for child in graph.kids[nid]:
            mask |= self.first_any(child)
        return mask

    def first(self, nid: int, goals: list[int]) -> int:
        """The model mask of ``nid``'s first combination whose projection covers a goal.

        "Covers" means is a superset of. ``nid`` must be evaluated by
        :meth:`root_masks` in this projection, and some combination must
        cover some goal (the caller checked this on the maximal masks).
        """
        goals = minimal(goals)
        if goals[0] == 0:  # minimal() puts 0 alone: anything covers it
            return self.first_any(nid)
        graph = self._graph
        kind = graph.kind[nid]
        support = graph.support
        if kind == LEAF:
            return support[nid]
        kids = graph.kids[nid]
        relevant = self.relevant
        if graph.leafy[nid]:
            # A leaf projects to one bit (or 0), so it covers only a goal equal to it.
            for child in kids:
                if support[child] & relevant in goals:
                    return support[child]
            raise AssertionError("no leaf covers the goals")  # pragma: no cover
        if kind == OR:
            for child in kids:
                if _covers(self._masks(child), goals):
                    return self.first(child, goals)
            raise AssertionError("no child covers the goals")  # pragma: no cover
        # suffix[k]: maximal masks of the AND of kids[k:], so that a choice for
        # kids[k - 1] is kept only if the rest can still complete a goal.
        suffix = [_ZERO] * (len(kids) + 1)
        for k in range(len(kids) - 1, 0, -1):
            masks, rest = self._masks(kids[k]), suffix[k + 1]
            if len(masks) == 1 and len(rest) == 1:
                suffix[k] = [masks[0] | rest[0]]
            else:
                suffix[k] = maximal([a | b for a in masks for b in rest])
        chosen = 0
        for k, child in enumerate(kids):
            if graph.kind[child] == LEAF:
                mask = support[child]  # one combination: it is the first
            else:
                mask = self.first(child, [g & ~r for g in goals for r in suffix[k + 1]])
            chosen |= mask
            taken = mask & relevant
            goals = [goal & ~taken for goal in goals]
        return chosen
