"""The ``RouterStateMachine``'s end of an example: drain or shut down, check, clean up.

In about half the examples the machine drains (marks every manual start
ready and releases every lease, moving the virtual clock to the next timer
when nothing else can happen) before it shuts the router down; in the
others it shuts the router down while busy. Either way every request must
have resolved exactly once and every count be back at 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from swapcore.process import ProcessState
from swapcore.testing._stateful_checks import RouterChecks

_STOPPED = ProcessState.STOPPED
_STARTING = ProcessState.STARTING


class WindDown(RouterChecks):
    """Teardown, and the failure guard it respects (a base of ``RouterStateMachine``)."""

    def __init__(self) -> None:
        super().__init__()
        self.abrupt_shutdown = False
        self._failed = False

    def _startable(self) -> list[str]:
        return [m for m, p in self.processes.items() if p.state is _STARTING and not p.auto_ready]

    def teardown(self) -> None:
        """Drain (or shut down while busy), check the end state, close the loop."""
        try:
            if self._router is not None and not self._failed:
                self._guarded(self._wind_down)
        finally:
            self._close_loop()

    def _wind_down(self) -> None:
        if self.abrupt_shutdown:
            self._shutdown()
            self._drain("after the shutdown")
        else:
            self._drain("before the shutdown")
            self._check_idle()
            self._shutdown()
        self._check_resolved()
        self._check_idle()
        for model, fake in self.processes.items():
            assert fake.state is _STOPPED, f"{model!r} is {fake.state.value} after shutdown"
        left = asyncio.all_tasks(self.loop)
        assert not left, f"tasks left after shutdown: {left}"
        self._raise_violations()

    def _drain(self, when: str) -> None:
        """Mark starts ready and release leases until every client and unload is done."""
        limit = 4 * len(self._clients) + 4 * len(self._unloads) + 20
        for _ in range(limit):
            self.loop.settle()
            if self._all_done():
                return
            acted = False
            for model in self._startable():
                self.processes[model].mark_ready()
                acted = True
            for client in self._clients:
                if client.holding and not client.release.done():
                    client.release.set_result(None)
                    acted = True
            if not acted:
                when_next = self.loop.next_timer()
                if when_next is None:
                    raise AssertionError(f"deadlock {when}: {self._describe_waiting()}")
                self.loop.now = max(self.loop.now, when_next)
        raise AssertionError(f"no progress {when} after {limit} rounds: {self._describe_waiting()}")

    def _all_done(self) -> bool:
        return (
            not self._swapping
            and all(c.task is None or c.task.done() for c in self._clients)
            and all(t.done() for t in self._unloads)
        )

    def _describe_waiting(self) -> str:
        waiting = [c for c in self._clients if c.task is not None and not c.task.done()]
        return f"clients still waiting {waiting}; router {self.router.snapshot()}"

    def _shutdown(self) -> None:
        self._shutting_down = True
        task = self.loop.create_task(self.router.shutdown())
        for _ in range(100):
            self.loop.settle()
            if task.done():
                task.result()
                return
            when_next = self.loop.next_timer()
            if when_next is None:
                break
            self.loop.now = max(self.loop.now, when_next)
        raise AssertionError(f"shutdown() did not return: {self.router.snapshot()}")

    def _close_loop(self) -> None:
        logging.getLogger("swapcore").removeHandler(self._error_log)
        loop = self.loop
        if loop.is_closed():
            return
        try:
            for _ in range(10):
                tasks = asyncio.all_tasks(loop)
                if not tasks:
                    break
                for task in tasks:
                    task.cancel()
                self.loop.run_turns(5)
        finally:
            loop.close()

    def _guarded(self, action: Callable[..., None], *args: Any) -> None:
        """Run ``action``; a failure marks the machine failed (teardown then only cleans up)."""
        try:
            action(*args)
        except BaseException:
            self._failed = True
            raise
