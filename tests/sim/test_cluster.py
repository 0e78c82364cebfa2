"""The cluster simulator: replicas of the real scheduler and planner on one virtual clock."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swapcore import ConfigError, MaxLoadedPlanner, MemoryBudgetPlanner
from swapcore.cluster import AffinityPolicy, ClusterPolicy, ReplicaReport
from swapcore.sim import (
    Arrival,
    ClusterReport,
    ModelProfile,
    Replica,
    SimReport,
    fifo,
    format_cluster_report,
    poisson_mix,
    round_robin,
    simulate,
    simulate_cluster,
)
from swapcore.sim.cluster_report import REFUSED
from swapcore.sim.report import SERVED, UNFINISHED
from swapcore.testing.memory_checks import budget_violations

SIX = ["a", "b", "c", "d", "e", "f"]


def profiles(load: float = 20.0, **extra: float) -> dict[str, ModelProfile]:
    return {m: ModelProfile(load=load, **extra) for m in SIX}


class Pinned(ClusterPolicy):
    """Sends each model to the replica the mapping names (the first replica by default)."""

    def __init__(self, where: dict[str, str] | None = None) -> None:
        self.where = where or {}

    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        holders = [r.replica for r in replicas if model in r.models]
        wanted = self.where.get(model, holders[0] if holders else None)
        return [wanted] if wanted in holders else []


def test_a_model_loads_once_then_is_served_where_it_is() -> None:
    trace = [Arrival(at=5.0 * i, model="a", service=1.0) for i in range(10)]
    report = simulate_cluster(
        trace, replicas=3, planner=lambda: MaxLoadedPlanner(1), models=profiles()
    )
    assert report.total_loads == 1
    assert len(set(report.routes)) == 1
    (home,) = report.loaded_on("a")
    assert report.routes[0] == home
    # Every request after the first (which waited for the load) is served at once.
    assert [r.wait for r in report.requests[5:]] == [0.0] * 5
    assert report.served == 10


@pytest.mark.parametrize(
    ("planner", "sized"),
    [
        (lambda: MaxLoadedPlanner(2), False),
        (lambda: MemoryBudgetPlanner(dict.fromkeys(SIX, 10), 20), True),
    ],
)
def test_six_models_spread_over_three_replicas_of_two(planner: object, sized: bool) -> None:
    models = profiles(load=30.0, size=10.0) if sized else profiles(load=30.0)
    trace = round_robin(SIX, rounds=8, interval=1.0, service=0.5)
    report = simulate_cluster(trace, replicas=3, planner=planner, models=models)  # type: ignore[arg-type]
    assert report.total_loads == 6
    assert sum(sim.total_stops for sim in report.replicas.values()) == 0
    assert report.loads_per_replica == {"r0": 2, "r1": 2, "r2": 2}
    assert all(len(report.loaded_on(m)) == 1 for m in SIX)
    assert report.served == len(trace)
    # The first round waits for the loads; after them nothing waits.
    assert report.waits.max <= 30.0
    assert all(r.wait == 0.0 for r in report.requests if r.arrived >= 40.0)


def test_a_policy_that_always_picks_the_first_replica_is_the_single_server() -> None:
    models = {
        "a": ModelProfile(load=8, stop=1, ttl=60),
        "b": ModelProfile(load=15, stop=2),
        "c": ModelProfile(load=30, wake=3, sleep=1),
    }
    trace = poisson_mix({"a": 0.1, "b": 0.06, "c": 0.04}, duration=1800, service=2.0, seed=3)
    trace = [attrs.evolve(a, patience=40.0) if i % 7 == 0 else a for i, a in enumerate(trace)]

    def planner() -> MaxLoadedPlanner:
        return MaxLoadedPlanner(1)

    scheduler = fifo(max_wait=30)
    alone = simulate(trace, planner=planner, models=models, scheduler=scheduler, patience=90)
    cluster = simulate_cluster(
        trace,
        replicas=3,
        planner=planner,
        models=models,
        scheduler=scheduler,
        patience=90,
        policy=Pinned(),
    )
    assert cluster.replicas["r0"] == alone
    assert cluster.replicas["r1"].requests == () and cluster.replicas["r2"].total_loads == 0
    assert cluster.waits == alone.waits
    assert cluster.total_loads == alone.total_loads and cluster.total_wakes == alone.total_wakes
    assert [r.outcome for r in cluster.requests] == [r.outcome for r in alone.requests]
    assert alone.total_wakes > 0 and alone.abandoned > 0 and alone.ttl_unloads > 0


def test_each_replica_is_the_single_server_over_the_requests_it_got() -> None:
    trace = poisson_mix(dict.fromkeys(SIX, 0.05), duration=1200, service=3.0, seed=8)
    where = {"a": "r0", "b": "r0", "c": "r1", "d": "r1", "e": "r1", "f": "r0"}
    cluster = simulate_cluster(
        trace,
        replicas=2,
        planner=lambda: MaxLoadedPlanner(2),
        models=profiles(),
        policy=Pinned(where),
    )
    for replica in ("r0", "r1"):
        mine = [a for a in trace if where[a.model] == replica]
        alone = simulate(mine, planner=MaxLoadedPlanner(2), models=profiles())
        assert cluster.replicas[replica] == alone
    assert cluster.total_loads == sum(cluster.loads_per_model.values())


def test_a_model_no_replica_serves_is_refused() -> None:
    replicas = [
        Replica(id="small", planner=MaxLoadedPlanner(1), models={"a": 5.0}),
        Replica(id="big", planner=lambda: MaxLoadedPlanner(1), models={"a": 5.0, "big": 50.0}),
    ]
    trace = [
        Arrival(at=0.0, model="big", service=1.0),
        Arrival(at=1.0, model="nope", service=1.0),
        Arrival(at=2.0, model="a", service=1.0),
    ]
    report = simulate_cluster(trace, replicas=replicas)
    assert report.routes == ("big", None, "small")
    refused = report.requests[1]
    assert (refused.outcome, refused.started, refused.finished, refused.wait) == (
        REFUSED,
        None,
        1.0,
        0.0,
    )
    assert refused.error == "no replica serves model 'nope'"
    assert report.refused == 1 and report.served == 2
    assert report.waits.count == 2  # the refused request has no wait to count
    assert [len(r.requests) for r in report.replicas.values()] == [1, 1]
    assert "1 refused" in format_cluster_report(report)


def test_same_inputs_same_report() -> None:
    def run() -> ClusterReport:
        trace = poisson_mix(dict.fromkeys(SIX, 0.08), duration=900, service=4.0, seed=11)
        return simulate_cluster(
            trace,
            replicas=3,
            planner=lambda: MaxLoadedPlanner(2),
            models=profiles(),
            policy=AffinityPolicy(spill_queue=2),
        )

    first, second = run(), run()
    assert first == second
    assert first.to_dict() == second.to_dict()


def test_spill_loads_a_second_copy_when_the_queue_is_deep() -> None:
    # One model loading for 30 s, a request every second: the queue grows during the load
    # and FIFO's default concurrency limit (10 waiting) rejects the overflow.
    trace = [Arrival(at=1.0 * i, model="a", service=2.0) for i in range(40)]

    def run(policy: ClusterPolicy) -> ClusterReport:
        return simulate_cluster(
            trace,
            replicas=3,
            planner=lambda: MaxLoadedPlanner(1),
            models={"a": ModelProfile(load=30.0)},
            policy=policy,
        )

    one = run(AffinityPolicy())
    spread = run(AffinityPolicy(spill_queue=3))
    assert one.total_loads == 1 and len(set(one.routes)) == 1
    assert spread.total_loads == 3
    assert spread.routes[:4] == (spread.routes[0],) * 3 + (spread.routes[3],)
    assert spread.routes[3] != spread.routes[0]  # the 4th request found 3 waiting: a 2nd copy
    assert spread.served > one.served


def test_the_table() -> None:
    trace = round_robin(SIX, rounds=2, interval=1.0, service=0.5)
    report = simulate_cluster(
        trace, replicas=3, planner=lambda: MaxLoadedPlanner(2), models=profiles()
    )
    text = format_cluster_report(report, detail=True)
    lines = text.splitlines()
    assert lines[0] == "cluster: 3 replicas, policy AffinityPolicy(spill_queue=None)"
    assert "cold loads: 6" in lines[1]
    total = next(line for line in lines if line.startswith("(all)"))
    assert total.split()[1:4] == ["12", "12", "6"]
    assert "loaded on:" in lines
    assert "replica r2:" in lines


def _factory() -> MaxLoadedPlanner:
    return MaxLoadedPlanner(1)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"replicas": 0, "planner": _factory, "models": {"a": 1.0}}, "at least 1"),
        ({"replicas": 2, "planner": MaxLoadedPlanner(1), "models": {"a": 1.0}}, "a factory"),
        ({"replicas": 2, "models": {"a": 1.0}}, "needs planner= and models="),
        ({"replicas": []}, "the list is empty"),
        ({"replicas": "two"}, "a count or a list"),
        ({"replicas": 2, "planner": _factory, "models": {"a": 1.0}, "patience": -1}, "patience"),
        (
            {"replicas": 2, "planner": _factory, "models": {"a": 1.0}, "policy": "affinity"},
            "policy must be a ClusterPolicy",
        ),
    ],
)
def test_bad_arguments_are_config_errors(kwargs: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        simulate_cluster([], **kwargs)  # type: ignore[arg-type]


def test_bad_replica_lists_name_the_replica() -> None:
    shared = MaxLoadedPlanner(1)
    with pytest.raises(ConfigError, match=r"replicas\[1\] \('y'\) has the planner instance of 'x'"):
        simulate_cluster(
            [],
            replicas=[
                Replica(id="x", planner=shared, models={"a": 1.0}),
                Replica(id="y", planner=shared, models={"a": 1.0}),
            ],
        )
    with pytest.raises(ConfigError, match=r"replicas\[1\].id: 'x' is given twice"):
        simulate_cluster(
            [],
            replicas=[
                Replica(id="x", planner=lambda: MaxLoadedPlanner(1), models={"a": 1.0}),
                Replica(id="x", planner=lambda: MaxLoadedPlanner(1), models={"a": 1.0}),
            ],
        )
    with pytest.raises(ConfigError, match="replica 'x': models"):
        simulate_cluster(
            [], replicas=[Replica(id="x", planner=lambda: MaxLoadedPlanner(1), models={"a": -1})]
        )
    with pytest.raises(ConfigError, match="give planner, models in each Replica"):
        simulate_cluster(
            [],
            replicas=[Replica(id="x", planner=lambda: MaxLoadedPlanner(1), models={"a": 1.0})],
            planner=lambda: MaxLoadedPlanner(1),
            models={"a": 1.0},
        )


def test_a_policy_naming_a_replica_without_the_model_is_caught() -> None:
    class Wrong(ClusterPolicy):
        def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
            return ["nowhere"]

    with pytest.raises(RuntimeError, match="ranked 'nowhere' first for 'a', which is no replica"):
        simulate_cluster(
            [Arrival(at=0.0, model="a", service=1.0)],
            replicas=2,
            planner=lambda: MaxLoadedPlanner(1),
            models={"a": 1.0},
            policy=Wrong(),
        )


def test_the_policy_sees_exact_reports_at_the_arrival_time() -> None:
    seen: list[tuple[str, dict[str, ReplicaReport]]] = []

    class Watching(AffinityPolicy):
        def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
            seen.append((model, {r.replica: r for r in replicas}))
            return super().rank(model, replicas)

    trace = [
        Arrival(at=0.0, model="a", service=100.0),
        Arrival(at=5.0, model="a", service=1.0),  # a is loading (10 s)
        Arrival(at=20.0, model="b", service=1.0),  # a is ready and busy
        Arrival(at=20.0, model="a", service=1.0),
    ]
    simulate_cluster(
        trace,
        replicas=2,
        planner=lambda: MaxLoadedPlanner(1),
        models={"a": 10.0, "b": 10.0},
        policy=Watching(),
    )
    first = seen[0][1]
    assert all(not r.ready and not r.loading for r in first.values())
    home = next(r for r, rep in seen[1][1].items() if rep.loading == {"a"})
    assert seen[1][1][home].queued == 1
    at_20 = seen[2][1][home]
    assert at_20.ready == {"a"} and at_20.busy == {"a"} and at_20.in_flight == 1
    assert "b" not in at_20.would_evict  # loading b there would stop a busy model
    other = next(r for r in seen[2][1] if r != home)
    assert seen[2][1][other].would_evict["b"] == ()


# -- properties over random traces ------------------------------------------------

_arrivals = st.lists(
    st.tuples(
        st.floats(0, 200, allow_nan=False),
        st.sampled_from([*SIX, "zz"]),
        st.floats(0, 20, allow_nan=False),
    ),
    max_size=40,
)


def _overlaps(sim: SimReport) -> list[list[str]]:
    """The models held (loading, ready or stopping) at each load's start."""
    held = []
    for load in sim.timeline:
        at = load.start
        held.append([i.model for i in sim.timeline if i.start <= at < i.end or i is load])
    return held


