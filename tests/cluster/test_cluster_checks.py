"""check_cluster_policy and cluster_policy_violations: good policies pass, broken ones are named."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs
import pytest
from hypothesis import given, settings

from swapcore import AffinityPolicy, ClusterPolicy, ReplicaReport
from swapcore.testing import (
    CLUSTER_RULES,
    DEFAULT_CLUSTER_RULES,
    check_cluster_policy,
    cluster_policy_violations,
)
from swapcore.testing.strategies import replica_reports

WITH_HOLDER = DEFAULT_CLUSTER_RULES | {"prefers a holder"}


def cluster() -> list[ReplicaReport]:
    """A fresh small cluster (a policy under test may edit the reports it is given)."""
    return [
        ReplicaReport("r0", models={"a", "b"}, ready={"a"}, queued=1),
        ReplicaReport("r1", models={"a", "b"}, would_evict={"a": ()}),
        ReplicaReport("r2", models={"b"}, ready={"b"}),
    ]


def test_the_default_policy_keeps_the_contract_and_prefers_a_holder() -> None:
    check_cluster_policy(AffinityPolicy(), rules=WITH_HOLDER, max_examples=150)


def test_the_default_policy_with_spill_keeps_the_contract() -> None:
    check_cluster_policy(AffinityPolicy(spill_queue=2), max_examples=150)


def test_spill_breaks_prefers_a_holder_and_the_rule_says_so() -> None:
    # r0 holds "a" with a request queued; r1 has room: spill_queue=1 loads a second copy.
    (violation,) = cluster_policy_violations(
        AffinityPolicy(spill_queue=1), "a", cluster(), rules=WITH_HOLDER
    )
    assert violation == (
        "prefers a holder: ranked 'r1' first, which does not hold 'a', though ['r0'] hold it ready"
    )


class Unknown(ClusterPolicy):
    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        return [*sorted(r.replica for r in replicas if model in r.models), "ghost"]


class Duplicates(ClusterPolicy):
    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        return sorted(r.replica for r in replicas if model in r.models) * 2


class RandomOrder(ClusterPolicy):
    """A random order that replays: each call reverses the last one's order.

    (A truly random policy is caught too, but hypothesis then reports its
    failure as flaky rather than shrinking it.)
    """

    def __init__(self) -> None:
        self.calls = 0

    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        self.calls += 1
        return sorted(
            (r.replica for r in replicas if model in r.models), reverse=self.calls % 2 == 0
        )


class InputOrder(ClusterPolicy):
    """Keeps the caller's order: deterministic, but not order independent."""

    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        return [r.replica for r in replicas if model in r.models]


class SortsInPlace(ClusterPolicy):
    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        assert isinstance(replicas, list)
        replicas.sort(key=lambda r: r.queued + r.in_flight)
        return sorted(r.replica for r in replicas if model in r.models)


class EditsAReport(ClusterPolicy):
    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        for report in replicas:
            object.__setattr__(report, "queued", report.queued + 1)
        return sorted(r.replica for r in replicas if model in r.models)


class Logs(ClusterPolicy):
    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        logging.getLogger("my.policy").debug("ranking %s", model)
        return sorted(r.replica for r in replicas if model in r.models)


class Raises(ClusterPolicy):
    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        return [min(r.replica for r in replicas if model in r.models)]


class Everyone(ClusterPolicy):
    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        return sorted(r.replica for r in replicas)


class ReturnsASet(ClusterPolicy):
    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        return {r.replica for r in replicas if model in r.models}  # type: ignore[return-value]


class ReturnsAString(ClusterPolicy):
    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        return "".join(sorted(r.replica for r in replicas if model in r.models))


class IgnoresHolders(ClusterPolicy):
    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        return sorted((r.replica for r in replicas if model in r.models), reverse=True)


BROKEN = [
    (Unknown(), "known replicas"),
    (Duplicates(), "no duplicates"),
    (RandomOrder(), "deterministic"),
    (InputOrder(), "order independent"),
    (SortsInPlace(), "no mutation"),
    (EditsAReport(), "no mutation"),
    (Logs(), "no logging"),
    (Raises(), "no exception"),
    (Everyone(), "serves the model"),
    (ReturnsASet(), "returns a sequence"),
    (ReturnsAString(), "returns a sequence"),
]


