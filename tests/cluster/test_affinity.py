"""AffinityPolicy: its tiers, its tie-breaks, spill_queue, and what it leaves out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from swapcore import AffinityPolicy, ReplicaReport


def rep(replica: str, models: str = "abc", **fields: Any) -> ReplicaReport:
    """A report for ``replica`` serving the one-letter models in ``models``."""
    return ReplicaReport(replica=replica, models=set(models), **fields)


def rank(reports: list[ReplicaReport], model: str = "a", **kwargs: Any) -> list[str]:
    return list(AffinityPolicy(**kwargs).rank(model, reports))


# One replica per tier, best first, each the only one of its tier.
TIERS = [
    rep("ready", ready={"a"}),
    rep("loading", loading={"a"}),
    rep("asleep-room", sleeping={"a"}, would_evict={"a": ()}),
    rep("room", would_evict={"a": ()}),
    rep("asleep-evict", sleeping={"a"}, ready={"b"}, would_evict={"a": ("b",)}),
    rep("evict-idle", ready={"b"}, would_evict={"a": ("b",)}),
    rep("wait", ready={"b"}, busy={"b"}, in_flight=1),
]


def test_tiers_come_in_order_whatever_the_input_order() -> None:
    expected = [r.replica for r in TIERS]
    assert rank(TIERS) == expected
    assert rank(TIERS[::-1]) == expected
    assert rank(TIERS[3:] + TIERS[:3]) == expected


@pytest.mark.parametrize("tier", range(len(TIERS) - 1))
def test_each_tier_beats_the_next_even_when_much_busier(tier: int) -> None:
    better, worse = TIERS[tier], TIERS[tier + 1]
    # The better tier carries far more requests: the tier still decides.
    loaded = ReplicaReport.from_dict({**better.to_dict(), "queued": 50})
    assert rank([worse, loaded]) == [better.replica, worse.replica]


def test_a_busy_ready_model_beats_an_idle_replica_with_room() -> None:
    busy = rep("busy", ready={"a"}, busy={"a"}, in_flight=4, queued=9)
    idle = rep("idle", would_evict={"a": ()})
    assert rank([idle, busy]) == ["busy", "idle"]


def test_fewest_requests_first_within_a_tier() -> None:
    reports = [
        rep("r3", ready={"a"}, busy={"a"}, queued=2, in_flight=1),
        rep("r1", ready={"a"}, queued=1),
        rep("r2", ready={"a"}, busy={"a"}, in_flight=2),
        rep("r0", ready={"a"}),
    ]
    assert rank(reports) == ["r0", "r1", "r2", "r3"]


def test_equal_requests_queued_ones_count_more_than_in_flight_ones() -> None:
    waiting = rep("waiting", ready={"a", "b"}, busy={"b"}, queued=2, in_flight=1)
    serving = rep("serving", ready={"a", "b"}, busy={"b"}, queued=0, in_flight=3)
    assert rank([waiting, serving]) == ["serving", "waiting"]


def test_fewest_evictions_first_then_fewest_requests() -> None:
    two = rep("two", "abcd", ready={"b", "c"}, would_evict={"a": ("b", "c")})
    one_busy = rep(
        "one-busy", "abcd", ready={"b", "d"}, busy={"d"}, in_flight=3, would_evict={"a": ("b",)}
    )
    one_idle = rep("one-idle", "abcd", ready={"b"}, would_evict={"a": ("b",)})
    assert rank([two, one_busy, one_idle]) == ["one-idle", "one-busy", "two"]
    # The same order among sleeping replicas that must evict.
    asleep = [ReplicaReport.from_dict({**r.to_dict(), "sleeping": ["a"]}) for r in (two, one_busy)]
    assert rank(asleep) == ["one-busy", "two"]


def test_a_replica_without_the_model_is_never_named() -> None:
    reports = [rep("has", ready={"a"}), rep("lacks", "bc", ready={"b"}), rep("empty", "")]
    assert rank(reports) == ["has"]
    assert rank(reports, "z") == []
    assert rank([]) == []


def test_a_model_no_replica_can_load_now_is_still_ranked_last_not_dropped() -> None:
    reports = [rep("w1", ready={"b"}, busy={"b"}, in_flight=1), rep("w2", loading={"c"})]
    assert sorted(rank(reports)) == ["w1", "w2"]


def test_equal_replicas_tie_break_by_a_hash_of_model_and_replica() -> None:
    ids = [f"r{i}" for i in range(3)]
    models = [f"m{i}" for i in range(300)]
    firsts = Counter(
        AffinityPolicy().rank(m, [ReplicaReport(r, models=[m], would_evict={m: ()}) for r in ids])[
            0
        ]
        for m in models
    )
    # Rendezvous hashing spreads new models over equal replicas (a fixed hash:
    # these counts are the same on every run).
    assert set(firsts) == set(ids) and min(firsts.values()) >= 70


SUBPROCESS_RANKING = """
import json, sys
from swapcore import AffinityPolicy, ReplicaReport
out = {}
for model in ("a", "b", "llama-3-8b", "qwen:7b"):
    ids = ("r0", "r1", "r2", "r3")
    reports = [ReplicaReport(r, models=[model], would_evict={model: ()}) for r in ids]
    out[model] = list(AffinityPolicy().rank(model, reports))
