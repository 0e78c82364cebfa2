"""report_from_router: a live router's ReplicaReport, built by the code the simulator uses."""

from __future__ import annotations

from collections.abc import Sequence

from router_helpers import bounded, eventually

from swapcore import BaseRouter, MaxLoadedPlanner, MemoryBudgetPlanner
from swapcore.cluster import AffinityPolicy, ReplicaReport, report_from_router
from swapcore.sim import Arrival, Replica, simulate_cluster
from swapcore.testing.fakes import FakeProcess


async def test_a_ready_busy_model_and_what_loading_another_would_take() -> None:
    procs = {name: FakeProcess(name) for name in ("a", "b", "c")}
    async with BaseRouter(procs, MaxLoadedPlanner(2)) as router:
        await bounded(router.preload("a"))
        async with router.acquire("a"):
            busy = report_from_router("r", router)
            assert busy.ready == {"a"} and busy.busy == {"a"} and busy.in_flight == 1
            assert busy.would_evict == {"b": (), "c": ()}  # room for one more
            assert busy.loading == frozenset() and busy.queued == 0
        await eventually(lambda: router.snapshot().models["a"].in_flight == 0)
        await bounded(router.preload("b"))
        full = report_from_router("r", router)
        assert full.ready == {"a", "b"} and full.busy == frozenset()
        assert full.would_evict == {"c": ("a",)}  # least recently used goes
        assert full.free_memory is None
        assert ReplicaReport.from_dict(full.to_dict()) == full


async def test_the_router_and_the_simulator_report_the_same_state() -> None:
    sizes = {"a": 4.0, "b": 6.0, "c": 8.0}

    def planner() -> MemoryBudgetPlanner:
        return MemoryBudgetPlanner(sizes, 12.0)

    procs = {name: FakeProcess(name) for name in sizes}
    async with BaseRouter(procs, planner()) as router:
        await bounded(router.preload("a"))
        await bounded(router.preload("b"))
        live = report_from_router("r0", router)

    seen: list[ReplicaReport] = []

    class Watching(AffinityPolicy):
        def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
            seen.append(replicas[0])
            return super().rank(model, replicas)

    trace = [
        Arrival(at=0.0, model="a", service=0.0),
        Arrival(at=1.0, model="b", service=0.0),
        Arrival(at=2.0, model="c", service=0.0),
    ]
    replica = Replica(id="r0", planner=planner, models={m: 0.5 for m in sizes})
    simulate_cluster(trace, replicas=[replica], policy=Watching())
    assert seen[2] == live
    # 2 free of 12: c (8) needs b (6) gone; a (4) would not make room.
    assert live.free_memory == 2.0 and live.would_evict == {"c": ("b",)}
