"""The request router's own bookkeeping, without a cluster: decisions laid over late reports."""

from __future__ import annotations

import asyncio
import os
import time
from types import SimpleNamespace
from typing import Any

import pytest

if os.environ.get("SWAPCORE_REQUIRE_RAY") != "1":
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (the ray extra)")

from swapcore.adapters.ray import _registry
from swapcore.adapters.ray._router import (
    _CONFIRM_GRACE,
    _DECISION_TTL,
    _PATIENCE,
    SwapcoreRequestRouter,
    _Decision,
    merge_decisions,
)
from swapcore.cluster import AffinityPolicy, ReplicaReport

MODELS = ("a", "b", "c")


def report(replica: str, **fields: object) -> ReplicaReport:
    return ReplicaReport(replica, models=MODELS, **fields)  # type: ignore[arg-type]


def test_a_decision_makes_the_model_loading_and_its_eviction_gone() -> None:
    before = report("r0", ready={"a"}, would_evict={"b": ("a",), "c": ("a",)}, queued=1)
    after = merge_decisions(before, [("b", ("a",))], 1)
    assert after.loading == {"b"} and after.ready == frozenset()
    assert "b" not in after.would_evict
    assert after.queued == 2


def test_a_decision_for_a_ready_model_changes_only_the_queue() -> None:
    before = report("r0", ready={"a"}, would_evict={"b": ()})
    after = merge_decisions(before, [("a", ())], 1)
    assert after.ready == {"a"} and after.loading == frozenset() and after.queued == 1


def test_the_policy_follows_a_decision_not_yet_reported() -> None:
    # Two empty hosts; a request for "a" went to r1 a moment ago: the next goes there too.
    r0 = report("r0", would_evict={m: () for m in MODELS})
    r1 = merge_decisions(report("r1", would_evict={m: () for m in MODELS}), [("a", ())], 1)
    assert AffinityPolicy().rank("a", [r0, r1])[0] == "r1"


def test_a_decision_lasts_until_a_report_shows_it_or_the_grace_passes() -> None:
    decision = _Decision("a", (), at=100.0, request="x")
    without = report("r0")
    with_a = report("r0", loading={"a"})
    assert not decision.settled_by(99.0, with_a, now=100.5, tracked=False)  # older: says nothing
    assert not decision.settled_by(100.5, without, now=100.5, tracked=False)  # not arrived yet
    assert decision.settled_by(100.5, with_a, now=100.5, tracked=False)  # the host shows it
    late = 100.0 + _CONFIRM_GRACE + 0.1
    assert decision.settled_by(late, without, now=103.0, tracked=False)  # went elsewhere


def test_a_tracked_decision_waits_for_the_front_however_late_the_request_arrives() -> None:
    decision = _Decision("a", (), at=100.0, request="x")
    late = 100.0 + _CONFIRM_GRACE + 5.0  # a machine so busy the request is still on its way
    assert not decision.settled_by(late, report("r0"), now=late, tracked=True)
    assert decision.settled_by(late, report("r0", loading={"a"}), now=late, tracked=True)
    assert decision.settled_by(late, report("r0"), now=100.0 + 61.0, tracked=True)  # expired


def _replica(rid: str, data: dict[str, Any]) -> Any:
    """What the router reads of one of Ray's running replicas."""
    return SimpleNamespace(replica_id=SimpleNamespace(unique_id=rid), routing_stats=data)


def test_the_router_holds_a_tracked_decision_until_the_front_untracks_it() -> None:
    router = object.__new__(SwapcoreRequestRouter)  # its Ray parts are not needed here
    router.initialize_state()
    empty = report("r0", would_evict={m: () for m in MODELS}).to_dict()
    replica = _replica("r0", {**empty, "at": time.time() - 1.0})
    for request in ("tracked", "untracked"):
        _registry.track("tracked")
        router._decide(router._view(replica, "a"), "a", request)
        # A report made well past the grace, still without "a": the host has not seen it yet.
        replica.routing_stats = {**empty, "at": time.time() + _CONFIRM_GRACE + 1.0}
        kept = router._view(replica, "a").loading
        assert kept == ({"a"} if request == "tracked" else frozenset()), request
        _registry.untrack("tracked")  # the answer began: the reports tell from now on
        assert router._view(replica, "a").loading == frozenset()
        replica.routing_stats = {**empty, "at": time.time() - 1.0}


