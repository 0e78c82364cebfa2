"""1,000 concurrent acquirers across 4 models with swaps and random cancellations."""

from __future__ import annotations

import asyncio
import collections
import functools
import random

import pytest
from router_helpers import OneAtATime, SerialScheduler, bounded, other_tasks

from swapcore import BaseRouter, RoutingError
from swapcore.events import RequestCancelled, RequestGranted, RequestRejected, RouterEvent
from swapcore.scheduling.effects import SchedulerFactory
from swapcore.scheduling.fifo import FIFOScheduler
from swapcore.testing.fakes import FakeProcess

MODELS = "abcd"

SCHEDULERS: dict[str, SchedulerFactory] = {
    "fifo": functools.partial(FIFOScheduler, default_concurrency_limit=1000),
    "fifo-limit-10": FIFOScheduler,  # most requests are rejected with 429s
    "fifo-max-wait": functools.partial(
        FIFOScheduler, default_concurrency_limit=1000, max_wait=0.005
    ),
    "serial": SerialScheduler,
}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", sorted(SCHEDULERS))
async def test_every_request_resolves_once_and_nothing_leaks(name: str, seed: int) -> None:
    rng = random.Random(seed)
    procs = {m: FakeProcess(m, start_delay=0.0005, stop_delay=0.0002) for m in MODELS}
    events: list[RouterEvent] = []
    outcomes: collections.Counter[str] = collections.Counter()
    router = BaseRouter(procs, OneAtATime(), scheduler=SCHEDULERS[name], on_event=events.append)

    async def client(model: str, hold: int) -> None:
        outcomes["submitted"] += 1  # a task cancelled before its first step never gets here
        try:
            async with router.acquire(model):
                for _ in range(hold):
                    await asyncio.sleep(0)
        except RoutingError as exc:
            outcomes[type(exc).__name__] += 1
            raise
        except asyncio.CancelledError:
            outcomes["cancelled"] += 1
            raise
        outcomes["served"] += 1

    async with router:
        tasks = [
            asyncio.create_task(client(rng.choice(MODELS), rng.randrange(4))) for _ in range(1000)
        ]
        victims = rng.sample(tasks, 200)
        for victim in victims:  # cancel at random points, counted in loop iterations
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
            victim.cancel()
        await bounded(asyncio.wait(tasks), timeout=60)
        await router._settled()

        submitted = outcomes.pop("submitted")
        assert sum(outcomes.values()) == submitted
        assert submitted + sum(t.cancelled() for t in tasks) - outcomes["cancelled"] == 1000
        assert outcomes["served"] > 0 and outcomes["cancelled"] > 0
        assert set(outcomes) <= {"served", "cancelled", "ConcurrencyLimitExceeded"}
        snap = router.snapshot()
        assert snap.queue == ()
        for model, state in snap.models.items():
            assert (state.in_flight, state.queued, state.waiting, state.swapping) == (
                0,
                0,
                0,
                False,
            ), model
        scheduler = router._scheduler
        if isinstance(scheduler, FIFOScheduler):
            assert all(scheduler.in_flight(m) == 0 for m in MODELS)
            assert all(scheduler.admitted(m) == 0 for m in MODELS)
            assert scheduler.queued == () and scheduler.swaps == {}

    # Each request got exactly one outcome event.
    resolved = [
        e.request_id
        for e in events
        if isinstance(e, (RequestGranted, RequestRejected, RequestCancelled))
    ]
    assert len(resolved) == len(set(resolved)) == submitted
    assert not other_tasks()
    assert sum(p.starts for p in procs.values()) >= 1
