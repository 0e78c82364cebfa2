"""Process states and the protocol a model server process implements."""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

__all__ = ["Process", "ProcessState"]


class ProcessState(enum.Enum):
    """The life-cycle state of one model server process."""

    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    SHUTDOWN = "shutdown"

    @property
    def is_running(self) -> bool:
        """True for states that occupy resources: starting, ready, stopping."""
        return self in _RUNNING


_RUNNING = frozenset({ProcessState.STARTING, ProcessState.READY, ProcessState.STOPPING})


@runtime_checkable
class Process(Protocol):
    """One upstream model server that can be started, health-checked and stopped.

    Read ``state`` only to advise (what to evict, what to show). To act, call
    ``ensure_ready``: it makes the start decision itself, so a process that is
    stopping on its own (idle TTL, crash, operator) is waited for and started
    again rather than skipped.
    """

    @property
    def state(self) -> ProcessState:
        """The current state; may change on its own at any time."""
        ...

    async def ensure_ready(self, timeout: float) -> None:
        """Return once the process is ready, starting it if needed.

        ready: returns at once; stopped: starts and waits for ready; stopping:
        waits for the stop, then starts; shutdown: raises. Raises on start
        failure or when ``timeout`` seconds pass without readiness.
        """
        ...

    async def stop(self, timeout: float) -> None:
        """Stop the process; idempotent; returns once it is stopped."""
        ...
