"""Swap bookkeeping for schedulers: swaps in flight, unloads, collisions, planner answers.

:class:`SwapBook` records the swaps a scheduler started and has not yet seen
done, the unloads in progress, and answers the collision rule: a swap
waits while it would evict an in-flight swap's target, that swap evicts its
target, or both evict a common model.
:class:`Evictions` caches a planner's answers for one decision pass. Both are
used by :class:`~swapcore.scheduling.fifo.FIFOScheduler` and are reusable by
other schedulers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs

from swapcore.errors import PolicyError
from swapcore.planners.base import SwapPlanner
from swapcore.scheduling.effects import Effects
from swapcore.scheduling.requests import Request

__all__ = ["Evictions", "Swap", "SwapBook", "describe", "log", "policy_error"]

log = logging.getLogger("swapcore.scheduling")


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

    def begin_hold(self, model: str) -> None:
        """Mark ``model`` as held: counted as being stopped, like an unload, its swap kept."""
        self.stopping[model] = self.stopping.get(model, 0) + 1

    def end_hold(self, model: str) -> None:
        """Lift one hold of ``model`` (the caller counts its holds)."""
        if self.stopping.get(model, 0):
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
    planner recorded a serve). A planner call that raises, or answers with
    its target or a model that is not running, is a fault: :meth:`evict_for`
    logs it once (logger ``swapcore.scheduling``, with the traceback) and
    raises :class:`~swapcore.PolicyError` for that target, again for each
    request examined for the same target in the same pass.
    """

    __slots__ = ("_answers", "_book", "_effects", "_faults", "_planner", "_running")

    def __init__(self, planner: SwapPlanner, effects: Effects, book: SwapBook) -> None:
        self._planner = planner
        self._effects = effects
        self._book = book
        self._running: tuple[str, ...] | None = None
        self._answers: dict[str, tuple[str, ...]] = {}
        self._faults: dict[str, tuple[str, BaseException | None]] = {}  # target -> fault

    def reset(self) -> None:
        """Forget the running set and every answer."""
        self._running = None
        self._answers.clear()
        self._faults.clear()

    def forget_answers(self) -> None:
        """Forget the answers but keep the running set (the planner's state changed)."""
        self._answers.clear()
        self._faults.clear()

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
        """``planner.eviction_for(target, running)``, asked once per pass.

        Raises :class:`~swapcore.PolicyError` when the planner raised or
        gave an invalid answer (a fresh error per call, the planner's
        exception as ``__cause__``).
        """
        evict = self._answers.get(target)
        if evict is None:
            fault = self._faults.get(target)
            if fault is None:
                fault = self._ask(target)
                if fault is None:
                    return self._answers[target]
                self._faults[target] = fault
            raise policy_error(*fault)
        return evict

    def _ask(self, target: str) -> tuple[str, BaseException | None] | None:
        """Ask the planner; record the answer, or log and return the fault."""
        planner = self._planner
        running = self.running()
        try:
            evict = tuple(planner.eviction_for(target, running))
        except Exception as exc:
            message = f"{_call(planner, target, running)} raised {describe(exc)}"
            log.error("%s; requests for %r fail with PolicyError", message, target, exc_info=exc)
            return message, exc
        for victim in evict:
            if victim == target or victim not in running:
                message = (
                    f"{_call(planner, target, running)} returned {list(evict)!r}: {victim!r} "
                    "is not a running model other than the target"
                )
                log.error("%s; requests for %r fail with PolicyError", message, target)
                return message, None
        self._answers[target] = evict
        return None

    def evict_after(self, target: str, loaded: str) -> Sequence[str] | None:
        """What ``target`` would evict once ``loaded`` runs too (a what-if, not cached).

        None when the planner raised (logged once): the caller must assume
        the worst.
        """
        after = tuple(sorted({*self.running(), loaded}))
        planner = self._planner
        try:
            return planner.eviction_for(target, after)
        except Exception as exc:
            log.error(
                "%s raised %s in the starvation guard's what-if; holding back the action "
                "it was asked for",
                _call(planner, target, after),
                describe(exc),
                exc_info=exc,
            )
            return None


def _call(planner: SwapPlanner, target: str, running: Sequence[str]) -> str:
    return f"planner {type(planner).__name__}.eviction_for({target!r}, {list(running)!r})"


def describe(error: BaseException) -> str:
    """``Type: message`` (or just ``Type``), one line, for logs and error messages."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def policy_error(message: str, cause: BaseException | None) -> PolicyError:
    """A fresh :class:`~swapcore.PolicyError` with ``cause`` attached."""
    error = PolicyError(message)
    error.__cause__ = cause
    return error
