"""The sentinel: kills a gateway's model process groups once the gateway is gone.

This is a program, not a library module: the gateway runs it as
``python -I -S <this file> <gateway pid>`` (it imports nothing outside the
standard library, so it starts in about 15 ms) in its own session, with the
read end of a pipe as stdin and nothing else open but /dev/null. The gateway
writes one line per event:

- ``+PGID``: a model process group was spawned; watch it.
- ``-PGID``: that group was stopped and reaped; forget it.
- ``bye``: a clean goodbye; exit at once and signal nothing.

End of file without ``bye`` means the gateway died (however: SIGKILL, a
crash, an exit that skipped its cleanup). So does a change of parent pid,
which covers a forked copy of the gateway still holding the pipe open. The
sentinel then sends SIGTERM to every group it watches, gives them up to
``GRACE`` seconds to exit, sends SIGKILL to whatever is left, and exits. It
only ever signals groups it was told about, and never group 0, 1 or its own.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

# How long the watched groups get between SIGTERM and SIGKILL: the whole
# clean-up must end well within 2 s of the gateway's death.
GRACE = 1.0
# How often the parent pid is checked while the pipe is quiet.
_PARENT_CHECK = 0.5
_POLL = 0.02
GOODBYE = b"bye"


def parse_line(line: bytes, groups: set[int]) -> bool:
    """Apply one line to ``groups``; True for the goodbye. Malformed lines are ignored."""
    line = line.strip()
    if line == GOODBYE:
        return True
    if len(line) < 2 or line[:1] not in (b"+", b"-") or not line[1:].isdigit():
        return False
    pgid = int(line[1:])
    if pgid <= 1:
        return False  # killpg(0) is our own group, killpg(1) is init's
    if line[:1] == b"+":
        groups.add(pgid)
    else:
        groups.discard(pgid)
    return False


def _signal(pgid: int, sig: int) -> bool:
    """Send ``sig`` to group ``pgid``; False once the group is gone (or not ours to signal)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_groups(groups: set[int], grace: float = GRACE) -> None:
    """SIGTERM every group, wait up to ``grace`` seconds for them to go, SIGKILL the rest."""
    own = os.getpgrp()
    alive = {pgid for pgid in groups if pgid != own and _signal(pgid, signal.SIGTERM)}
    for pgid in alive:
        _signal(pgid, signal.SIGCONT)  # a stopped process would never see the SIGTERM
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(_POLL)
        alive = {pgid for pgid in alive if _signal(pgid, 0)}
    for pgid in alive:
        _signal(pgid, signal.SIGKILL)


def watch(gateway: int, fd: int = 0) -> set[int] | None:
    """Read events from ``fd`` until the gateway leaves: None after a goodbye, else the groups."""
    groups: set[int] = set()
    pending = b""
    while True:
        ready, _, _ = select.select([fd], [], [], _PARENT_CHECK)
        if not ready:
            if os.getppid() != gateway:
                return groups  # the gateway died; a fork of it still holds the pipe
            continue
        data = os.read(fd, 4096)
        if not data:
            return groups
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            if parse_line(line, groups):
                return None


def main(argv: list[str]) -> int:
    """Run the sentinel for the gateway whose pid is ``argv[1]``."""
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: _sentinel.py GATEWAY_PID  (run by swapcore, not by hand)", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    groups = watch(int(argv[1]))
    if groups:
        kill_groups(groups)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
