"""ReplicaReport as data: a round trip through to_dict/from_dict, JSON, and clear errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given

from swapcore import ReplicaReport
from swapcore.testing.strategies import replica_reports


@given(replica_reports())
def test_to_dict_and_from_dict_round_trip_through_json(reports: list[ReplicaReport]) -> None:
    for report in reports:
        data = report.to_dict()
        text = json.dumps(data, allow_nan=False)
        assert ReplicaReport.from_dict(json.loads(text)) == report
        assert ReplicaReport.from_dict(data).to_dict() == data


def test_equal_reports_give_equal_dicts() -> None:
    one = ReplicaReport("r", models=["b", "a"], ready=["a"], would_evict={"b": ["a"]})
    two = ReplicaReport("r", models={"a", "b"}, ready={"a"}, would_evict={"b": ("a",)})
    assert one == two and one.to_dict() == two.to_dict()
    assert one.to_dict()["models"] == ["a", "b"]
    assert one.holds("a") and not one.holds("b")


def test_only_replica_and_models_are_required() -> None:
    report = ReplicaReport.from_dict({"replica": "r0", "models": ["a"], "newer": 1})
    assert report == ReplicaReport("r0", models={"a"})
    assert (report.queued, report.in_flight, report.free_memory) == (0, 0, None)


def test_free_memory_reads_an_int_as_a_float() -> None:
    report = ReplicaReport.from_dict({"replica": "r0", "models": [], "free_memory": 24})
    assert report.free_memory == 24.0 and isinstance(report.free_memory, float)


GOOD: dict[str, Any] = {"replica": "r0", "models": ["a", "b"]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"models": ["a"]}, "replica report: missing key 'replica'"),
        ({"replica": "r0"}, "replica report 'r0': missing key 'models'"),
        ({"replica": 3, "models": []}, "'replica' must be a string"),
        ({**GOOD, "models": "ab"}, "'r0': 'models' must be a list of ids, not 'ab'"),
        ({**GOOD, "ready": 5}, "'r0': 'ready' must be a list of ids"),
        ({**GOOD, "busy": ["a", 1]}, "'r0': 'busy' must hold strings, not 1"),
        ({**GOOD, "would_evict": ["a"]}, "'r0': 'would_evict' must be a mapping"),
        ({**GOOD, "would_evict": {"a": "b"}}, "'r0': 'would_evict': 'a' must be a list of ids"),
        ({**GOOD, "queued": "2"}, "'r0': 'queued' must be an int of at least 0, not '2'"),
        ({**GOOD, "in_flight": -1}, "'r0': 'in_flight' must be an int of at least 0, not -1"),
        ({**GOOD, "queued": True}, "'queued' must be an int"),
        ({**GOOD, "free_memory": "lots"}, "'r0': 'free_memory' must be a number or null"),
    ],
)
def test_from_dict_names_the_bad_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        ReplicaReport.from_dict(data)
    assert message in str(caught.value)


def test_from_dict_refuses_what_is_not_a_mapping() -> None:
    with pytest.raises(ValueError, match="expected a mapping, not list"):
        ReplicaReport.from_dict([("replica", "r0")])  # type: ignore[arg-type]


def test_a_string_is_not_a_set_of_models() -> None:
    with pytest.raises(TypeError, match="not the string 'ab'"):
        ReplicaReport("r0", models="ab")
