"""``swapcore fake-model --port N --load SECONDS ...``: the fake OpenAI-compatible upstream.

A thin wrapper: every argument after ``fake-model`` goes unchanged to
:func:`swapcore.fakemodel.main` (``swapcore fake-model --help`` lists them),
so ``swapcore fake-model ...`` and ``python -m swapcore.fakemodel ...`` are
the same program.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``fake-model`` subcommand (its arguments belong to ``swapcore.fakemodel``)."""
    parser = subparsers.add_parser(
        "fake-model",
        help="run a fake OpenAI-compatible model server (for demos and tests)",
        description="Run a fake OpenAI-compatible model server with a configurable load delay.",
        add_help=False,
        # No option of its own: everything after `fake-model` (even --help)
        # is passed through to swapcore.fakemodel's own parser.
        prefix_chars="\0",
    )
    parser.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from swapcore.fakemodel import main

    try:
        return main(list(args.argv))
    except SystemExit as exc:  # argparse's --help and usage errors
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
