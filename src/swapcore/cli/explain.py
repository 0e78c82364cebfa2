"""``swapcore explain CONFIG --running a,b --request c``: what a swap would evict, and why.

Asks the configuration's own planner, with no process started: for groups,
each running model's fate with :meth:`GroupPlanner.eviction_reason` (or why
it stays); for a swap matrix, the set the solver chooses, its DSL, the
combination and the eviction cost of each running model; for a memory
budget, each model's memory against the budget; for GPUs (``gpus:``), the
devices' room with the running models placed in the order given, where
the model goes and why. When models may sleep, the
evicted models that would sleep rather than stop are named (assuming none is
asleep yet). Model names may be aliases; an unknown name is a one-line error
with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from swapcore.errors import ConfigError, ModelNotFound

if TYPE_CHECKING:
    from swapcore.config import GatewayConfig
    from swapcore.planners.groups import GroupPlanner
    from swapcore.planners.matrix import MatrixPlanner
    from swapcore.planners.memory import MemoryBudgetPlanner
    from swapcore.planners.placement import PlacementPlanner

__all__ = ["explain", "format_explanation", "register"]

_HELP = """\
examples:
  swapcore explain config.yaml --running qwen-7b,embed-small --request llama-8b
  swapcore explain config.yaml --request gpt-4o-mini          # nothing running; aliases work
  swapcore explain config.yaml --running a,b --request c --json
