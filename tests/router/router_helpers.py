"""Helpers for the router tests: planners, a minimal scheduler, bounded waits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from typing import Any, TypeVar

import pytest

import swapcore.router._base
import swapcore.router._state
import swapcore.router._swaps
from swapcore import ModelNotFound, ModelUnloaded, ProcessState, RoutingError, SwapFailed
from swapcore.planners.base import SwapPlanner
from swapcore.scheduling.effects import Effects
from swapcore.scheduling.requests import Request
from swapcore.testing._virtual_loop import VirtualTimeLoop

T = TypeVar("T")
LIMIT = 5.0  # every wait in these tests is bounded by this many seconds


class OneAtATime(SwapPlanner):
    """Every other running model is evicted: one model loaded at a time."""

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return [m for m in running if m != target]


class NoEviction(SwapPlanner):
    """Everything fits: nothing is ever evicted."""

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return []


async def bounded(awaitable: Awaitable[T], timeout: float = LIMIT) -> T:
    """Await with a bound, so a hang fails the test instead of blocking the run."""
    return await asyncio.wait_for(awaitable, timeout)


async def eventually(predicate: Callable[[], bool], timeout: float = LIMIT) -> None:
    """Yield to the event loop until ``predicate()`` holds (bounded; no timed sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached within the bound")
        await asyncio.sleep(0)


def run_virtual(
    monkeypatch: pytest.MonkeyPatch, main: Callable[[VirtualTimeLoop], Coroutine[Any, Any, T]]
) -> T:
    """Run ``main(loop)`` on a virtual clock that the router reads too.

    The clock jumps straight to the next timer whenever nothing else can
    run, so timeouts of minutes take no real time and are exact. A run that
    waits with no timer left (a hang) fails, as does one of more than 1,000
    jumps. Tasks left behind are cancelled and the loop is closed.
    """
    loop = VirtualTimeLoop()
    for module in (swapcore.router._state, swapcore.router._swaps, swapcore.router._base):
        monkeypatch.setattr(module, "clock", loop.time)
    try:
        task = loop.create_task(main(loop))
        for _ in range(1_000):
            loop.settle()
            if task.done():
                return task.result()
            when = loop.next_timer()
            if when is None:
                raise AssertionError("hang: nothing can run, no timer is set, main is not done")
            loop.now = max(loop.now, when)
        raise AssertionError("main did not finish within 1,000 clock jumps")
    finally:
        for _ in range(5):
            left = asyncio.all_tasks(loop)
            if not left:
                break
            for leftover in left:
                leftover.cancel()
            loop.run_turns(3)
        loop.close()


def other_tasks() -> set[asyncio.Task[object]]:
    """Every task of the loop except the current one (pending work left behind)."""
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


class SerialScheduler:
    """A deliberately small scheduler: one swap at a time, no fast path while swapping.

    It lacks ``next_deadline``/``on_tick`` and queues in arrival order, which
    is enough to show the router works with any ``Scheduler``.
    """

    def __init__(self, planner: SwapPlanner, effects: Effects) -> None:
        self.planner = planner
        self.effects = effects
        self.queue: list[Request] = []
        self.swap: tuple[str, list[Request]] | None = None
        self.in_flight: dict[str, int] = {}
        self.closed: RoutingError | None = None

    def on_request(self, request: Request) -> None:
        if self.closed is not None:
            self.effects.grant_error(request, self.closed)
        elif self.effects.model_state(request.model) is None:
            self.effects.grant_error(request, ModelNotFound(request.model))
        else:
            self.queue.append(request)
            self._drain()

    def on_cancel(self, request: Request) -> None:
        if request in self.queue:
            self.queue.remove(request)
        elif self.swap is not None and request in self.swap[1]:
            self.swap[1].remove(request)

    def on_swap_done(self, model: str, error: BaseException | None) -> None:
        if self.swap is None or self.swap[0] != model:
            return
        waiters = self.swap[1]
        self.swap = None
        for request in waiters:
            if error is None:
                self._grant(request, model)
            else:
                failure = SwapFailed(str(error))
                failure.__cause__ = error
                self.effects.grant_error(request, failure)
        self._drain()

    def on_serve_done(self, model: str) -> None:
        self.in_flight[model] -= 1
        self._drain()

    def on_unload(self, models: Collection[str]) -> None:
        for request in [r for r in self.queue if r.model in models]:
            self.queue.remove(request)
            self.effects.grant_error(request, ModelUnloaded(request.model))
        if self.swap is not None and self.swap[0] in models:
            for request in self.swap[1]:
                self.effects.grant_error(request, ModelUnloaded(request.model))
            self.swap = None

    def on_unload_done(self, models: Collection[str]) -> None:
        self._drain()

    def on_shutdown(self, error: RoutingError) -> None:
        self.closed = error
        pending = self.queue + (self.swap[1] if self.swap else [])
        self.queue, self.swap = [], None
        for request in pending:
            self.effects.grant_error(request, error)

    def _grant(self, request: Request, model: str) -> None:
        if self.effects.grant_serve(request, model):
            self.in_flight[model] = self.in_flight.get(model, 0) + 1

    def _drain(self) -> None:
        while self.queue and self.swap is None:
            request = self.queue[0]
            model = request.model
            running = sorted(self.effects.running_models())
            evict = list(self.planner.eviction_for(model, running))
            if not evict and self.effects.model_state(model) is ProcessState.READY:
                self.queue.pop(0)
                self._grant(request, model)
                continue
            if any(self.in_flight.get(m, 0) for m in evict):
                return
            self.queue.pop(0)
            self.swap = (model, [request])
            self.effects.start_swap(model, evict)
