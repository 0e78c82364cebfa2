"""``swapcore check CONFIG``: validate a llama-swap ``config.yaml`` and summarise it.

Loads the configuration exactly as ``swapcore serve`` would (the loader, the
planner, each model's command line), then prints what it found: models with
their command, proxy, port and upstream timeouts, the groups or the matrix sets with their
combination counts, aliases, peers, preload, scheduler settings, and every
warning. Exit status 0 when the configuration is valid (warnings or not), 2
when it is not, with one ``swapcore check: error: ...`` line per problem on
stderr. ``--json`` prints the same as one JSON document on stdout (with
``"valid": false`` and the ``errors`` when invalid).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import TYPE_CHECKING, Any

from swapcore.errors import ConfigError

if TYPE_CHECKING:
    from swapcore.config import GatewayConfig

__all__ = ["check_commands", "check_config", "error_lines", "format_summary", "register"]

_HELP = """\
examples:
  swapcore check config.yaml
  swapcore check config.yaml --json | jq .models

exit status: 0 valid (even with warnings), 2 invalid (one error line per problem)
"""


def register(subparsers: Any) -> None:
    """Add the ``check`` subcommand."""
    parser = subparsers.add_parser(
        "check",
        help="validate a llama-swap config.yaml and summarise it",
        description=(
            "Validate a llama-swap config.yaml as `swapcore serve` would load it and print "
            "its models, groups or matrix sets, aliases, peers, preload, scheduler "
            "settings and every warning."
        ),
        epilog=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", metavar="CONFIG", help="path of the config.yaml to check")
    parser.add_argument(
        "--json", action="store_true", help="print the summary (or the errors) as JSON"
    )
    parser.add_argument(
        "--allow-unsupported",
        action="store_true",
        help="check as `swapcore serve --allow-unsupported` loads: llama-swap keys swapcore "
        "does not implement that would change what is sent upstream or who may call are "
        "warnings, not errors",
    )
    parser.set_defaults(handler=_run)


def error_lines(exc: ConfigError) -> list[str]:
    """The problems a ``ConfigError`` reports, one per line (the loader joins them)."""
    return [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]


def check_commands(config: GatewayConfig) -> None:
    """Raise ``ConfigError`` for any ``cmd``/``cmdStop`` a shell could not split.

    ``swapcore serve`` splits each command with ``shlex`` when it builds the
    model's process; a stray quote must fail here too, naming the key path.
    """
    problems = []
    for model in config.models.values():
        for key, value in (("cmd", model.cmd), ("cmdStop", model.cmd_stop)):
            if not value:
                continue
            try:
                argv = shlex.split(value.replace("\\\n", " "))
            except ValueError as exc:
                problems.append(f"models.{model.id}.{key}: cannot be split into arguments: {exc}")
                continue
            if not argv:
                problems.append(f"models.{model.id}.{key}: must not be empty")
    if problems:
        raise ConfigError("\n".join(problems))


def check_config(path: str, *, allow_unsupported: bool = False) -> GatewayConfig:
    """Load ``path`` and check it as ``serve`` would; return the :class:`GatewayConfig`.

    ``allow_unsupported`` is passed to :func:`~swapcore.config.load_config`.

    Raises :class:`~swapcore.ConfigError` (one problem per line) when the
    file cannot be read, parsed or validated, when the planner rejects it,
    or when a model's command cannot be split into arguments.
    """
    from swapcore.config import build_planner, load_config

    config = load_config(path, allow_unsupported=allow_unsupported)
    build_planner(config)
    check_commands(config)
    return config


def _summary(config: GatewayConfig) -> dict[str, Any]:
    """``GatewayConfig.summary()`` plus what the CLI shows beyond it."""
    summary: dict[str, Any] = {"valid": True, **config.summary()}
    for entry in summary["models"]:
        model = config.models[entry["id"]]
        entry["cmd"] = model.cmd
        entry["cmd_stop"] = model.cmd_stop
        entry["estimate"] = _estimate(model.cmd)
    summary["aliases"] = dict(config.aliases)
    matrix = summary.get("matrix")
    if matrix is not None:
        from swapcore.matrix import compile_matrix

        spec = config.routing.matrix
        assert spec is not None  # the summary has a matrix only for the matrix router
        program = compile_matrix(dict(spec.sets), vars=spec.vars, models=list(config.models))
        for entry in matrix["sets"]:
            # The arithmetic count never expands; an upper bound when a model repeats.
            entry["combinations_bound"] = program.combination_count(entry["name"])
    return summary


def _estimate(command: str) -> dict[str, Any] | None:
    """The memory estimate of a llama.cpp command whose ``-m`` file exists (else None).

    ``{"error": ...}`` when the file is there but cannot be estimated (not a
    GGUF file, the memory extra missing).
    """
    import os

    from swapcore.memory import estimate_command, parse_llama_options

    try:
        options = parse_llama_options(command)
    except (ConfigError, ValueError):
        return None
    if options.model is None or not os.path.isfile(options.model):
        return None
    try:
        return estimate_command(command).to_dict()
    except (ConfigError, ImportError) as exc:
        return {"error": str(exc)}


def _flags(group: dict[str, Any]) -> str:
    return " ".join(
        f"{flag}={'yes' if group[flag] else 'no':<3}"
        for flag in ("swap", "exclusive", "persistent")
    )


def _seconds(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:g} s"


def _filters(filters: dict[str, Any]) -> str:
    """``strip a, b; set c; set for m:high: d`` (names only), or "" for no filters."""
    parts = []
    if filters["strip_params"]:
        parts.append("strip " + ", ".join(filters["strip_params"]))
    if filters["set_params"]:
        parts.append("set " + ", ".join(filters["set_params"]))
    for name, params in filters["set_params_by_id"].items():
        parts.append(f"set for {name}: " + (", ".join(params) or "nothing"))
    return "; ".join(parts)


def _timeouts(timeouts: dict[str, float | None]) -> str:
    """``connect 30 s, responseHeader none, ...``: YAML key names, ``none`` for no timeout."""
    from swapcore.config import TIMEOUT_KEYS

    return ", ".join(
        f"{key} {'none' if timeouts[field] is None else f'{timeouts[field]:g} s'}"
        for key, field in TIMEOUT_KEYS.items()
    )


def _residency(model: dict[str, Any]) -> str:
    """``sleeps at level 1 (/sleep?level={level}, /wake_up); memory 16 GiB; ...`` or ""."""
    from swapcore.config.schema import format_size

    parts = []
    if model["sleep_level"] is not None:
        parts.append(
            f"sleeps at level {model['sleep_level']} "
            f"({model['sleep_endpoint']}, {model['wake_endpoint']})"
        )
    if model["host_memory"] is not None:
        parts.append(f"host memory {format_size(model['host_memory'])}")
    if model["memory"] is not None:
        parts.append(f"memory {format_size(model['memory'])}")
    costs = model["swap_costs"]
    if costs:
        parts.append("swap costs " + ", ".join(f"{k} {v:g} s" for k, v in costs.items()))
    return "; ".join(parts)


def _estimate_line(estimate: dict[str, Any]) -> str:
    """``estimate: 5.2 GiB (weights 4.1, KV cache 0.9, compute 0.2 GiB; 32 of 32 layers)``."""
    if "error" in estimate:
        return f"estimate: unavailable ({estimate['error']})"
    gib = 1024**3
    return (
        f"estimate: {estimate['total_bytes'] / gib:.2f} GiB (weights "
        f"{estimate['weights_bytes'] / gib:.2f}, KV cache {estimate['kv_cache_bytes'] / gib:.2f}, "
        f"compute {estimate['overhead_bytes'] / gib:.2f} GiB; {estimate['layers']} of "
        f"{estimate['n_layer']} layers, {estimate['n_ctx']} KV cells)"
    )


def _placement_lines(placement: dict[str, Any]) -> str:
    """The ``gpus:`` section: devices and budgets, then each model's size and its source."""
    from swapcore.config.schema import format_size

    devices = placement["devices"]
    if devices == "auto":
        shown = f"auto (each GPU's memory less {format_size(placement['reserve'])})"
    else:
        shown = ", ".join(f"{name} {format_size(size)}" for name, size in devices.items())
    split = "spread over several when one is not enough" if placement["split"] else "never split"
    env = placement["env"] or "no variable"
    lines = [f"gpus: {shown}; {split}; each start gets {env}"]
    costs = placement["evict_costs"]
    if costs:
        lines.append("  evict costs: " + ", ".join(f"{k}={v}" for k, v in costs.items()))
    width = max((len(m) for m in placement["sizes"]), default=0)
    for model, size in placement["sizes"].items():
        source = placement["size_sources"].get(model, "")
        lines.append(f"  {model:<{width}}  {format_size(size)}  ({source})")
    return "\n".join(lines)