print(json.dumps(out))
"""


def test_the_tie_break_is_the_same_in_every_process() -> None:
    rankings = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", SUBPROCESS_RANKING],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        rankings.append(json.loads(done.stdout))
    here = {
        model: rank(
            [
                ReplicaReport(r, models=[model], would_evict={model: ()})
                for r in ("r0", "r1", "r2", "r3")
            ],
            model,
        )
        for model in rankings[0]
    }
    assert rankings[0] == rankings[1] == here
    # Not a constant order: different models put different replicas first.
    assert len({ranking[0] for ranking in here.values()}) > 1


def test_without_spill_a_held_model_is_never_copied_however_long_its_queue() -> None:
    reports = [rep("holder", ready={"a"}, queued=100), rep("room", would_evict={"a": ()})]
    assert rank(reports) == ["holder", "room"]


def test_spill_puts_room_ahead_of_holders_once_every_holder_queues_enough() -> None:
    holder = rep("holder", ready={"a"}, queued=2)
    loading = rep("loading", loading={"a"}, queued=3)
    room = rep("room", would_evict={"a": ()})
    asleep = rep("asleep", sleeping={"a"}, would_evict={"a": ()})
    evict = rep("evict", ready={"b"}, would_evict={"a": ("b",)})
    ranking = rank([holder, loading, room, asleep, evict], spill_queue=2)
    # A wake before a cold load, both before the holders; eviction still after them.
    assert ranking == ["asleep", "room", "holder", "loading", "evict"]


def test_spill_waits_until_every_holder_reaches_the_threshold() -> None:
    short = rep("short", ready={"a"}, queued=1)
    long = rep("long", ready={"a"}, queued=5)
    room = rep("room", would_evict={"a": ()})
    assert rank([room, long, short], spill_queue=2) == ["short", "long", "room"]
    # At the threshold exactly, it spills.
    assert rank([room, long, rep("short", ready={"a"}, queued=2)], spill_queue=2)[0] == "room"


def test_spill_never_evicts_for_a_second_copy() -> None:
    holder = rep("holder", ready={"a"}, queued=9)
    evict = rep("evict", ready={"b"}, would_evict={"a": ("b",)})
    assert rank([evict, holder], spill_queue=1) == ["holder", "evict"]


def test_spill_with_no_holder_changes_nothing() -> None:
    reports = TIERS[2:]
    assert rank(reports, spill_queue=1) == rank(reports)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_spill_queue_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(ValueError, match="spill_queue"):
        AffinityPolicy(spill_queue=bad)


def test_spill_queue_is_kept_and_shown() -> None:
    assert AffinityPolicy().spill_queue is None
    assert AffinityPolicy(spill_queue=3).spill_queue == 3
    assert repr(AffinityPolicy(spill_queue=3)) == "AffinityPolicy(spill_queue=3)"
