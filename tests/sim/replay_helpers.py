"""Replay a simulator trace through the real BaseRouter, for cross-checks with the simulator."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from swapcore import BaseRouter, MaxLoadedPlanner, Scheduler
from swapcore.sim import Arrival, ModelProfile
from swapcore.testing._virtual_loop import VirtualTimeLoop
from swapcore.testing.fakes import FakeProcess

SchedulerClass = Callable[..., Scheduler]


def router_run(
    trace: list[Arrival], models: dict[str, ModelProfile], n: int, scheduler: SchedulerClass
) -> tuple[dict[str, int], list[float | None]]:
    """The scenario through BaseRouter on a virtual clock; a caller out of patience cancels."""
    loop = VirtualTimeLoop()
    loop.now = t0 = 1024.0  # a round origin: sums of the trace's times stay exact
    procs = {m: FakeProcess(m, start_delay=p.load, stop_delay=p.stop) for m, p in models.items()}
    ttl = {m: p.ttl for m, p in models.items() if p.ttl is not None}
    started: list[float | None] = [None] * len(trace)

    async def client(router: BaseRouter, index: int, arrival: Arrival) -> None:
        await asyncio.sleep(arrival.at)
        if arrival.patience is not None:  # what a user's timeout does: cancel if not started
            task = asyncio.current_task()
            assert task is not None
            loop.call_later(arrival.patience, lambda: started[index] is None and task.cancel())
        async with router.acquire(arrival.model):
            started[index] = loop.time() - t0
            await asyncio.sleep(arrival.service)

    async def main() -> None:
        factory = functools.partial(scheduler, clock=loop.time)
        async with BaseRouter(procs, MaxLoadedPlanner(n), scheduler=factory, idle_ttl=ttl) as r:
            clients = (client(r, i, arrival) for i, arrival in enumerate(trace))
            await asyncio.gather(*clients, return_exceptions=True)
            await asyncio.sleep(max(ttl.values(), default=0) + 1)

    try:
        loop.run_virtual(main())
    finally:
        loop.close()
    return {m: p.starts for m, p in procs.items()}, started
