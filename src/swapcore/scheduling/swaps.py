"""Swap bookkeeping for schedulers: swaps in flight, unloads, collisions, planner answers.

:class:`SwapBook` records the swaps a scheduler started and has not yet seen
done, the unloads in progress, and answers REFERENCE §5's collision rule.
:class:`Evictions` caches a planner's answers for one decision pass. Both are
used by :class:`~swapcore.scheduling.fifo.FIFOScheduler` and are reusable by
other schedulers.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from swapcore.planners.base import SwapPlanner
from swapcore.scheduling.effects import Effects
from swapcore.scheduling.requests import Request

__all__ = ["Evictions", "Swap", "SwapBook"]


@attrs.define(eq=False, slots=True)
class Swap:
    """One swap in flight: its target, the models it stops, the requests waiting on it."""

    target: str
    evict: tuple[str, ...]
    waiters: list[Request]


def _decrement(counts: dict[str, int], key: str) -> None:
    count = counts[key]
    if count == 1:
        del counts[key]
    else:
        counts[key] = count - 1


class SwapBook:
    """The swaps in flight and the unloads in progress.

    ``swaps`` maps a target to its :class:`Swap`; ``stopping`` counts, per
    model, the swaps in flight and unloads in progress that stop it. An unload
    acts as a swap with no target that stops its models, so the collision
    rule keeps new work off a model being unloaded. A swap released by an
    unload or a shutdown leaves the book; its completion is still expected
    and :meth:`expect_done` consumes it.
    """

    __slots__ = ("_released", "_unloading", "stopping", "swaps")

    def __init__(self) -> None:
        self.swaps: dict[str, Swap] = {}
        self.stopping: dict[str, int] = {}
        self._unloading: dict[str, int] = {}
        self._released: dict[str, int] = {}

    def start(self, target: str, evict: tuple[str, ...], first: Request) -> Swap:
        """Record a new swap to ``target`` with one waiter."""
        swap = Swap(target, evict, [first])
        self.swaps[target] = swap
        stopping = self.stopping
        for victim in evict:
            stopping[victim] = stopping.get(victim, 0) + 1
        return swap

    def finish(self, target: str) -> Swap | None:
        """Remove and return the swap to ``target``, or None if there is none."""
        swap = self.swaps.pop(target, None)
        if swap is not None:
            for victim in swap.evict:
                _decrement(self.stopping, victim)
        return swap

    def expect_done(self, target: str) -> bool:
        """Consume one expected completion of a released swap to ``target``; False if none."""
        if not self._released.get(target, 0):
            return False
        _decrement(self._released, target)
        return True

    def begin_unload(self, model: str) -> Swap | None:
        """Mark ``model`` as being unloaded; release and return its swap, if any."""
        self._unloading[model] = self._unloading.get(model, 0) + 1
        self.stopping[model] = self.stopping.get(model, 0) + 1
        swap = self.finish(model)
        if swap is not None:
            self._released[model] = self._released.get(model, 0) + 1
        return swap

    def end_unload(self, model: str) -> None:
        """Lift one unload of ``model``; ignored when none is in progress."""
        if self._unloading.get(model, 0):
            _decrement(self._unloading, model)
            _decrement(self.stopping, model)

    def release_all(self) -> list[Swap]:
        """Forget every swap and unload (shutdown); return the swaps that were in flight."""
        swaps = list(self.swaps.values())
        for swap in swaps:
            self._released[swap.target] = self._released.get(swap.target, 0) + 1
        self.swaps.clear()
        self.stopping.clear()
        self._unloading.clear()
        return swaps

    def collides(self, target: str, evict: Sequence[str]) -> bool:
        """Would a swap to ``target`` evicting ``evict`` collide with one in flight?

        It collides when it would evict an in-flight swap's target, when a
        swap (or unload) in flight stops ``target``, or when both would stop a
        common model.
        """
        stopping = self.stopping
        if target in stopping:
            return True
        swaps = self.swaps
        for victim in evict:  # noqa: SIM110 - a loop beats any(<genexpr>) on the drain path
            if victim in swaps or victim in stopping:
                return True
        return False


class Evictions:
    """A planner's answers for one decision pass, over one running set.

    The running set is the driver's running models plus the targets of swaps
    in flight, sorted. ``eviction_for`` is pure, so within a pass each target
    is asked once; :meth:`reset` starts a new pass (a swap started, or the
    planner recorded a serve). Answers are checked: a planner that evicts its
    target or a model that is not running is a bug and raises ``RuntimeError``.
    """

    __slots__ = ("_answers", "_book", "_effects", "_planner", "_running")

    def __init__(self, planner: SwapPlanner, effects: Effects, book: SwapBook) -> None:
        self._planner = planner
        self._effects = effects
        self._book = book
        self._running: tuple[str, ...] | None = None
        self._answers: dict[str, tuple[str, ...]] = {}

    def reset(self) -> None:
        """Forget the running set and every answer."""
        self._running = None
        self._answers.clear()

    def forget_answers(self) -> None:
        """Forget the answers but keep the running set (the planner's state changed)."""
        self._answers.clear()

    def running(self) -> tuple[str, ...]:
        """The running set, sorted (read once per pass)."""
        running = self._running
        if running is None:
            models = self._effects.running_models()
            swaps = self._book.swaps
            running = tuple(sorted({*models, *swaps} if swaps else models))
            self._running = running
        return running

    def evict_for(self, target: str) -> tuple[str, ...]:
        """``planner.eviction_for(target, running)``, asked once per pass."""
        evict = self._answers.get(target)
        if evict is None:
            running = self.running()
            evict = tuple(self._planner.eviction_for(target, running))
            for victim in evict:
                if victim == target or victim not in running:
                    raise RuntimeError(
                        f"planner {type(self._planner).__name__}.eviction_for({target!r}, "
                        f"{list(running)!r}) returned {list(evict)!r}: {victim!r} is "
                        "not a running model other than the target"
                    )
            self._answers[target] = evict
        return evict

    def evict_after(self, target: str, loaded: str) -> Sequence[str]:
        """What ``target`` would evict once ``loaded`` runs too (a what-if, not cached)."""
        after = tuple(sorted({*self.running(), loaded}))
        return self._planner.eviction_for(target, after)
