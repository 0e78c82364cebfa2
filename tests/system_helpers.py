"""Helpers for tests that run real processes and servers: ports and /proc lookups."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

# Ports a test listens on come from below the kernel's ephemeral range: a port
# inside it, free a moment ago, can become the source port of any outgoing
# connection (a client's, the gateway's to its models) before the server
# binds it. Below the range only a listener can take it. Ray's workers take
# 10002-19999, so the pool starts at 20000.
_POOL_FLOOR = 20_000
_pick = random.SystemRandom()  # untouched by tests that seed ``random``


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _pool(count: int) -> range:
    """Where a block of ``count`` ports may start: outside the ephemeral range."""
    low, high = _ephemeral_range()
    if low - count - _POOL_FLOOR >= 1000:
        return range(_POOL_FLOOR, low - count)
    if 65535 - count - high >= 1000:
        return range(high + 1, 65536 - count)
    return range(1024, 65536 - count)  # no room outside it: take the chance


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, outside the ephemeral range."""
    return port_block(1)


def port_block(count: int) -> int:
    """The first of ``count`` consecutive free ports (for ``startPort``)."""
    pool = _pool(count)
    for _ in range(500):
        start = _pick.choice(pool)
        if all(_bindable(port) for port in range(start, start + count)):
            return start
    raise RuntimeError(f"no block of {count} free ports in {pool.start}-{pool.stop - 1}")


def pids_with(marker: str) -> set[int]:
    """PIDs of live processes whose command line contains ``marker``."""
    found = set()
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists; a zombie ('Z') still counts: nobody reaped it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "X"


def model_pids(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line has ``marker``, but no ``swapcore serve``."""
    found = []
    for pid in sorted(pids_with(marker)):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"swapcore\0serve" not in cmdline and state not in ("Z", "X"):
            found.append(pid)
    return found