@settings(max_examples=60, deadline=None)
@given(
    raw=_arrivals,
    count=st.integers(1, 3),
    n=st.integers(1, 3),
    memory=st.booleans(),
    spill=st.sampled_from([None, 1, 3]),
)
def test_every_request_is_served_or_refused_once_and_budgets_hold(
    raw: list[tuple[float, str, float]], count: int, n: int, memory: bool, spill: int | None
) -> None:
    sizes = {"a": 4.0, "b": 6.0, "c": 8.0, "d": 4.0, "e": 10.0, "f": 2.0}
    models = {m: ModelProfile(load=3.0 + len(m), stop=1.0, size=sizes[m]) for m in SIX}

    def planner() -> MaxLoadedPlanner | MemoryBudgetPlanner:
        return MemoryBudgetPlanner(sizes, 10.0 * n) if memory else MaxLoadedPlanner(n)

    trace = [Arrival(at=at, model=model, service=service) for at, model, service in raw]
    report = simulate_cluster(
        trace,
        replicas=count,
        planner=planner,
        models=models,
        scheduler=fifo(default_concurrency_limit=100),
        policy=AffinityPolicy(spill_queue=spill),
    )
    ordered = sorted(trace, key=lambda a: a.at)
    assert len(report.requests) == len(report.routes) == len(trace)
    assert sum(len(sim.requests) for sim in report.replicas.values()) + report.refused == len(trace)
    for arrival, route, record in zip(ordered, report.routes, report.requests, strict=True):
        assert (record.model, record.arrived) == (arrival.model, arrival.at)
        assert (route is None) == (arrival.model == "zz") == (record.outcome == REFUSED)
        assert record.outcome in (SERVED, REFUSED), record
    assert report.outcomes[UNFINISHED] == 0
    assert report.served + report.refused == len(trace)
    for sim in report.replicas.values():
        check = planner()
        for held in _overlaps(sim):
            if memory:
                assert budget_violations(check, held) == [], held
            else:
                assert len(held) <= n, held
