"""What would swapcore stop before loading each model? Two policies, one request stream.

Run it with ``python examples/swap_decisions.py`` (after ``pip install .``).

The server here hosts six models but cannot keep them all loaded at once:

* ``nomic-embed`` and ``bge-rerank``, small models a RAG pipeline needs all the time;
* three chat/coding models, ``llama-8b``, ``qwen-14b`` and ``coder-32b``;
* ``whisper``, a speech model.

The same requests are replayed under two eviction policies:

1. **Groups** (llama-swap's ``groups:``): the embedding pair in a persistent,
   non-exclusive group that nothing evicts; the chat models in an exclusive
   group that swaps one member at a time; ``whisper`` in no group, so it lands
   in ``(default)``.
2. **A swap matrix** (llama-swap's ``matrix:``): sets of models allowed to run
   together, written in the DSL; the solver picks the set containing the
   target that stops the cheapest models (the 32B coder costs most to reload).

Nothing is started: planners are pure functions of (target, running), so
this replays the decisions a router would take and prints why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import swapcore

EMBED, RERANK = "nomic-embed", "bge-rerank"
LLAMA, QWEN, CODER = "llama-8b", "qwen-14b", "coder-32b"
WHISPER = "whisper"
MODELS = [EMBED, RERANK, LLAMA, QWEN, CODER, WHISPER]

REQUESTS = [EMBED, LLAMA, RERANK, QWEN, CODER, LLAMA, WHISPER, EMBED]

# llama-swap: groups: {always: {...}, chat: {...}}; whisper is in no group.
GROUPS = {
    "always": swapcore.Group([EMBED, RERANK], swap=False, exclusive=False, persistent=True),
    "chat": swapcore.Group([LLAMA, QWEN, CODER], swap=True, exclusive=True),
}

# llama-swap: matrix: {vars: ..., evict_costs: ..., sets: ...}
MATRIX_VARS = {
    "embed": EMBED,
    "rerank": RERANK,
    "llama": LLAMA,
    "qwen": QWEN,
    "coder": CODER,
    "whisper": WHISPER,
}
MATRIX_SETS = {
    "rag": "embed & rerank & (llama | qwen)",
    "code": "coder & embed",
    "speech": "whisper & llama",
}
EVICT_COSTS = {"coder": 4, "qwen": 2}  # any other model costs 1

Explain = Callable[[str, Sequence[str], Sequence[str]], str]


def replay(planner: swapcore.SwapPlanner, explain: Explain) -> list[list[str]]:
    """Ask ``planner`` about each request in turn and apply its answer to the running set."""
    running: list[str] = []
    rows = []
    for step, target in enumerate(REQUESTS, start=1):
        evict = planner.eviction_for(target, running)
        why = "already running" if target in running else explain(target, running, evict)
        rows.append([str(step), target, _names(running), _names(evict), why])
        running = [m for m in running if m not in evict]
        if target not in running:
            running.append(target)
    return rows


def explain_groups(planner: swapcore.GroupPlanner) -> Explain:
    """Say which group the target is in and why each evicted model goes."""

    def explain(target: str, running: Sequence[str], evict: Sequence[str]) -> str:
        reasons = dict.fromkeys(planner.eviction_reason(target, m) or "?" for m in evict)
        return "; ".join(reasons) or f"group {planner.group_of(target)!r}: nothing to stop"

    return explain


def explain_matrix(solver: swapcore.MatrixSolver) -> Explain:
    """Name the set the solver chose, the models it allows and the eviction cost."""

    def explain(target: str, running: Sequence[str], evict: Sequence[str]) -> str:
        result = solver.solve(target, running)
        if not result.set_name:
            return "in no set: runs alone"
        allowed = " & ".join(result.target_set)
        return f"set {result.set_name!r} ({allowed}), cost {result.total_cost}"

    return explain


def _names(models: Sequence[str]) -> str:
    return ", ".join(models) if models else "-"


def print_table(title: str, rows: list[list[str]]) -> None:
    """Print ``title`` and ``rows`` under a header, each column as wide as its widest cell."""
    header = ["#", "request", "running before", "evict", "why"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print(title)
    print()
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print()


def describe_groups(planner: swapcore.GroupPlanner) -> str:
    """One line per group: its members and what its flags mean."""
    lines = ["Groups (llama-swap `groups:`)"]
    members = {name: ", ".join(group.members) for name, group in planner.groups.items()}
    name_width, members_width = max(map(len, members)), max(map(len, members.values()))
    for name, group in planner.groups.items():
        flags = [
            "swap" if group.swap else "no swap",
            "exclusive" if group.exclusive else "not exclusive",
            *(["persistent"] if group.persistent else []),
        ]
        lines.append(
            f"  {name:<{name_width}}  {members[name]:<{members_width}}  ({', '.join(flags)})"
        )
    return "\n".join(lines)


def describe_matrix() -> str:
    """The matrix sets and evict costs, as written in the config."""
    lines = ["Swap matrix (llama-swap `matrix:`)"]
    width = max(map(len, MATRIX_SETS))
    lines += [f"  {name:<{width}} = {dsl}" for name, dsl in MATRIX_SETS.items()]
    costs = ", ".join(f"{alias} {cost}" for alias, cost in EVICT_COSTS.items())
    lines.append(f"  evict costs: {costs}, any other model 1")
    return "\n".join(lines)


def main() -> None:
    """Build both planners and print the decision tables."""
    groups = swapcore.GroupPlanner(GROUPS, models=MODELS)
    print_table(describe_groups(groups), replay(groups, explain_groups(groups)))

    program = swapcore.compile_matrix(MATRIX_SETS, vars=MATRIX_VARS, models=MODELS)
    solver = swapcore.MatrixSolver(program, evict_costs=EVICT_COSTS)
    print_table(describe_matrix(), replay(swapcore.MatrixPlanner(solver), explain_matrix(solver)))


if __name__ == "__main__":
    main()
