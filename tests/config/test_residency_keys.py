"""The residency keys: sleepMode, hostMemory, memory, swapCosts and the swapcore budgets."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from swapcore.config import (
    GatewayConfig,
    ModelConfig,
    RoutingConfig,
    SwapcoreSettings,
    build_costs,
    build_planner,
    build_processes,
    build_sleep_rules,
    load_config,
    parse_config,
)
from swapcore.config._residency import parse_size
from swapcore.config.schema import format_size
from swapcore.errors import ConfigError
from swapcore.planners.groups import Group, GroupPlanner
from swapcore.planners.matrix import MatrixPlanner
from swapcore.planners.memory import MemoryBudgetPlanner
from swapcore.planners.residency import Eviction, SleepRules

GIB = 1 << 30
UNITS = "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"


def parse(document: dict[str, Any], **kwargs: Any) -> GatewayConfig:
    return parse_config(document, env={}, **kwargs)


def model(**extra: Any) -> dict[str, Any]:
    return {"cmd": "srv --port ${PORT}", **extra}


def one(**extra: Any) -> GatewayConfig:
    return parse({"models": {"a": model(**extra)}})


def errors_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(document)
    return str(info.value).splitlines()


def error_of_model(**extra: Any) -> str:
    [line] = errors_of({"models": {"a": model(**extra)}})
    return line


# ------------------------------------------------------------------ sizes


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (16, 16 * GIB),
        (0.5, GIB // 2),
        (0, 0),
        ("16GiB", 16 * GIB),
        ("16 GiB", 16 * GIB),
        ("512MiB", 512 << 20),
        ("16GB", 16 * 10**9),
        ("1.5TiB", 3 << 39),
        ("123B", 123),
        ("2kb", 2000),
        ("4KiB", 4096),
        ("1.5gib", 3 << 29),
        (".5GiB", GIB // 2),
        ("0.1GiB", round(GIB / 10)),
    ],
)
def test_sizes_are_gib_numbers_or_strings_with_a_unit(value: object, size: int) -> None:
    assert parse_size(value) == size
    assert one(memory=value if size else 1).models["a"].memory == (size or GIB)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "16",
            "'16' needs a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), or write a number of GiB",
        ),
        ("16 GiBs", f"unknown unit 'GiBs' in '16 GiBs' (valid: {UNITS})"),
        ("16G", f"unknown unit 'G' in '16G' (valid: {UNITS})"),
        ("lots", "must be a size such as 16GiB or 512MiB, got 'lots'"),
        ("-1GiB", "must be a size such as 16GiB or 512MiB, got '-1GiB'"),
        ("1e3GiB", "must be a size such as 16GiB or 512MiB, got '1e3GiB'"),
        (-1, "must be a size >= 0, got -1"),
        (float("inf"), "must be a size >= 0, got inf"),
        (float("nan"), "must be a size >= 0, got nan"),
        (True, "must be a size, got a boolean"),
        ([16], "must be a size (a number of GiB or a string such as 16GiB), got a list"),
    ],
)
def test_bad_sizes_name_the_key(value: object, message: str) -> None:
    assert error_of_model(hostMemory=value, sleepMode={"level": 1}) == (
        f"models.a.hostMemory: {message}"
    )
    assert error_of_model(memory=value) == f"models.a.memory: {message}"
    [line] = errors_of({"models": {"a": model()}, "swapcore": {"host_memory_budget": value}})
    assert line == f"swapcore.host_memory_budget: {message}"


def test_memory_must_be_more_than_zero_bytes() -> None:
    assert error_of_model(memory=0) == "models.a.memory: must be more than 0 bytes"
    assert one(hostMemory="0B", sleepMode={"level": 1}).models["a"].host_memory == 0


def test_format_size() -> None:
    assert format_size(16 * GIB) == "16 GiB"
    assert format_size(3 << 39) == "1.5 TiB"
    assert format_size(512 << 20) == "512 MiB"
    assert format_size(123) == "123 B"
    assert format_size(16 * 10**9) == "14.9 GiB"


# -------------------------------------------------------------- sleepMode


def test_sleep_mode_defaults_and_endpoints() -> None:
    a = one(sleepMode={"level": 1})
    assert a.models["a"].sleep_level == 1
    assert a.models["a"].sleep_endpoint == "/sleep?level={level}"
    assert a.models["a"].wake_endpoint == "/wake_up"
    sglang = one(
        sleepMode={
            "level": 2,
            "sleepEndpoint": "/release_memory_occupation",
            "wakeEndpoint": "/resume_memory_occupation",
        }
    ).models["a"]
    assert sglang.sleep_level == 2
    assert sglang.sleep_endpoint == "/release_memory_occupation"
    assert sglang.wake_endpoint == "/resume_memory_occupation"
    for never in (None, False):
        assert one(sleepMode=never).models["a"].sleep_level is None
    assert one().models["a"].sleep_level is None


def test_macros_expand_in_the_endpoints() -> None:
    config = parse(
        {
            "macros": {"wake": "/resume_memory_occupation"},
            "models": {
                "a": model(
                    sleepMode={"level": 1, "wakeEndpoint": "${wake}", "sleepEndpoint": "/s/${PORT}"}
                )
            },
        }
    )
    assert config.models["a"].wake_endpoint == "/resume_memory_occupation"
    assert config.models["a"].sleep_endpoint == "/s/5800"
    [line] = errors_of({"models": {"a": model(sleepMode={"level": 1, "wakeEndpoint": "${nope}"})}})
    assert line == "models.a.sleepMode.wakeEndpoint: unknown macro '${nope}'"


@pytest.mark.parametrize(
    ("sleep_mode", "message"),
    [
        ({"level": 3}, "models.a.sleepMode.level: must be 1 or 2, got 3"),
        ({"level": 0}, "models.a.sleepMode.level: must be 1 or 2, got 0"),
        ({"level": True}, "models.a.sleepMode.level: must be 1 or 2, got true"),
        ({"level": "1"}, "models.a.sleepMode.level: must be 1 or 2, got '1'"),
        ({"level": 1.5}, "models.a.sleepMode.level: must be 1 or 2, got 1.5"),
        ({}, "models.a.sleepMode.level: required: 1 or 2"),
        ({"sleepEndpoint": "/s"}, "models.a.sleepMode.level: required: 1 or 2"),
        (
            {"level": 1, "sleepEndpoint": "sleep"},
            "models.a.sleepMode.sleepEndpoint: must be a path starting with '/', got 'sleep'",
        ),
        (
            {"level": 1, "wakeEndpoint": "/wake up"},
            "models.a.sleepMode.wakeEndpoint: must not contain whitespace, got '/wake up'",
        ),
        (
            {"level": 1, "wakeEndpoint": 5},
            "models.a.sleepMode.wakeEndpoint: must be a string, got a number",
        ),
        (True, "models.a.sleepMode: must be a mapping with level (or false), got true"),
        (1, "models.a.sleepMode: must be a mapping with level (or false), got 1"),
        ([1], "models.a.sleepMode: must be a mapping with level (or false), got a list"),
    ],
)
def test_bad_sleep_modes_name_the_key_path(sleep_mode: object, message: str) -> None:
    assert error_of_model(sleepMode=sleep_mode) == message


def test_unknown_sleep_mode_keys_are_warnings() -> None:
    config = one(sleepMode={"level": 1, "tags": "weights"})
    assert "models.a.sleepMode.tags: unknown key, ignored" in config.warnings


# -------------------------------------------------------------- swapCosts


def test_swap_costs() -> None:
    costs = one(swapCosts={"load": 30, "wake": 1.5, "stop": 0, "sleep": None}).models["a"]
    assert dict(costs.swap_costs) == {"load": 30.0, "wake": 1.5, "stop": 0.0}
    assert dict(one().models["a"].swap_costs) == {}
    config = one(swapCosts={"laod": 3})
    assert "models.a.swapCosts.laod: unknown key, ignored" in config.warnings


@pytest.mark.parametrize(
    ("costs", "message"),
    [
        ({"load": -1}, "models.a.swapCosts.load: must be >= 0"),
        ({"wake": "2s"}, "models.a.swapCosts.wake: must be a number, got a string"),
        ({"stop": True}, "models.a.swapCosts.stop: must be a number, got a boolean"),
        ({"sleep": float("inf")}, "models.a.swapCosts.sleep: must be a finite number of seconds"),
        (3, "models.a.swapCosts: must be a mapping, got a number"),
    ],
)
def test_bad_swap_costs_name_the_key_path(costs: object, message: str) -> None:
    assert error_of_model(swapCosts=costs) == message


# ------------------------------------------------------- host memory rules


def test_host_memory_warnings() -> None:
    config = parse(
        {
            "models": {
                "plain": model(hostMemory="8GiB"),
                "deep": model(hostMemory="8GiB", sleepMode={"level": 2}),
                "light": model(sleepMode={"level": 1}),
                "held": model(sleepMode={"level": 1}, hostMemory="8GiB"),
            },
            "swapcore": {"host_memory_budget": "32GiB"},
        }
    )
    assert config.warnings == (
        "models.plain.hostMemory: ignored: the model has no sleepMode",
        "models.deep.hostMemory: ignored: at sleep level 2 a model holds no host memory",
        "models.light.hostMemory: not set: asleep, this model counts as holding none of "
        "swapcore.host_memory_budget",
    )
    assert config.swapcore.host_memory_budget == 32 * GIB
    nobody = parse({"models": {"a": model()}, "swapcore": {"host_memory_budget": 1}})
    assert nobody.warnings == ("swapcore.host_memory_budget: ignored: no model has sleepMode",)
    unbounded = parse({"models": {"a": model()}, "swapcore": {"host_memory_budget": None}})
    assert unbounded.swapcore.host_memory_budget is None and unbounded.warnings == ()


# ------------------------------------------------------------ memory budget


MEMORY = {
    "models": {
        "a": model(memory="16GiB"),
        "b": model(memory=24),
        "c": model(memory="40GiB"),
    },
    "swapcore": {"memory_budget": "48GiB"},
}


def test_memory_budget_selects_the_memory_router() -> None:
    config = parse(MEMORY)
    assert config.routing.router == "memory"
    assert config.swapcore.memory_budget == 48 * GIB
    assert config.group_members() == {}
    planner = build_planner(config)
    assert isinstance(planner, MemoryBudgetPlanner)
    assert planner.budget == 48 * GIB
    assert dict(planner.sizes) == {"a": 16 * GIB, "b": 24 * GIB, "c": 40 * GIB}
    assert planner.eviction_for("c", ["a", "b"]) == ("a", "b")
    assert planner.eviction_for("b", ["a"]) == ()
    summary = config.summary()
    json.dumps(summary)
    assert summary["router"] == "memory"
    assert summary["memory"] == {"budget": 48 * GIB, "sizes": dict(planner.sizes)}
    assert summary["settings"]["memory_budget"] == 48 * GIB


def test_memory_budget_needs_every_models_memory() -> None:
    document = {**MEMORY, "models": {**MEMORY["models"], "d": model(), "e": model(memory=64)}}
    assert errors_of(document) == [
        "models.d.memory: required when swapcore.memory_budget is set",
        "models.e.memory: 64 GiB is more than swapcore.memory_budget (48 GiB): "
        "the model could never load",
    ]


@pytest.mark.parametrize(
    ("routing", "key"),
    [
        ({"groups": {"g": {"members": ["a"]}}}, "groups"),
        ({"matrix": {"sets": {"s": "a"}}}, "matrix"),
        ({"routing": {"router": {"use": "group"}}}, "routing.router.use"),
        (
            {"routing": {"router": {"settings": {"groups": {"g": {"members": ["a"]}}}}}},
            "routing.router.settings.groups",
        ),
        (
            {"routing": {"router": {"settings": {"matrix": {"sets": {"s": "a"}}}}}},
            "routing.router.settings.matrix",
        ),
    ],
)
def test_memory_budget_with_groups_or_a_matrix_names_both_keys(
    routing: dict[str, Any], key: str
) -> None:
    assert errors_of({**MEMORY, **routing}) == [
        f"swapcore.memory_budget: cannot be combined with {key}: memory budgets replace "
        "groups and the matrix; remove one of them"
    ]


def test_memory_budget_errors() -> None:
    [line] = errors_of({**MEMORY, "swapcore": {"memory_budget": 0}})
    assert line == "swapcore.memory_budget: must be more than 0 bytes"
    [line] = errors_of({**MEMORY, "swapcore": {"memory_budget": "much"}})
    assert line == "swapcore.memory_budget: must be a size such as 16GiB or 512MiB, got 'much'"


def test_memory_alone_is_kept_for_later_use() -> None:
    config = one(memory="8GiB")
    assert config.routing.router == "group" and config.models["a"].memory == 8 * GIB
    assert isinstance(build_planner(config), GroupPlanner)


def test_shared_port_under_a_memory_budget() -> None:
    shared = {"proxy": "http://127.0.0.1:9000", "cmd": "srv"}
    apart = {
        "models": {"a": {**shared, "memory": 30}, "b": {**shared, "memory": 30}},
        "swapcore": {"memory_budget": 48},
    }
    assert parse(apart).routing.router == "memory"  # 30 + 30 > 48: never together
    together = {**apart, "swapcore": {"memory_budget": 64}}
    [line] = errors_of(together)
    assert line.startswith("models.b.proxy: localhost:9000 is also the upstream of models.a.proxy")
    assert "swapcore.memory_budget lets both models run at once" in line


# ---------------------------------------------------------------- costs_file


def test_costs_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "config.yaml"
    path.parent.mkdir()
    path.write_text(
        "models:\n  a:\n    cmd: srv --port ${PORT}\nswapcore:\n  costs_file: costs.json\n"
    )
    config = load_config(path)
    assert config.swapcore.costs_file == tmp_path / "conf" / "costs.json"
    assert config.summary()["settings"]["costs_file"] == str(tmp_path / "conf" / "costs.json")

    absolute = parse(
        {"models": {"a": model()}, "swapcore": {"costs_file": str(tmp_path / "x.json")}}
    )
    assert absolute.swapcore.costs_file == tmp_path / "x.json"
    based = parse(
        {"models": {"a": model()}, "swapcore": {"costs_file": "sub/c.json"}}, base_dir=tmp_path
    )
    assert based.swapcore.costs_file == tmp_path / "sub" / "c.json"
    home = parse({"models": {"a": model()}, "swapcore": {"costs_file": "~/c.json"}})
    assert home.swapcore.costs_file == Path(os.path.expanduser("~/c.json"))
    assert one().swapcore.costs_file is None


def test_costs_file_from_yaml_text_is_relative_to_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = "models:\n  a:\n    cmd: srv --port ${PORT}\nswapcore:\n  costs_file: c.json\n"
    assert load_config(text).swapcore.costs_file == tmp_path / "c.json"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "swapcore.costs_file: must be a file path, or null for none"),
        ("  ", "swapcore.costs_file: must be a file path, or null for none"),
        (3, "swapcore.costs_file: must be a file path, got a number"),
        ("a\0b", "swapcore.costs_file: must not contain a NUL character"),
    ],
)
def test_bad_costs_files(value: object, message: str) -> None:
    assert errors_of({"models": {"a": model()}, "swapcore": {"costs_file": value}}) == [message]


# ----------------------------------------------------------------- building


SLEEPY = {
    "models": {
        "a": model(sleepMode={"level": 1}, hostMemory="20GiB", swapCosts={"load": 40, "wake": 2}),
        "b": model(sleepMode={"level": 2, "wakeEndpoint": "/resume"}),
        "c": model(swapCosts={"stop": 1}),
    },
    "swapcore": {"host_memory_budget": "32GiB"},
}


def test_processes_get_the_sleep_settings() -> None:
    processes = build_processes(parse(SLEEPY))
    assert processes["a"].sleep_level == 1 and processes["b"].sleep_level == 2
    assert processes["c"].sleep_level is None
    assert processes["b"]._wake_url == "http://localhost:5801/resume"
    assert processes["b"]._sleep_url == "http://localhost:5801/sleep?level=2"


def test_planner_gets_the_sleep_rules() -> None:
    config = parse(SLEEPY)
    rules = build_sleep_rules(config)
    assert rules == SleepRules(
        levels={"a": 1, "b": 2}, host_memory={"a": 20 * GIB}, host_budget=32 * GIB
    )
    planner = build_planner(config)
    assert isinstance(planner, GroupPlanner) and planner.sleep_rules == rules
    # a fits the host budget and sleeps; c never sleeps.
    assert planner.residency_for("b", ["a", "c"], []) == Eviction(sleep=("a",), stop=("c",))
    assert build_sleep_rules(one()) is None
    assert build_planner(one()).sleep_rules is None


def test_sleep_rules_reach_matrix_and_memory_planners() -> None:
    matrix = parse({**SLEEPY, "matrix": {"sets": {"s": "a | b | c"}}})
    planner = build_planner(matrix)
    assert isinstance(planner, MatrixPlanner) and planner.sleep_rules == build_sleep_rules(matrix)
    memory = parse(
        {
            "models": {m: {**spec, "memory": 10} for m, spec in SLEEPY["models"].items()},
            "swapcore": {**SLEEPY["swapcore"], "memory_budget": 10},
        }
    )
    planner = build_planner(memory)
    assert isinstance(planner, MemoryBudgetPlanner)
    assert planner.sleep_rules == build_sleep_rules(memory)


def test_build_costs_holds_the_configured_priors() -> None:
    costs = build_costs(parse(SLEEPY))
    assert costs.estimate("a", "load") == 40 and costs.estimate("a", "wake") == 2
    assert costs.estimate("c", "stop") == 1 and costs.estimate("b", "load") is None
    assert costs.models() == ["a", "c"]
    assert costs.measured("a", "load") == 0


def test_summary_shows_the_residency_keys() -> None:
    summary = parse(SLEEPY).summary()
    json.dumps(summary)
    a, b, c = summary["models"]
    assert a["sleep_level"] == 1 and a["host_memory"] == 20 * GIB
    assert a["sleep_endpoint"] == "/sleep?level={level}" and a["wake_endpoint"] == "/wake_up"
    assert a["swap_costs"] == {"load": 40.0, "wake": 2.0}
    assert b["wake_endpoint"] == "/resume"
    assert c["sleep_level"] is None and c["sleep_endpoint"] is None and c["memory"] is None
    assert summary["settings"]["host_memory_budget"] == 32 * GIB
    assert summary["settings"]["costs_file"] is None


# ------------------------------------------------------ hand-built configs


def test_hand_built_configs_check_their_invariants() -> None:
    def built(**fields: Any) -> ModelConfig:
        return ModelConfig(id="a", cmd="srv", proxy="http://h:1", **fields)

    assert built(sleep_level=2, memory=1, host_memory=0, swap_costs={"load": 1}).sleep_level == 2
    for fields, field in [
        ({"sleep_level": 3}, "sleep_level"),
        ({"sleep_endpoint": "x"}, "sleep_endpoint"),
        ({"wake_endpoint": ""}, "wake_endpoint"),
        ({"host_memory": -1}, "host_memory"),
        ({"memory": 0}, "memory"),
        ({"memory": 1.5}, "memory"),
        ({"swap_costs": {"warm": 1}}, "swap_costs"),
        ({"swap_costs": {"load": -1}}, "swap_costs"),
    ]:
        with pytest.raises(ConfigError, match=rf"ModelConfig\.{field}"):
            built(**fields)
    with pytest.raises(ConfigError, match=r"SwapcoreSettings\.memory_budget"):
        SwapcoreSettings(memory_budget=0)
    assert SwapcoreSettings(costs_file="c.json").costs_file == Path("c.json")

    a = built(memory=10)
    memory = RoutingConfig(router="memory")
    with pytest.raises(ConfigError, match=r"needs swapcore\.memory_budget"):
        GatewayConfig(models={"a": a}, routing=memory)
    with pytest.raises(ConfigError, match=r"routing\.router is 'group', not 'memory'"):
        GatewayConfig(models={"a": a}, swapcore=SwapcoreSettings(memory_budget=10))
    with pytest.raises(ConfigError, match="model 'a' needs more memory"):
        GatewayConfig(models={"a": a}, routing=memory, swapcore=SwapcoreSettings(memory_budget=5))
    with pytest.raises(ConfigError, match="model 'b' has no memory"):
        GatewayConfig(
            models={"a": a, "b": ModelConfig(id="b", cmd="srv", proxy="http://h:2")},
            routing=memory,
            swapcore=SwapcoreSettings(memory_budget=10),
        )
    with pytest.raises(ConfigError, match="takes no groups"):
        RoutingConfig(router="memory", groups={"g": Group(("a",))})
