"""Process states and the protocols a model server process implements."""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

__all__ = ["Process", "ProcessState", "SleepingProcess", "can_sleep"]


class ProcessState(enum.Enum):
    """The life-cycle state of one model server process.

    ``SLEEPING`` is reached only by processes that support sleep
    (:class:`SleepingProcess`): alive, its accelerator memory given back, its
    host memory held. Going to sleep shows as ``STOPPING``, waking as
    ``STARTING``.
    """

    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    SHUTDOWN = "shutdown"
    SLEEPING = "sleeping"

    @property
    def is_running(self) -> bool:
        """True for states that occupy accelerator memory: starting, ready, stopping."""
        return self in _RUNNING

    @property
    def is_resident(self) -> bool:
        """True while the server process is alive: running or sleeping."""
        return self in _RESIDENT


_RUNNING = frozenset({ProcessState.STARTING, ProcessState.READY, ProcessState.STOPPING})
_RESIDENT = _RUNNING | {ProcessState.SLEEPING}


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
        waits for the stop, then starts; sleeping: wakes it (a process that
        cannot wake is stopped and started cold); shutdown: raises. Raises on
        start failure or when ``timeout`` seconds pass without readiness.
        """
        ...

    async def stop(self, timeout: float) -> None:
        """Stop the process; idempotent; returns once it is stopped."""
        ...


@runtime_checkable
class SleepingProcess(Process, Protocol):
    """A process that can also sleep instead of stopping.

    Asleep (``SLEEPING``), the server is alive and keeps its host memory
    (at level 1 its weights are in host RAM; level 2 drops them) but gives
    its accelerator memory back; ``ensure_ready`` wakes it, far faster than a
    cold start. A process that dies while asleep is simply ``STOPPED``.
    """

    @property
    def sleep_level(self) -> int | None:
        """The level it sleeps at (1 or 2), or None when it must not sleep."""
        ...

    async def sleep(self, timeout: float) -> None:
        """Put the ready process to sleep; return once it is ``SLEEPING``.

        Sleeping: returns at once. Raises when it cannot sleep now (it is not
        ready, the server refused, ``timeout`` passed): the caller then stops
        it instead.
        """
        ...


def can_sleep(process: object) -> bool:
    """True when ``process`` implements :class:`SleepingProcess` with a sleep level."""
    return isinstance(process, SleepingProcess) and process.sleep_level is not None
