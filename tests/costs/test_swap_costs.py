"""SwapCosts: priors, the median estimator, persistence, bad input."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swapcore import ConfigError
from swapcore.costs import COST_KINDS, SwapCosts


def test_prior_until_measured_then_the_median() -> None:
    costs = SwapCosts({"a": {"load": 30.0, "wake": 2.0}})
    assert costs.estimate("a", "load") == 30.0
    assert costs.estimate("a", "wake") == 2.0
    assert costs.estimate("a", "stop") is None
    assert costs.estimate("b", "load") is None
    costs.record("a", "load", 10.0)
    assert costs.estimate("a", "load") == 10.0
    costs.record("a", "load", 12.0)
    costs.record("a", "load", 500.0)  # one outlier does not move a median of three far
    assert costs.estimate("a", "load") == 12.0
    assert costs.measured("a", "load") == 3
    assert costs.describe("a") == {
        "load": {"seconds": 12.0, "measured": 3, "source": "measured"},
        "wake": {"seconds": 2.0, "measured": 0, "source": "configured"},
    }


def test_the_window_follows_a_real_change() -> None:
    costs = SwapCosts(window=5)
    for _ in range(5):
        costs.record("a", "wake", 1.0)
    for _ in range(3):
        costs.record("a", "wake", 4.0)
    assert costs.estimate("a", "wake") == 4.0  # three of the last five
    assert costs.measured("a", "wake") == 8


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=30), st.integers(1, 12))
def test_the_estimate_is_the_median_of_the_window(values: list[float], window: int) -> None:
    costs = SwapCosts(window=window)
    for value in values:
        costs.record("m", "load", value)
    assert costs.estimate("m", "load") == statistics.median(values[-window:])


def test_bad_measurements_are_ignored() -> None:
    costs = SwapCosts()
    for bad in (-1.0, float("nan"), float("inf")):
        costs.record("a", "load", bad)
    assert costs.estimate("a", "load") is None


@pytest.mark.parametrize(
    ("priors", "message"),
    [
        ({"a": {"load": -1}}, r"priors\['a'\]\['load'\] must be a finite number"),
        ({"a": {"load": "30s"}}, r"priors\['a'\]\['load'\] must be a number of seconds"),
        ({"a": {"warmup": 3}}, "unknown cost kind 'warmup'"),
    ],
)
def test_bad_priors_name_the_key(priors: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SwapCosts(priors)  # type: ignore[arg-type]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    costs = SwapCosts({"a": {"load": 30.0}})
    for kind in COST_KINDS:
        costs.record("a", kind, 1.5)
    costs.record("b", "load", 7.25)
    path = tmp_path / "costs.json"
    costs.save(path)
    assert not list(tmp_path.glob("costs.json.*"))  # the temporary file was renamed
    again = SwapCosts()
    assert again.load(path) is True
    for kind in COST_KINDS:
        assert again.estimate("a", kind) == 1.5
    assert again.estimate("b", "load") == 7.25
    assert again.measured("b", "load") == 1
    assert again.models() == ["a", "b"]


def test_a_missing_file_is_not_an_error(tmp_path: Path) -> None:
    assert SwapCosts().load(tmp_path / "absent.json") is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ('{"format": 99}', "not a swapcore costs file"),
        ('{"format": 1, "models": {"a": {"load": {"samples": ["x"]}}}}', r"models\.a\.load"),
        ('{"format": 1, "models": {"a": {"nap": {"samples": [1]}}}}', "unknown cost kind"),
    ],
)
def test_a_bad_file_names_itself(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "costs.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as raised:
        SwapCosts().load(path)
    assert str(path) in str(raised.value)


def test_the_file_is_small_readable_json(tmp_path: Path) -> None:
    costs = SwapCosts()
    costs.record("a", "wake", 0.2)
    path = tmp_path / "costs.json"
    costs.save(path)
    data = json.loads(path.read_text())
    assert data == {
        "format": 1,
        "window": 9,
        "models": {"a": {"wake": {"samples": [0.2], "measured": 1}}},
    }
