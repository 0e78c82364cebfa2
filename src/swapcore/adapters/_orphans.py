"""No orphans: a model's processes die with the gateway, however the gateway ends.

Two mechanisms, because each alone has a gap:

- **Parent-death signal (Linux).** Each model's leader is spawned with
  ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, set in the child between fork and
  exec, so the kernel kills it the moment the thread that spawned it (the
  event loop's thread) ends. It reaches only the leader, not the helpers it
  forks.
- **The sentinel** (``_sentinel.py``): one small process per gateway process,
  started on the first spawn, told each model's process group over a pipe
  when it is spawned and when it is reaped. When the pipe reaches end of
  file without a goodbye, the gateway is gone: it SIGTERMs every group it
  was told about, SIGKILLs what is left after a second, and exits. It covers
  the helpers, and the leaders where there is no PR_SET_PDEATHSIG.

If the sentinel dies, the next spawn starts a new one and tells it every
group still alive. At interpreter exit the gateway says goodbye when no
group is left (the sentinel exits without signalling anything) and simply
closes the pipe otherwise (the leftovers are killed). Everything here is
best effort: a sentinel that cannot start is logged once, never an error.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

__all__ = ["SentinelLink", "child_preexec", "forget_group", "sentinel", "watch_group"]

logger = logging.getLogger("swapcore.adapters.subprocess")

_PR_SET_PDEATHSIG = 1
# How long exit waits for the sentinel: its grace period, plus a margin.
_EXIT_WAIT = 2.0
_SCRIPT = Path(__file__).with_name("_sentinel.py")
# In a forked child: the parent's sentinel (see SentinelLink.after_fork).
_not_ours: list[subprocess.Popen[bytes]] = []


# ------------------------------------------------------- parent-death signal


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    ulong = ctypes.c_ulong
    prctl.argtypes = [ctypes.c_int, ulong, ulong, ulong, ulong]
    prctl.restype = ctypes.c_int
    return cast("Callable[..., int]", prctl)


_prctl: Callable[..., int] | None = None
_prctl_loaded = False


def child_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with this thread; None where unsupported.

    The signal is tied to the calling thread: call this, and spawn, from the
    thread that will outlive the child (the event loop's).
    """
    global _prctl, _prctl_loaded
    if not _prctl_loaded:
        _prctl, _prctl_loaded = _load_prctl(), True
    prctl = _prctl
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        # Runs in the child between fork and exec: no locks, no allocation worth the name.
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)  # the parent died before the signal was armed: it never will be

    return preexec


# ---------------------------------------------------------------- the sentinel


class SentinelLink:
    """The gateway's side of one sentinel: start it, tell it about groups, say goodbye.

    Thread-safe; each method is quick and never raises (a failure is logged
    once and the link tries again on the next ``watch``).
    """

    def __init__(self, command: Callable[[int], list[str]] | None = None) -> None:
        self._command = command or _sentinel_command
        self._lock = threading.Lock()
        self._groups: set[int] = set()
        self._process: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None
        self._warned = False

    @property
    def pid(self) -> int | None:
        """The running sentinel's pid, or None."""
        process = self._process
        return None if process is None or process.poll() is not None else process.pid

    @property
    def groups(self) -> frozenset[int]:
        """The process groups the sentinel is told to kill if the gateway dies."""
        return frozenset(self._groups)

    def watch(self, pgid: int) -> None:
        """Have the sentinel kill group ``pgid`` if this process dies; starts it if needed."""
        with self._lock:
            self._groups.add(pgid)
            if not self._send(f"+{pgid}\n".encode()):
                self._restart()

    def forget(self, pgid: int) -> None:
        """Group ``pgid`` is gone (stopped and reaped): never signal it again."""
        with self._lock:
            self._groups.discard(pgid)
            if self._fd is not None and not self._send(f"-{pgid}\n".encode()):
                self._drop()  # the next watch starts a new sentinel with the live groups

    def close(self, *, goodbye: bool, wait: float = _EXIT_WAIT) -> None:
        """Part from the sentinel and reap it (waiting at most ``wait`` seconds).

        ``goodbye=True``: it exits without signalling anything. ``False``: it
        acts as if this process had died, killing every group it watches.
        """
        with self._lock:
            if goodbye:
                self._send(b"bye\n")
            process = self._process
            self._drop(kill=False)
        if process is not None:
            try:
                process.wait(wait)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def after_fork(self) -> None:
        """In a forked child: let go of the parent's sentinel without telling it anything."""
        self._lock = threading.Lock()  # another thread may have held it at the fork
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        if self._process is not None:
            # Not our child: never wait for it. Kept referenced, or its __del__ would
            # warn "still running" from every forked child, before its exec.
            _not_ours.append(self._process)
        self._process = None
        self._groups = set()

    # ------------------------------------------------------------- internals

    def _send(self, data: bytes) -> bool:
        """Write one message; False when there is no live sentinel or it does not read."""
        fd, process = self._fd, self._process
        if fd is None or process is None or process.poll() is not None:
            return False
        try:
            # Messages are far below PIPE_BUF: a write is all or nothing.
            return os.write(fd, data) == len(data)
        except OSError:  # EPIPE: it died; EAGAIN: it stopped reading
            return False

    def _restart(self) -> None:
        self._drop()
        try:
            read_end, write_end = os.pipe()
        except OSError as exc:
            self._warn(f"cannot create a pipe ({exc})")
            return
        try:
            process = subprocess.Popen(
                self._command(os.getpid()),
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,  # terminal signals to our group do not reach it
                cwd="/",
            )
        except (OSError, ValueError) as exc:
            os.close(write_end)
            self._warn(f"cannot start it ({exc})")
            return
        finally:
            os.close(read_end)
        os.set_blocking(write_end, False)  # a sentinel that stops reading must never block us
        self._process, self._fd = process, write_end
        replay = "".join(f"+{pgid}\n" for pgid in sorted(self._groups)).encode()
        try:
            os.write(write_end, replay)
        except OSError as exc:
            self._warn(f"it does not read ({exc})")
            self._drop()
            return
        logger.debug("sentinel pid %d started, watching %d groups", process.pid, len(self._groups))

    def _drop(self, *, kill: bool = True) -> None:
        """Forget the current sentinel: close the pipe; kill and reap it if it still runs."""
        fd, process = self._fd, self._process
        self._fd = self._process = None
        if fd is not None:
            os.close(fd)
        if process is not None and kill and process.poll() is None:
            process.kill()
            process.wait()

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "no sentinel: %s; model servers may outlive this process if it is killed", why
            )


def _sentinel_command(gateway: int) -> list[str]:
    if _SCRIPT.is_file() and sys.executable:
        # -I -S: no site-packages, no environment variables, no user site: ~15 ms to start.
        return [sys.executable, "-I", "-S", str(_SCRIPT), str(gateway)]
    return [sys.executable, "-m", "swapcore.adapters._sentinel", str(gateway)]


# ----------------------------------------------------- this process's sentinel

_link = SentinelLink()
sentinel = _link
"""The sentinel of this process (tests read its ``pid`` and ``groups``)."""


def watch_group(pgid: int) -> None:
    """Have this process's sentinel kill group ``pgid`` if this process dies."""
    _link.watch(pgid)


def forget_group(pgid: int) -> None:
    """Group ``pgid`` was stopped and reaped: the sentinel must never signal it."""
    _link.forget(pgid)


def _at_exit() -> None:
    # Every model stopped cleanly: goodbye. Models left running: they die with us.
    _link.close(goodbye=not _link.groups)


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_link.after_fork)
