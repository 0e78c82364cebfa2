"""Test doubles shared by the FIFOScheduler tests, and tests of RecordingEffects itself.

The other ``test_fifo_*`` modules import the doubles from here
(``from test_fifo_doubles import ...``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest

from swapcore import FIFOScheduler, ModelNotFound, ProcessState, Request, SwapPlanner
from swapcore.scheduling import Effects
from swapcore.testing.effects import (
    GrantErrorCall,
    GrantServeCall,
    RecordingEffects,
    ReportPositionCall,
    StartSwapCall,
)

READY = ProcessState.READY
STOPPED = ProcessState.STOPPED
STARTING = ProcessState.STARTING


class OneAtATime(SwapPlanner):
    """llama-swap's default: loading any model stops every other running model."""

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return [model for model in running if model != target]


class TablePlanner(SwapPlanner):
    """Evicts exactly what a table says: ``table[target]`` intersected with running."""

    def __init__(self, table: Mapping[str, Iterable[str]]) -> None:
        self.table = {target: frozenset(victims) for target, victims in table.items()}
        self.asked = 0
        self.started: list[tuple[str, tuple[str, ...]]] = []

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        self.asked += 1
        victims = self.table.get(target, frozenset())
        return [model for model in running if model in victims and model != target]

    def on_swap_start(self, target: str, running: Sequence[str]) -> None:
        self.started.append((target, tuple(running)))


class Clock:
    """A manual clock: ``clock()`` returns ``now``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


_ids = itertools.count(1)


def req(model: str, *, at: float = 0.0, priority: int | None = None) -> Request:
    """A request with a fresh id."""
    return Request(model, id=next(_ids), arrived=at, priority=priority)


def make(
    planner: SwapPlanner | None = None,
    *,
    models: Iterable[str] = ("A", "B", "C"),
    ready: Iterable[str] = (),
    **kwargs: Any,
) -> tuple[FIFOScheduler, RecordingEffects]:
    """A scheduler over RecordingEffects; one-at-a-time planner by default."""
    effects = RecordingEffects.for_models(models, ready=ready)
    scheduler = FIFOScheduler(planner or OneAtATime(), effects, **kwargs)
    return scheduler, effects


def finish_swap(
    scheduler: FIFOScheduler,
    effects: RecordingEffects,
    model: str,
    error: BaseException | None = None,
) -> None:
    """Play the driver: apply the swap's effect on states, then report it done."""
    effects.apply_swap(model, ok=error is None)
    scheduler.on_swap_done(model, error)


# -- tests of the doubles ---------------------------------------------------------


def test_recording_effects_is_an_effects() -> None:
    effects: Effects = RecordingEffects()
    assert effects.model_state("A") is None


def test_recording_effects_records_every_call_in_order() -> None:
    effects = RecordingEffects({"A": READY, "B": STOPPED, "C": STARTING})
    a, b = req("A"), req("B")
    assert effects.running_models() == {"A": READY, "C": STARTING}
    effects.report_position(b, 1)
    effects.start_swap("B", ["A"])
    assert effects.grant_serve(a, "A") is True
    effects.mark_gone(b)
    assert effects.grant_serve(b, "B") is False
    error = ModelNotFound("x")
    effects.grant_error(a, error)
    assert effects.calls == [
        ReportPositionCall(b, 1),
        StartSwapCall("B", ("A",)),
        GrantServeCall(a, "A", True),
        GrantServeCall(b, "B", False),
        GrantErrorCall(a, error),
    ]
    assert effects.starts == [StartSwapCall("B", ("A",))]
    assert effects.served() == [a]
    assert [call.request for call in effects.grants] == [a, b]
    assert effects.errors == [GrantErrorCall(a, error)]
    assert effects.reports == [ReportPositionCall(b, 1)]
    assert effects.position(b) == 1 and effects.position(a) is None
    assert effects.positions(b) == [1]
    assert effects.error(a) is error and effects.error(b) is None
    assert len(effects.outcomes(a)) == 2
    assert effects.take_calls()[0] == ReportPositionCall(b, 1)
    assert effects.calls == []


def test_apply_swap_plays_the_latest_swap() -> None:
    effects = RecordingEffects.for_models(["A", "B"], ready=["A"])
    with pytest.raises(LookupError, match="'B'"):
        effects.apply_swap("B")
    effects.start_swap("B", ["A"])
    effects.apply_swap("B")
    assert effects.states == {"A": STOPPED, "B": READY}
    effects.start_swap("A", [])
    effects.apply_swap("A", ok=False)
    assert effects.states["A"] is STOPPED


def test_table_planner_and_clock() -> None:
    planner = TablePlanner({"A": ["B", "A"]})
    assert planner.eviction_for("A", ["A", "B", "C"]) == ["B"]
    assert planner.eviction_for("C", ["A", "B"]) == []
    clock = Clock(3.0)
    assert clock() == 3.0
