"""The scheduler's reconfigure, on_hold and on_hold_done (pure, no event loop)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from test_fifo_doubles import OneAtATime, finish_swap, req

from swapcore import CostAwareScheduler, FIFOScheduler, SwapPlanner
from swapcore.errors import ConcurrencyLimitExceeded, ConfigError
from swapcore.testing.effects import RecordingEffects


class Beside(SwapPlanner):
    """Nothing is evicted."""

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return []


@pytest.mark.parametrize("cls", [FIFOScheduler, CostAwareScheduler])
def test_a_held_model_queues_its_requests_until_the_hold_is_lifted(cls: type) -> None:
    effects = RecordingEffects.for_models("AB", ready="A")
    scheduler = cls(Beside(), effects)
    first = req("A")
    scheduler.on_request(first)
    assert effects.served() == [first]
    scheduler.on_hold(["A"])
    second = req("A")
    scheduler.on_request(second)
    assert scheduler.queued == (second,) and effects.served() == [first]
    scheduler.on_serve_done("A")
    assert scheduler.queued == (second,)  # still held: the driver replaces the process
    effects.states["A"] = effects.states["B"]  # the new process is stopped
    scheduler.on_hold_done(["A"])
    assert [call.model for call in effects.starts] == ["A"]
    finish_swap(scheduler, effects, "A")
    assert effects.served() == [first, second]
    assert effects.errors == []


def test_a_held_model_is_not_evicted() -> None:
    effects = RecordingEffects.for_models("AB", ready="A")
    scheduler = FIFOScheduler(OneAtATime(), effects)
    scheduler.on_hold(["A"])
    wants_b = req("B")
    scheduler.on_request(wants_b)
    assert effects.starts == [] and scheduler.queued == (wants_b,)
    scheduler.on_hold_done(["A"])
    assert [(c.model, c.evict) for c in effects.starts] == [("B", ("A",))]


def test_reconfigure_keeps_the_queue_and_decides_with_the_new_planner() -> None:
    effects = RecordingEffects.for_models("AB", ready="A")
    scheduler = FIFOScheduler(OneAtATime(), effects)
    serving = req("A")
    scheduler.on_request(serving)
    waiting = req("B")
    scheduler.on_request(waiting)  # would evict the busy A: queued
    scheduler.reconfigure(Beside(), concurrency_limits={"B": 1})
    assert scheduler.queued == (waiting,) and effects.starts == []
    scheduler.on_unload_done(())  # the driver asks for a look at the queue
    assert [(c.model, c.evict) for c in effects.starts] == [("B", ())]
    assert scheduler.concurrency_limit("B") == 1
    scheduler.on_request(req("B"))
    assert isinstance(effects.errors[-1].error, ConcurrencyLimitExceeded)


def test_reconfigure_keeps_what_is_not_given_and_checks_what_is() -> None:
    effects = RecordingEffects.for_models("AB")
    scheduler = FIFOScheduler(OneAtATime(), effects, concurrency_limits={"A": 2}, clock=lambda: 0.0)
    with pytest.raises(ConfigError, match="max_wait"):
        scheduler.reconfigure(Beside(), max_wait=-1)
    scheduler.reconfigure(max_wait=30.0)  # the queue starts tracking ages
    for model in "AB":
        scheduler.on_request(req(model, at=0.0))
    assert [r.model for r in scheduler.queued] == ["B"]  # its swap would stop A's: queued
    assert scheduler.next_deadline() == 30.0
    assert scheduler.concurrency_limit("A") == 2