@pytest.mark.parametrize(("policy", "label"), BROKEN, ids=[label for _, label in BROKEN])
def test_a_broken_policy_is_caught_with_its_rule(policy: ClusterPolicy, label: str) -> None:
    with pytest.raises(AssertionError) as caught:
        check_cluster_policy(policy, max_examples=300)
    message = str(caught.value)
    assert f"  - {label}:" in message
    name = type(policy).__name__
    assert f"{name} breaks the ClusterPolicy contract in rank('" in message
    # The failing example is shown: its reports, or an empty cluster.
    assert "the replicas being:\n    {'replica': " in message or ", []):\n" in message


def test_one_call_names_the_rule_it_breaks() -> None:
    assert cluster_policy_violations(AffinityPolicy(), "a", cluster()) == []
    for policy, label in BROKEN:
        if label in ("deterministic", "no exception"):
            continue  # needs a cluster where it shows; below
        violations = cluster_policy_violations(policy, "a", cluster())
        assert [v.split(":")[0] for v in violations] == [label], (policy, violations)
    (raised,) = cluster_policy_violations(Raises(), "z", cluster())
    assert raised.startswith("no exception: raised ValueError")
    assert any(
        v.startswith("deterministic:")
        for v in cluster_policy_violations(RandomOrder(), "b", cluster())
    )


def test_prefers_a_holder_is_opt_in() -> None:
    assert cluster_policy_violations(IgnoresHolders(), "a", cluster()) == []
    (violation,) = cluster_policy_violations(IgnoresHolders(), "a", cluster(), rules=WITH_HOLDER)
    assert violation.startswith("prefers a holder: ranked 'r1' first")
    # A holder that is loading counts as one.
    loading = [attrs.evolve(cluster()[0], ready=(), loading={"a"}), *cluster()[1:]]
    assert cluster_policy_violations(AffinityPolicy(), "a", loading, rules=WITH_HOLDER) == []


def test_rules_can_be_dropped_but_not_misspelt() -> None:
    assert (
        cluster_policy_violations(
            InputOrder(), "a", cluster(), rules=DEFAULT_CLUSTER_RULES - {"order independent"}
        )
        == []
    )
    check_cluster_policy(
        InputOrder(), rules=DEFAULT_CLUSTER_RULES - {"order independent"}, max_examples=50
    )
    with pytest.raises(ValueError, match="unknown rule"):
        cluster_policy_violations(AffinityPolicy(), "a", cluster(), rules={"order independant"})
    with pytest.raises(ValueError, match="not a string"):
        cluster_policy_violations(AffinityPolicy(), "a", cluster(), rules="no logging")
    assert DEFAULT_CLUSTER_RULES < CLUSTER_RULES


def test_returns_a_sequence_and_no_exception_cannot_be_dropped() -> None:
    (violation,) = cluster_policy_violations(ReturnsASet(), "a", cluster(), rules=())
    assert violation.startswith("returns a sequence:")


def test_the_check_refuses_what_is_not_a_policy_or_no_ids() -> None:
    with pytest.raises(TypeError, match="ClusterPolicy"):
        check_cluster_policy(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        check_cluster_policy(AffinityPolicy(), models=())
    with pytest.raises(ValueError, match="not strings"):
        check_cluster_policy(AffinityPolicy(), replicas="r0")


@settings(max_examples=100)
@given(replica_reports())
def test_generated_reports_are_consistent(reports: list[ReplicaReport]) -> None:
    ids = [r.replica for r in reports]
    assert len(ids) == len(set(ids)) >= 1
    for r in reports:
        assert r.ready <= r.models and r.loading <= r.models and r.sleeping <= r.models
        assert (
            not (r.ready & r.loading)
            and not (r.ready & r.sleeping)
            and not (r.loading & r.sleeping)
        )
        assert r.busy <= r.ready | r.loading
        assert r.in_flight >= len(r.busy) and (r.busy or r.in_flight == 0)
        assert r.queued >= 0
        for model, evict in r.would_evict.items():
            assert model in r.models and not r.holds(model)
            assert set(evict) <= r.ready - r.busy and len(set(evict)) == len(evict)


def test_replica_reports_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="min_size"):
        replica_reports(replica_ids=("r0",), min_size=2)
    with pytest.raises(ValueError, match="not strings"):
        replica_reports("abc")
