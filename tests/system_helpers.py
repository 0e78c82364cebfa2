"""Helpers for tests that run real processes and servers: ports and /proc lookups."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_block(count: int) -> int:
    """The first of ``count`` consecutive free ports (for ``startPort``)."""
    for _ in range(200):
        start = free_port()
        if start + count >= 65535:
            continue
        free = True
        for port in range(start, start + count):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return start
    raise RuntimeError("no block of free ports")


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
