"""The request router's own bookkeeping, without a cluster: decisions laid over late reports."""

from __future__ import annotations

import os

import pytest

if os.environ.get("SWAPCORE_REQUIRE_RAY") != "1":
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (the ray extra)")

from swapcore.adapters.ray._router import _CONFIRM_GRACE, _Decision, merge_decisions
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
    assert not decision.settled_by(99.0, with_a, now=100.5)  # an older report says nothing
    assert not decision.settled_by(100.5, without, now=100.5)  # not arrived yet
    assert decision.settled_by(100.5, with_a, now=100.5)  # the host shows it
    assert decision.settled_by(100.0 + _CONFIRM_GRACE + 0.1, without, now=103.0)  # went elsewhere


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
