"""The ``RouterStateMachine``'s event loop: a virtual clock that moves only when told.

Hypothesis rules cannot be ``async`` (hypothesis issue #4107), so the machine
owns this loop and runs it inside each rule until nothing is runnable.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")

SETTLE_TURNS = 2_000  # loop turns a settle may take before it is called a livelock


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when told to (``now``).

    It starts at ``time.monotonic()``, the router's request stamps, so a
    scheduler given ``clock=loop.time`` roughly agrees with them.
    """

    _ready: collections.deque[asyncio.Handle]  # CPython's BaseEventLoop internals
    _scheduled: list[asyncio.TimerHandle]

    def __init__(self) -> None:
        super().__init__()
        self.now = time.monotonic()

    def time(self) -> float:
        """The virtual clock (seconds); timers fire when it reaches them."""
        return self.now

    def idle(self) -> bool:
        """Nothing is runnable: no ready callback and no due timer."""
        if self._ready:
            return False
        now = self.now
        return not any(h.when() <= now and not h.cancelled() for h in self._scheduled)

    def next_timer(self) -> float | None:
        """When the earliest pending timer fires, or None."""
        return min((h.when() for h in self._scheduled if not h.cancelled()), default=None)

    def settle(self) -> None:
        """Run until nothing is runnable (the clock stands still); a livelock raises."""
        self.run_until_complete(self._idle())

    def run_virtual(self, main: Coroutine[Any, Any, _T]) -> _T:
        """Run ``main`` to completion, moving the clock straight to each next timer.

        Every wait on a timer takes no real time; the loop stays open.
        """
        task = self.create_task(main)
        while not task.done():
            self.settle()
            when = self.next_timer()
            if when is not None and when > self.now:
                self.now = when
        return task.result()

    def run_turns(self, turns: int) -> None:
        """Run exactly ``turns`` iterations."""
        if turns:
            self.run_until_complete(self._spin(turns))

    async def _idle(self) -> None:
        for _ in range(SETTLE_TURNS):
            await asyncio.sleep(0)
            if self.idle():
                return
        raise AssertionError(f"the event loop never went idle in {SETTLE_TURNS} turns")

    async def _spin(self, turns: int) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
