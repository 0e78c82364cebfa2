"""The compiled form of matrix expressions: one shared, hash-consed node graph.

Every model gets a bit (``1 << index``) once, at compile time. Every node is
a leaf (one model), an OR (choose one child) or an AND (union of one choice
per child); identical sub-expressions share one node, and nested ORs/ANDs of
the same kind are flattened (both operators are associative, and flattening
keeps the enumeration order). A set reference is simply the referenced set's
root node, so a set used by many others is evaluated once per query.

Nothing here recurses deeper than a node's depth, which ``compile_matrix``
bounds by ``MAX_DEPTH``; building from a syntax tree is iterative.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from swapcore.matrix.dsl import Expr, Ident, Or, Ref

__all__ = ["AND", "LEAF", "OR", "ExpressionGraph", "iter_bits"]

LEAF, OR, AND = 0, 1, 2


def iter_bits(mask: int) -> Iterator[int]:
    """Yield each set bit of ``mask`` as a single-bit int, lowest first."""
    while mask:
        low = mask & -mask
        yield low
        mask ^= low


class ExpressionGraph:
    """Node tables shared by every set of one program (append-only while compiling).

    Parallel lists indexed by node id: ``kind``, ``kids`` (child ids),
    ``support`` (bits of every model below; a leaf's own bit), ``depth``
    (leaf 0) and ``leafy`` (an OR whose children are all leaves).
    """

    __slots__ = (
        "_interned",
        "depth",
        "kids",
        "kind",
        "leafy",
        "model_bits",
        "model_names",
        "support",
    )

    def __init__(self) -> None:
        self.kind: list[int] = []
        self.kids: list[tuple[int, ...]] = []
        self.support: list[int] = []
        self.depth: list[int] = []
        self.leafy: list[bool] = []
        self.model_names: list[str] = []
        self.model_bits: dict[str, int] = {}
        self._interned: dict[tuple[int, int | tuple[int, ...]], int] = {}

    def names_of(self, mask: int) -> list[str]:
        """The model names of the bits in ``mask``, in bit order."""
        names = self.model_names
        return [names[bit.bit_length() - 1] for bit in iter_bits(mask)]

    def leaf(self, model: str) -> int:
        """The node id of the leaf for ``model`` (interning the model's bit)."""
        bit = self.model_bits.get(model)
        if bit is None:
            bit = self.model_bits[model] = 1 << len(self.model_names)
            self.model_names.append(model)
        key = (LEAF, bit)
        nid = self._interned.get(key)
        if nid is None:
            nid = self._new(LEAF, (), bit, 0, False)
            self._interned[key] = nid
        return nid

    def combine(self, kind: int, children: list[int]) -> int:
        """The node id of an OR/AND over ``children`` (flattened, hash-consed)."""
        kids: list[int] = []
        for child in children:
            if self.kind[child] == kind:
                kids.extend(self.kids[child])
            else:
                kids.append(child)
        if len(kids) == 1:
            return kids[0]
        frozen = tuple(kids)
        key = (kind, frozen)
        nid = self._interned.get(key)
        if nid is None:
            support = 0
            for child in frozen:
                support |= self.support[child]
            depth = 1 + max(self.depth[child] for child in frozen)
            leafy = kind == OR and all(self.kind[child] == LEAF for child in frozen)
            nid = self._new(kind, frozen, support, depth, leafy)
            self._interned[key] = nid
        return nid

    def _new(self, kind: int, kids: tuple[int, ...], support: int, depth: int, leafy: bool) -> int:
        self.kind.append(kind)
        self.kids.append(kids)
        self.support.append(support)
        self.depth.append(depth)
        self.leafy.append(leafy)
        return len(self.kind) - 1

    def build(self, root: Expr, resolve: Callable[[str], str], roots: Mapping[str, int]) -> int:
        """Add a syntax tree; identifiers go through ``resolve``, ``+name`` to ``roots[name]``."""
        # Entries: (node, -1) to visit, (node, n) to combine the last n values.
        stack: list[tuple[Expr, int]] = [(root, -1)]
        values: list[int] = []
        while stack:
            node, count = stack.pop()
            if isinstance(node, Ident):
                values.append(self.leaf(resolve(node.name)))
            elif isinstance(node, Ref):
                values.append(roots[node.name])
            elif count >= 0:
                children = values[-count:]
                del values[-count:]
                values.append(self.combine(OR if isinstance(node, Or) else AND, children))
            else:
                # Flatten same-operator nesting here, on the syntax tree, so that
                # `a & (b & (c & ...))` costs linear, not quadratic, time.
                flat: list[Expr] = []
                todo = list(reversed(node.children))
                while todo:
                    child = todo.pop()
                    if type(child) is type(node):
                        todo.extend(reversed(child.children))
                    else:
                        flat.append(child)
                stack.append((node, len(flat)))
                stack.extend((child, -1) for child in reversed(flat))
        return values[0]

    def schedule(self, root: int) -> tuple[int, ...]:
        """Every non-leaf node reachable from ``root``, children before parents, once each."""
        kind, kids = self.kind, self.kids
        seen: set[int] = set()
        order: list[int] = []
        stack = [(root, False)]
        while stack:
            nid, done = stack.pop()
            if done:
                order.append(nid)
            elif nid not in seen and kind[nid] != LEAF:
                seen.add(nid)
                stack.append((nid, True))
                stack.extend((c, False) for c in reversed(kids[nid]) if c not in seen)
        return tuple(order)

    def count(self, root: int, schedule: tuple[int, ...]) -> int:
        """How many combinations the expansion of ``root`` walks, repeats included."""
        counts: dict[int, int] = {}
        for nid in schedule:
            kid_counts = [counts.get(c, 1) for c in self.kids[nid]]
            if self.kind[nid] == OR:
                counts[nid] = sum(kid_counts)
            else:
                total = 1
                for value in kid_counts:
                    total *= value
                counts[nid] = total
        return counts.get(root, 1)

    def iter_masks(self, nid: int) -> Iterator[int]:
        """Lazily yield the model masks of ``nid``'s combinations, repeats included.

        Order: an OR's children left to right; an AND's combinations in
        lexicographic order of its children's (the first child varies slowest).
        Generators nest as deep as the node, never deeper.
        """
        kind = self.kind[nid]
        if kind == LEAF:
            yield self.support[nid]
            return
        if kind == OR:
            for child in self.kids[nid]:
                yield from self.iter_masks(child)
            return
        # Leaf children of an AND are constant; the rest form an odometer whose
        # first wheel turns slowest. Iterative, so a wide AND does not recurse.
        fixed = 0
        wheels: list[int] = []
        for child in self.kids[nid]:
            if self.kind[child] == LEAF:
                fixed |= self.support[child]
            else:
                wheels.append(child)
        if not wheels:
            yield fixed
            return
        last = len(wheels) - 1
        iterators = [self.iter_masks(wheels[0])]
        prefixes = [fixed]
        while iterators:
            level = len(iterators) - 1
            mask = next(iterators[level], None)
            if mask is None:
                iterators.pop()
                prefixes.pop()
            elif level == last:
                yield prefixes[level] | mask
            else:
                iterators.append(self.iter_masks(wheels[level + 1]))
                prefixes.append(prefixes[level] | mask)