def _one_line(command: str) -> str:
    return " ".join(command.split())


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def format_summary(summary: dict[str, Any]) -> str:
    """Render a :func:`_summary` dict as the human-readable ``check`` report."""
    lines: list[str] = []
    add = lines.append
    models = summary["models"]
    warnings = summary["warnings"]
    add(
        f"{summary['source']}: valid: {_plural(len(models), 'model')}, "
        f"router {summary['router']}, {_plural(len(warnings), 'warning')}"
    )

    add("")
    add(f"models ({len(models)}):")
    width = max((len(m["id"]) for m in models), default=0)
    for m in models:
        port = "-" if m["port"] is None else str(m["port"])
        add(f"  {m['id']:<{width}}  port {port}  proxy {m['proxy']}")
        pad = " " * (width + 4)
        add(f"{pad}cmd: {_one_line(m['cmd'])}")
        if m["cmd_stop"]:
            add(f"{pad}cmdStop: {_one_line(m['cmd_stop'])}")
        extras = [f"check {m['check_endpoint']}"]
        if m["name"]:
            extras.append(f"name {m['name']!r}")
        if m["aliases"]:
            extras.append("aliases " + ", ".join(m["aliases"]))
        extras.append(f"ttl {'never' if not m['ttl'] else _seconds(m['ttl'])}")
        extras.append(f"unload timeout {_seconds(m['unload_timeout'])}")
        extras.append(f"concurrency {m['concurrency_limit']}")
        if m["use_model_name"]:
            extras.append(f"upstream name {m['use_model_name']}")
        if m["unlisted"]:
            extras.append("unlisted")
        add(f"{pad}{'; '.join(extras)}")
        add(f"{pad}timeouts: {_timeouts(m['timeouts'])}")
        filters = _filters(m["filters"])
        if filters:
            add(f"{pad}filters: {filters}")
        residency = _residency(m)
        if residency:
            add(f"{pad}{residency}")
        estimate = m.get("estimate")
        if estimate is not None:
            add(f"{pad}{_estimate_line(estimate)}")

    add("")
    if summary["router"] == "group":
        groups = summary["groups"]
        add(f"groups ({len(groups)}):")
        gwidth = max((len(g["name"]) for g in groups), default=0)
        for g in groups:
            members = ", ".join(g["members"]) or "(no members)"
            add(f"  {g['name']:<{gwidth}}  {_flags(g)}  members: {members}")
    elif summary["router"] == "memory":
        from swapcore.config.schema import format_size

        memory = summary["memory"]
        add(f"memory budget {format_size(memory['budget'])}:")
        for model, size in memory["sizes"].items():
            add(f"  {model}  {format_size(size)}")
    elif summary["router"] == "placement":
        add(_placement_lines(summary["placement"]))
    else:
        matrix = summary["matrix"]
        sets = matrix["sets"]
        add(f"matrix ({_plural(len(sets), 'set')}, {_plural(len(matrix['models']), 'model')}):")
        swidth = max((len(s["name"]) for s in sets), default=0)
        for s in sets:
            if s["combinations"] is None:
                count = (
                    f"more than {s['combinations_at_least']:,} combinations "
                    f"(at most {s['combinations_bound']:,})"
                )
            else:
                count = _plural(s["combinations"], "combination")
            add(f"  {s['name']:<{swidth}}  {s['dsl']}  ->  {count}")
        if matrix["vars"]:
            add("  vars: " + ", ".join(f"{k}={v}" for k, v in matrix["vars"].items()))
        costs = matrix["evict_costs"]
        add(
            "  evict costs: "
            + (", ".join(f"{k}={v}" for k, v in costs.items()) if costs else "1 each")
        )

    add("")
    aliases = summary["aliases"]
    add("aliases: " + (", ".join(f"{a} -> {m}" for a, m in aliases.items()) if aliases else "none"))
    peers = summary["peers"]
    if peers:
        add(f"peers ({len(peers)}):")
        for p in peers:
            key = ", api key set" if p["api_key"] else ""
            add(f"  {p['name']}: {p['proxy']}{key}; models: {', '.join(p['models'])}")
            add(f"    timeouts: {_timeouts(p['timeouts'])}")
            filters = _filters(p["filters"])
            if filters:
                add(f"    filters: {filters}")
    else:
        add("peers: none")
    add("preload: " + (", ".join(summary["preload"]) or "none"))
    settings = summary["settings"]
    priority = summary["priority"]
    add(
        f"scheduler: {summary['scheduler']}, max_wait {_seconds(settings['max_wait'])}, "
        f"default concurrency {settings['default_concurrency_limit']}, "
        f"start_retries {settings['start_retries']}, priority "
        + (", ".join(f"{m}={p}" for m, p in priority.items()) if priority else "none")
    )
    add(
        f"settings: healthCheckTimeout {_seconds(settings['health_check_timeout'])}, "
        f"startPort {settings['start_port']}, "
        f"globalTTL {'never' if not settings['global_ttl'] else _seconds(settings['global_ttl'])}, "
        f"unloadTimeout {_seconds(settings['unload_timeout'])}, "
        f"sendLoadingState {'true' if settings['send_loading_state'] else 'false'}, "
        f"apiKeys {settings['api_keys']}"
    )
    if settings["host_memory_budget"] is not None or settings["costs_file"] is not None:
        from swapcore.config.schema import format_size

        host = settings["host_memory_budget"]
        add(
            "residency: host_memory_budget "
            + ("unbounded" if host is None else format_size(host))
            + f", costs_file {settings['costs_file'] or 'none'}"
        )

    add("")
    if warnings:
        add(f"warnings ({len(warnings)}):")
        lines.extend(f"  {w}" for w in warnings)
    else:
        add("warnings: none")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    try:
        config = check_config(args.config, allow_unsupported=args.allow_unsupported)
    except ImportError as exc:  # the config extra (PyYAML) is missing
        print(f"swapcore check: error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        problems = error_lines(exc)
        if args.json:
            json.dump(
                {"valid": False, "source": args.config, "errors": problems},
                sys.stdout,
                indent=2,
            )
            sys.stdout.write("\n")
        for line in problems:
            print(f"swapcore check: error: {line}", file=sys.stderr)
        return 2
    summary = _summary(config)
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_summary(summary))
    return 0