def test_a_decided_load_takes_its_room_from_the_others() -> None:
    # Room for two 8 GiB models: after one decided load, one more fits; after two, none.
    empty = report(
        "r0",
        would_evict={m: () for m in MODELS},
        free_memory=16.0,
        sizes=dict.fromkeys(MODELS, 8.0),
    )
    one = merge_decisions(empty, [("a", ())], 1)
    assert one.would_evict == {"b": (), "c": ()} and one.free_memory == 8.0
    two = merge_decisions(empty, [("a", ()), ("b", ())], 2)
    assert two.would_evict == {} and two.free_memory == 0.0
    assert two.loading == {"a", "b"}


def test_without_sizes_a_decided_load_leaves_no_room_known() -> None:
    empty = report("r0", would_evict={m: () for m in MODELS})
    after = merge_decisions(empty, [("a", ())], 1)
    assert after.would_evict == {}


def test_the_rush_spreads_over_hosts_with_room() -> None:
    # Three empty hosts with room for two each; six models decided one after another,
    # as the router does within one rush: each host gets exactly two.
    sizes = dict.fromkeys("abcdef", 8.0)
    reports = {
        f"r{i}": ReplicaReport(
            f"r{i}",
            models=sizes,
            would_evict={m: () for m in sizes},
            free_memory=16.0,
            sizes=sizes,
        )
        for i in range(3)
    }
    decided: dict[str, list[tuple[str, tuple[str, ...]]]] = {r: [] for r in reports}
    policy = AffinityPolicy()
    for model in "abcdef":
        views = [merge_decisions(reports[r], decided[r], len(decided[r])) for r in reports]
        first = policy.rank(model, views)[0]
        decided[first].append((model, ()))
    assert sorted(len(d) for d in decided.values()) == [2, 2, 2]


def _pending(model: str, request: str) -> Any:
    """What the router reads of one of Ray's pending requests."""
    metadata = SimpleNamespace(multiplexed_model_id=model, internal_request_id=request)
    return SimpleNamespace(metadata=metadata, routing_context=SimpleNamespace(should_backoff=False))


def test_a_request_is_offered_only_the_first_host_until_patience_runs_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ray tries the next rank as soon as a host's queue-length probe answers late; within
    # the patience the router offers only the policy's first host, so a slow probe does
    # not become a cold load elsewhere.
    router = object.__new__(SwapcoreRequestRouter)
    router.initialize_state()
    now = [1000.0]
    monkeypatch.setattr("swapcore.adapters.ray._router.time.monotonic", lambda: now[0])
    holder = report("r0", ready={"a"}, would_evict={"b": (), "c": ()}).to_dict()
    other = report("r1", would_evict={m: () for m in MODELS}).to_dict()
    replicas = [_replica("r0", {**holder, "at": 1.0}), _replica("r1", {**other, "at": 1.0})]
    pending = _pending("a", "req")

    def offered() -> list[str]:
        ranks = asyncio.run(router.choose_replicas(replicas, pending))
        return [rank[0].replica_id.unique_id for rank in ranks]

    assert offered() == ["r0"] and pending.routing_context.should_backoff
    now[0] += 1.0
    assert offered() == ["r0"]  # Ray's second try: still only the holder
    now[0] += _PATIENCE
    assert offered() == ["r0", "r1"]  # the holder never answered: every host, in order
    router.untrack("req")  # the request ended (a retry starts patient again)
    assert offered() == ["r0"]


def test_a_request_ray_never_routed_is_forgotten_after_the_decision_ttl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router = object.__new__(SwapcoreRequestRouter)
    router.initialize_state()
    now = [1000.0]
    monkeypatch.setattr("swapcore.adapters.ray._router.time.monotonic", lambda: now[0])
    assert router._patient("dropped")  # ranked once, then cancelled before Ray routed it
    assert router._patient("routing")
    now[0] += _PATIENCE + 1.0
    assert not router._patient("routing")  # still being routed: its patience is spent
    assert set(router._first_ranked) == {"dropped", "routing"}
    now[0] += _DECISION_TTL
    assert router._patient("new")
    assert set(router._first_ranked) == {"new"}  # the ones Ray gave up on are gone
