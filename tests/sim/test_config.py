"""``swapcore.sim.config``: the exact messages of the mapping checks it shares with config."""

from __future__ import annotations

from pathlib import Path

import pytest

from swapcore.errors import ConfigError
from swapcore.sim.config import load_sim_config
from swapcore.sim.profiles import ModelProfile


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [1, 2]\nplanner: lru\n", "models: must be a mapping, got a list"),
        (
            "models: {a: 1}\nplanner: {use: matrix}\n",
            "planner.sets: must be a mapping, got nothing",
        ),
        (
            "models: {a: 1}\nplanner: {use: groups, groups: g}\n",
            "planner.groups: must be a mapping, got a string",
        ),
        ("models: {a: 1}\nscheduler: 3\n", "scheduler: must be a mapping, got a number"),
        # The first of several bad keys is the one named.
        ("models:\n  a: 1\n  1: 2\n  2: 3\n", "models: keys must be strings, got 1"),
    ],
)
def test_mapping_problems_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_sim_config(path)
    assert str(info.value) == f"{path}: {message}"


def test_scheduler_options_set_per_model_name_the_model_key(tmp_path: Path) -> None:
    for option, model_key in (
        ("priority", "priority"),
        ("concurrency_limits", "concurrency_limit"),
    ):
        path = tmp_path / "sim.yaml"
        path.write_text(f"models:\n  a: {{load: 1}}\nscheduler: {{{option}: {{a: 1}}}}\n")
        with pytest.raises(ConfigError) as info:
            load_sim_config(path)
        assert f"scheduler.{option}: set it per model (models.<id>.{model_key})" in str(info.value)


@pytest.mark.parametrize("field", ["load", "stop", "size"])
def test_model_profile_rejects_numbers_too_large_for_a_float(field: str) -> None:
    options = {"load": 1.0, field: 10**400}
    with pytest.raises(ConfigError, match=f"ModelProfile.{field}"):
        ModelProfile(**options)


def test_a_config_with_unsupported_policy_keys_simulates_only_when_allowed(
    tmp_path: Path,
) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "profiles.yaml"
    path.write_text("models:\n  a: {cmd: 'srv --port ${PORT}'}\nprofiles: {p: [a]}\n")
    with pytest.raises(ConfigError, match="profiles"):
        load_sim_config(str(path))
    config = load_sim_config(str(path), allow_unsupported=True)
    assert list(config.models) == ["a"]
    assert any("profiles" in warning for warning in config.warnings)
