"""vLLM's sleep mode, as the fake model serves it.

vLLM started with ``--enable-sleep-mode`` (and ``VLLM_SERVER_DEV_MODE=1``)
serves ``POST /sleep?level=N`` (level 1: weights to host RAM; level 2:
weights dropped), ``POST /wake_up`` and ``GET /is_sleeping``. While asleep
it refuses generation requests with an error; its process, its port and its
``/health`` stay up. :class:`SleepMode` is that state machine with the
configured timings; the fake model's app routes the three paths to it.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Literal

__all__ = ["SLEEP_PATHS", "SleepMode"]

SLEEP_PATHS = frozenset({"/sleep", "/wake_up", "/is_sleeping"})
"""The paths sleep mode adds (404 without ``--sleep-mode``, as vLLM without its flag)."""

State = Literal["awake", "falling asleep", "asleep", "waking"]


class SleepMode:
    """Sleep and wake with the given timings; one transition at a time.

    ``sleep_time`` and ``wake_time`` are the seconds a sleep and a wake take.
    ``sleeps`` and ``wakes`` count the completed transitions; ``level`` is the
    level of the current (or last) sleep.
    """

    def __init__(self, *, model: str, sleep_time: float, wake_time: float) -> None:
        self.model = model
        self.sleep_time = sleep_time
        self.wake_time = wake_time
        self.state: State = "awake"
        self.level = 0
        self.sleeps = 0
        self.wakes = 0
        self._lock: asyncio.Lock | None = None  # built in the server's loop

    @property
    def serving(self) -> bool:
        """True when generation requests are served (awake, not in a transition)."""
        return self.state == "awake"

    @property
    def sleeping(self) -> bool:
        """What ``/is_sleeping`` says: True unless fully awake."""
        return self.state != "awake"

    async def sleep(self, level: int) -> None:
        """Fall asleep at ``level`` (no-op when already asleep)."""
        async with self._guard():
            if self.state == "asleep":
                return
            self.state = "falling asleep"
            try:
                await asyncio.sleep(self.sleep_time)
            except BaseException:
                self.state = "awake"
                raise
            self.state = "asleep"
            self.level = level
            self.sleeps += 1
            _say(f"fake-model {self.model}: asleep at level {level}")

    async def wake(self) -> None:
        """Wake up (no-op when awake)."""
        async with self._guard():
            if self.state == "awake":
                return
            self.state = "waking"
            try:
                await asyncio.sleep(self.wake_time)
            except BaseException:
                self.state = "asleep"
                raise
            self.state = "awake"
            self.wakes += 1
            _say(f"fake-model {self.model}: awake")

    def _guard(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
