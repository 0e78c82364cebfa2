"""Entry point of the ``swapcore`` command: argument parsing and error reporting.

Each subcommand lives in its own module, which exposes
``register(subparsers) -> None``; ``register`` adds a parser whose default
``handler`` is a callable taking the parsed ``argparse.Namespace`` and
returning an exit status. A user mistake (``ConfigError``, a missing file) is
printed as one line on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence

from swapcore.errors import SwapcoreError

__all__ = ["build_parser", "hoist_global_flags", "main"]

# Subcommand modules, in the order `swapcore --help` lists them.
_COMMAND_MODULES: tuple[str, ...] = (
    # <cli-commands>
    "swapcore.cli.serve",
    "swapcore.cli.check",
    "swapcore.cli.explain",
    "swapcore.cli.simulate",
    "swapcore.cli.estimate",
    "swapcore.cli.fakemodel",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``swapcore`` argument parser with every subcommand registered."""
    from swapcore import __version__

    parser = argparse.ArgumentParser(
        prog="swapcore",
        description="Swap-and-collation core for LLM gateways: serve, check and simulate.",
    )
    parser.add_argument("--version", action="version", version=f"swapcore {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log output (-v info, -vv debug)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


_GLOBAL_FLAG = re.compile(r"-v+|--verbose")


def hoist_global_flags(argv: Sequence[str]) -> list[str]:
    """``argv`` with the global flags given after the subcommand moved before it.

    ``swapcore serve -v config.yaml`` means ``swapcore -v serve config.yaml``
    (``-v``, ``-vv``, ``--verbose``); nothing after ``--`` moves.
    """
    args = list(argv)
    command = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
    if command is None:
        return args
    end = args.index("--") if "--" in args[command:] else len(args)
    moved = [a for a in args[command + 1 : end] if _GLOBAL_FLAG.fullmatch(a)]
    if not moved:
        return args
    kept = [a for a in args[command + 1 : end] if not _GLOBAL_FLAG.fullmatch(a)]
    return [*args[:command], *moved, args[command], *kept, *args[end:]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``swapcore`` command and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(hoist_global_flags(sys.argv[1:] if argv is None else argv))
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    level = logging.WARNING - 10 * min(int(args.verbose), 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        status: int = handler(args)
    except (SwapcoreError, OSError) as exc:
        print(f"swapcore {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
