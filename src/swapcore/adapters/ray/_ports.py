"""Each host on one machine gets its own block of ports for its models.

A llama-swap configuration hands out ``${PORT}`` from ``startPort`` on. On
a real cluster each host is its own machine and keeps those ports. When
several hosts share a machine (a local test cluster, or several GPU sets of
one box), the second would collide with the first, so each host reserves a
block: the configuration's own ports when no other live host on this
machine holds them, else the next free block. Reservations are a small
JSON file beside a lock in the temporary directory, keyed by process id; a
dead process' block is free again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["release_ports", "reserve_ports"]

_DIR = Path(tempfile.gettempdir()) / "swapcore-ray-ports"
_MAX_PORT = 65535


@contextlib.contextmanager
def _locked() -> Iterator[dict[str, list[int]]]:
    _DIR.mkdir(exist_ok=True)
    with open(_DIR / "lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = _DIR / "blocks.json"
        try:
            blocks = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            blocks = {}
        blocks = {pid: span for pid, span in blocks.items() if _alive(int(pid))}
        yield blocks
        path.write_text(json.dumps(blocks))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def reserve_ports(start: int, count: int) -> int:
    """The first port of a block of ``count`` ports reserved for this process.

    ``start`` (the configuration's ``startPort``) when no other live
    process on this machine holds any of them and they are free; else the
    next such block. Raises ``OSError`` when no block is left.
    """
    count = max(count, 1)
    pid = os.getpid()
    with _locked() as blocks:
        blocks.pop(str(pid), None)
        taken = [span for span in blocks.values()]
        first = start
        while first + count - 1 <= _MAX_PORT:
            last = first + count - 1
            clash = [span for span in taken if span[0] <= last and first <= span[1]]
            if clash:
                first = max(span[1] for span in clash) + 1
                continue
            if all(_free(port) for port in range(first, last + 1)):
                blocks[str(pid)] = [first, last]
                return first
            first += count
        raise OSError(f"no block of {count} free ports from {start} up")


def release_ports() -> None:
    """Give back this process' block."""
    with _locked() as blocks:
        blocks.pop(str(os.getpid()), None)
