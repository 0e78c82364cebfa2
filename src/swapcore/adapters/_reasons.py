"""Why a start failed, in words: how a child ended, why a command could not run.

Only the program's name (the basename of ``argv[0]``) ever appears: a
command's arguments and environment may hold secrets, and these words reach
logs and, as the first line of a 502, HTTP clients.
"""

from __future__ import annotations

import os
import signal

__all__ = ["cannot_run", "exit_reason"]


def exit_reason(code: int, when: str) -> str:
    """How a child ended, in words: its exit code, or the signal that killed it."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name} (exit code {code}) {when}"
    return f"exited with code {code} {when}"


def cannot_run(
    program: str, exc: OSError, cwd: str | os.PathLike[str] | None, *, what: str = ""
) -> str:
    """Why a command could not be run, naming only its program (never its arguments)."""
    why = exc.strerror or type(exc).__name__
    label = f"{what} {program!r}" if what else repr(program)
    if cwd is not None and exc.filename is not None and os.fspath(exc.filename) == os.fspath(cwd):
        return f"cannot run {label}: working directory {os.fspath(cwd)!r}: {why}"
    return f"cannot run {label}: {why}"