"""


def register(subparsers: Any) -> None:
    """Add the ``explain`` subcommand."""
    parser = subparsers.add_parser(
        "explain",
        help="show what loading a model would evict, and why",
        description=(
            "Show which running models a request would evict under the configuration's "
            "groups or swap matrix, and why (group flags, or the chosen set and costs)."
        ),
        epilog=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", metavar="CONFIG", help="path of the llama-swap config.yaml")
    parser.add_argument(
        "--running",
        metavar="A,B",
        default="",
        help="comma-separated models already loaded (ids or aliases; default: none)",
    )
    parser.add_argument(
        "--request", metavar="MODEL", required=True, help="the requested model (id or alias)"
    )
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON")
    parser.add_argument(
        "--allow-unsupported",
        action="store_true",
        help="load the config as `swapcore serve --allow-unsupported` does",
    )
    parser.set_defaults(handler=_run)


def _resolve(config: GatewayConfig, name: str, option: str) -> str:
    model = config.resolve_model(name)
    if model is None:
        raise ModelNotFound(
            f"{option}: unknown model {name!r} (not a model id or alias in {config.source})"
        )
    return model


def explain(config: GatewayConfig, running: list[str], request: str) -> dict[str, Any]:
    """Explain a swap to ``request`` with ``running`` loaded, as plain (JSON-able) data.

    Names may be aliases (resolved first); raises :class:`~swapcore.ModelNotFound`
    for a name that is neither a local model nor an alias. A model served by
    a peer is reported as forwarded, evicting nothing.
    """
    from swapcore.config import build_planner

    result: dict[str, Any] = {"request": request}
    if config.resolve_model(request) is None:
        peer = config.resolve_peer(request)
        if peer is not None:
            result.update(router="peer", peer=peer[0], model=peer[1], evict=[], keep=[])
            return result
    target = _resolve(config, request, "--request")
    loaded = list(dict.fromkeys(_resolve(config, name, "--running") for name in running))
    result.update(model=target, running=loaded, router=config.routing.router)
    planner = build_planner(config)
    if config.routing.router == "matrix":
        result.update(_explain_matrix(planner, target, loaded))  # type: ignore[arg-type]
    elif config.routing.router == "memory":
        result.update(_explain_memory(planner, target, loaded))  # type: ignore[arg-type]
    elif config.routing.router == "placement":
        result.update(_explain_placement(planner, target, loaded))  # type: ignore[arg-type]
    else:
        result.update(_explain_groups(planner, target, loaded))  # type: ignore[arg-type]
    if planner.sleep_rules is not None:
        evicted = [entry["model"] for entry in result["evict"]]
        result["sleep"] = list(planner.residency_for(target, evicted, ()).sleep)
    result["already_running"] = target in loaded
    if target in loaded:
        # The fast path: a running model is served at once, whatever the policy says.
        result.update(
            evict=[],
            keep=[{"model": m, "reason": "already running"} for m in loaded],
            total_cost=0,
        )
    return result


def _explain_groups(planner: GroupPlanner, target: str, running: list[str]) -> dict[str, Any]:
    target_group = planner.group_of(target)
    flags = planner.groups[target_group]
    evict = set(planner.eviction_for(target, running))
    evicted, kept = [], []
    for model in running:
        group = planner.group_of(model)
        if model in evict:
            evicted.append(
                {"model": model, "group": group, "reason": planner.eviction_reason(target, model)}
            )
        elif group == target_group:
            reason = f"same group {group!r}, which does not swap"
            kept.append({"model": model, "group": group, "reason": reason})
        elif not flags.exclusive:
            kept.append(
                {"model": model, "group": group, "reason": f"{target_group!r} is not exclusive"}
            )
        else:
            kept.append({"model": model, "group": group, "reason": f"{group!r} is persistent"})
    return {
        "group": target_group,
        "flags": {"swap": flags.swap, "exclusive": flags.exclusive, "persistent": flags.persistent},
        "evict": evicted,
        "keep": kept,
    }


def _explain_memory(
    planner: MemoryBudgetPlanner, target: str, running: list[str]
) -> dict[str, Any]:
    from swapcore.config.schema import format_size

    sizes = planner.sizes
    evict = set(planner.eviction_for(target, running))
    evicted, kept = [], []
    for model in running:
        held = format_size(int(sizes[model]))
        if model in evict:
            evicted.append({"model": model, "reason": f"holds {held}; evicted to make room"})
        else:
            kept.append({"model": model, "reason": f"holds {held}; fits beside {target}"})
    return {
        "memory": sizes[target],
        "budget": planner.budget,
        "evict": evicted,
        "keep": kept,
    }


def _explain_placement(
    planner: PlacementPlanner, target: str, running: list[str]
) -> dict[str, Any]:
    """Place ``running`` as the planner would have (in order), then ask it about ``target``."""
    from swapcore.config.schema import format_size

    loaded: list[str] = []
    for model in running:  # load them in the order given, as a day of requests would
        for leaving in planner.eviction_for(model, loaded):
            loaded.remove(leaving)
        planner.on_swap_start(model, loaded)
        loaded.append(model)
    if loaded != running:
        gone = [m for m in running if m not in loaded]
        raise ConfigError(
            f"--running: {', '.join(running)} cannot all be loaded at once on these devices "
            f"(loading them in this order evicts {', '.join(gone)})"
        )
    sizes = planner.sizes
    free = planner.free(running)
    reason = planner.explain(target, running)
    evict = set(planner.eviction_for(target, running))
    evicted: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for model in running:
        where = ", ".join(
            f"{format_size(round(share))} on GPU {device}"
            for device, share in planner.placement_of(model).items()
        )
        entry = {"model": model, "placement": planner.placement_of(model)}
        if model in evict:
            evicted.append({**entry, "reason": f"holds {where}; evicted to make room"})
        else:
            kept.append({**entry, "reason": f"holds {where}; stays"})
    planner.on_swap_start(target, running)
    return {
        "memory": int(sizes[target]),
        "devices": {d: int(b) for d, b in planner.devices.items()},
        "free": {d: int(room) for d, room in free.items()},
        "placement": planner.placement_of(target),
        "why": reason,
        "evict": evicted,
        "keep": kept,
    }


def _explain_matrix(planner: MatrixPlanner, target: str, running: list[str]) -> dict[str, Any]:
    solver = planner.solver
    decision = planner.decide(target, running)
    evict = set(decision.evict)
    evicted, kept = [], []
    for model in running:
        entry = {"model": model, "cost": solver.cost_of(model)}
        if model in evict:
            entry["reason"] = (
                "not in the chosen combination" if decision.set_name else "the target runs alone"
            )
            evicted.append(entry)
        else:
            entry["reason"] = "in the chosen combination"
            kept.append(entry)
    return {
        "set": decision.set_name or None,
        "dsl": decision.dsl or None,
        "combination": list(decision.target_set) if decision.set_name else [target],
        "in_no_set": not decision.set_name,
        "total_cost": decision.total_cost,
        "evict": evicted,
        "keep": kept,
    }


def format_bytes(size: float) -> str:
    """``size`` bytes for people (``14 GiB``)."""
    from swapcore.config.schema import format_size

    return format_size(round(size))


def format_explanation(result: dict[str, Any]) -> str:
    """Render :func:`explain`'s result as text."""
    lines: list[str] = []
    add = lines.append
    request = result["request"]
    if result["router"] == "peer":
        add(
            f"request: {request}: served by peer {result['peer']!r} (model {result['model']!r});"
            " forwarded, nothing local is evicted"
        )
        return "\n".join(lines)
    target = result["model"]
    named = f"{target} (alias {request!r})" if request != target else target
    if result["router"] == "group":
        f = result["flags"]
        flags = " ".join(
            f"{k}={'yes' if f[k] else 'no'}" for k in ("swap", "exclusive", "persistent")
        )
        add(f"request: {named}, group {result['group']!r} ({flags})")
    elif result["router"] == "memory":
        from swapcore.config.schema import format_size

        memory, budget = format_size(result["memory"]), format_size(result["budget"])
        add(f"request: {named}, memory {memory} of the budget {budget}")
    elif result["router"] == "placement":
        from swapcore.config.schema import format_size

        devices = ", ".join(
            f"GPU {d} {format_size(result['free'][d])} free of {format_size(b)}"
            for d, b in result["devices"].items()
        )
        add(f"request: {named}, memory {format_size(result['memory'])}")
        add(f"devices: {devices}")
    else:
        add(f"request: {named}")
    add("running: " + (", ".join(result["running"]) or "nothing"))
    if result["already_running"]:
        add(f"{target} is already running: it is served at once, nothing is evicted")
        return "\n".join(lines)
    if result["router"] == "matrix":
        if result["in_no_set"]:
            add(f"set: none holds {target}: it runs alone")
        else:
            add(f"set: {result['set']} = {result['dsl']}")
            add("combination: " + ", ".join(result["combination"]))
    evict, keep = result["evict"], result["keep"]
    width = max((len(e["model"]) for e in evict + keep), default=0)
    cost_width = max((len(str(e.get("cost", ""))) for e in evict + keep), default=0)

    def row(entry: dict[str, Any]) -> str:
        cost = f"  cost {entry['cost']:<{cost_width}}" if "cost" in entry else ""
        return f"  {entry['model']:<{width}}{cost}  {entry['reason']}"

    total = f" (total cost {result['total_cost']})" if "total_cost" in result else ""
    if evict:
        add(f"evict {len(evict)} of {len(result['running'])}{total}:")
        lines.extend(row(e) for e in evict)
    else:
        add(f"evict: nothing{total}")
    if keep:
        add("keep:")
        lines.extend(row(e) for e in keep)
    if result.get("sleep"):
        add("asleep instead of stopped: " + ", ".join(result["sleep"]))
    if result.get("why"):
        add(f"why: {result['why']}")
    if result.get("placement"):
        where = ", ".join(
            f"{format_bytes(share)} on GPU {d}" for d, share in result["placement"].items()
        )
        add(f"then start: {target} on {where}")
        return "\n".join(lines)
    add(f"then start: {target}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from swapcore.cli.check import check_config, error_lines

    try:
        config = check_config(args.config, allow_unsupported=args.allow_unsupported)
    except ImportError as exc:  # the config extra (PyYAML) is missing
        print(f"swapcore explain: error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        for line in error_lines(exc):
            print(f"swapcore explain: error: {line}", file=sys.stderr)
        return 2
    running = [name.strip() for name in args.running.split(",") if name.strip()]
    result = explain(config, running, args.request.strip())
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_explanation(result))
    return 0
