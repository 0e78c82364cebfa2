"""The ``gpus:`` section: devices, budgets, sizes from ``memory`` or the model file, and wiring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swapcore.config import (
    GatewayConfig,
    build_planner,
    build_processes,
    build_router,
    parse_config,
)
from swapcore.config.build import device_env, gpu_budgets
from swapcore.errors import ConfigError
from swapcore.planners.placement import PlacementPlanner
from swapcore.testing import FakeGPUProbe

GIB = 1 << 30


def parse(document: dict[str, Any]) -> GatewayConfig:
    return parse_config(document, env={})


def errors_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(document)
    return str(info.value).splitlines()


def three(gpus: dict[str, Any], **sizes: Any) -> dict[str, Any]:
    """Models a, b, c of 14, 10 and 20 GiB (or ``sizes``) with ``gpus``."""
    memory = {"a": 14, "b": 10, "c": 20, **sizes}
    models = {m: {"cmd": "srv --port ${PORT}", "memory": size} for m, size in memory.items()}
    return {"models": models, "gpus": gpus}


def test_devices_and_sizes_select_the_placement_router() -> None:
    config = parse(three({"devices": {0: "24GiB", "1": 16}}))
    gpus = config.gpus
    assert gpus is not None and config.routing.router == "placement"
    assert dict(gpus.devices) == {"0": 24 * GIB, "1": 16 * GIB}
    assert dict(gpus.sizes) == {"a": 14 * GIB, "b": 10 * GIB, "c": 20 * GIB}
    assert set(gpus.size_sources.values()) == {"memory"}
    assert gpus.split and gpus.env == "CUDA_VISIBLE_DEVICES"
    planner = build_planner(config)
    assert isinstance(planner, PlacementPlanner)
    assert planner.devices == {"0": 24 * GIB, "1": 16 * GIB}


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        ({}, "gpus.devices: required"),
        (
            {"devices": []},
            "gpus.devices: must map device names to budgets (or be auto), got a list",
        ),
        ({"devices": {}}, "gpus.devices: must name at least one device"),
        ({"devices": {"0": 0}}, "gpus.devices.0: must be more than 0 bytes"),
        ({"devices": {"0": "24 parsecs"}}, "gpus.devices.0: unknown unit"),
        ({"devices": {"0,1": 24}}, "must not contain commas or whitespace"),
        ({"devices": {"0": 24}, "env": "1BAD"}, "gpus.env: must be an environment variable name"),
        ({"devices": {"0": 24}, "split": "yes"}, "gpus.split: must be true or false"),
        ({"devices": {"0": 24}, "colour": 1}, "gpus.colour"),
    ],
)
def test_bad_sections_name_the_key(gpus: dict[str, Any], expected: str) -> None:
    document = three(gpus)
    if expected == "gpus.colour":
        assert any("gpus.colour" in w for w in parse(document).warnings)
        return
    assert any(expected in line for line in errors_of(document)), errors_of(document)


def test_a_model_that_could_never_load_is_an_error() -> None:
    lines = errors_of(three({"devices": {"0": 24, "1": 16}}, c=41))
    assert lines == [
        "models.c.memory: 41 GiB (memory) is more than all devices together can hold "
        "(40 GiB): the model could never load"
    ]
    lines = errors_of(three({"devices": {"0": 24, "1": 16}, "split": False}, c=25))
    assert "the largest device can hold (24 GiB)" in lines[0]


def test_every_model_needs_a_size_or_a_model_file() -> None:
    document = three({"devices": {"0": 24}})
    del document["models"]["b"]["memory"]
    [line] = errors_of(document)
    assert line.startswith("models.b.memory: required: cmd names no model file (-m PATH)")
    document["models"]["b"]["cmd"] = "llama-server -m /nowhere/m.gguf --port ${PORT}"
    [line] = errors_of(document)
    assert "the model file '/nowhere/m.gguf' that cmd names does not exist" in line


def test_python_dash_m_is_not_a_model_file() -> None:
    document = three({"devices": {"0": 24}})
    del document["models"]["b"]["memory"]
    document["models"]["b"]["cmd"] = "python -m swapcore.fakemodel --port ${PORT}"
    [line] = errors_of(document)
    assert "cmd names no model file" in line


def test_sizes_are_estimated_from_the_gguf_file(tmp_path: Path) -> None:
    pytest.importorskip("gguf", reason="the memory extra (gguf) is not installed")
    from engine_helpers import write_tiny_llama
    from swapcore.memory import estimate_command

    path = write_tiny_llama(tmp_path / "tiny.gguf")
    cmd = f"llama-server -m {path} -c 512 --port ${{PORT}}"
    document = three({"devices": {"0": 24}})
    document["models"]["b"] = {"cmd": cmd}
    config = parse(document)
    assert config.gpus is not None
    assert config.gpus.sizes["b"] == estimate_command(cmd.replace("${PORT}", "1")).total_bytes
    assert config.gpus.size_sources["b"] == f"estimated from {path}"


def test_gpus_replace_the_other_routers() -> None:
    document = three({"devices": {"0": 24}})
    document["swapcore"] = {"memory_budget": "40GiB"}
    assert any(
        line.startswith("gpus: cannot be combined with swapcore.memory_budget")
        for line in errors_of(document)
    )
    document = three({"devices": {"0": 24}})
    document["groups"] = {"g": {"members": ["a"]}}
    assert any(
        line.startswith("gpus: cannot be combined with groups") for line in errors_of(document)
    )


def test_shared_upstreams_need_models_the_devices_cannot_hold_together() -> None:
    document = three({"devices": {"0": 24}})
    for m in ("a", "c"):  # 14 + 20 > 24: never together
        document["models"][m]["proxy"] = "http://127.0.0.1:9001"
    assert parse(document).gpus is not None
    document["models"]["b"]["proxy"] = "http://127.0.0.1:9001"  # 14 + 10 fit together
    [line] = errors_of(document)
    assert line.startswith("models.b.proxy: localhost:9001 is also the upstream of models.a.proxy")
    assert "the devices can hold both models at once" in line


def test_auto_reads_the_gpus_less_the_reserve() -> None:
    config = parse(three({"devices": "auto", "reserve": "2GiB"}))
    assert config.gpus is not None and config.gpus.auto
    probe = FakeGPUProbe({0: 24 * GIB, 1: 16 * GIB})
    assert gpu_budgets(config.gpus, probe) == {"0": 22 * GIB, "1": 14 * GIB}
    planner = build_planner(config, probe=probe)
    assert isinstance(planner, PlacementPlanner) and set(planner.devices) == {"0", "1"}
    small = FakeGPUProbe({0: 10 * GIB, 1: 10 * GIB})
    with pytest.raises(ConfigError, match=r"models\.c\.memory: 20 GiB is more than all GPUs"):
        gpu_budgets(config.gpus, small)
    tiny = FakeGPUProbe({0: GIB})
    with pytest.raises(ConfigError, match=r"gpus\.reserve: 2 GiB leaves nothing of GPU 0"):
        gpu_budgets(config.gpus, tiny)


def test_auto_without_nvml_says_why() -> None:
    pytest.importorskip("yaml")
    from swapcore.memory import NvmlProbe

    if NvmlProbe.open()[0] is not None:
        pytest.skip("this machine has NVML and a GPU: auto would succeed")
    config = parse(three({"devices": "auto"}))
    assert config.gpus is not None
    with pytest.raises(ConfigError, match=r"gpus\.devices: auto needs to read the GPUs, but"):
        build_planner(config)


def test_reserve_without_auto_is_ignored_with_a_warning() -> None:
    config = parse(three({"devices": {"0": 48}, "reserve": 1}))
    assert any(w.startswith("gpus.reserve: ignored") for w in config.warnings)


def test_each_start_gets_the_devices_the_planner_chose() -> None:
    config = parse(three({"devices": {"0": 24, "1": 16}}))
    planner = build_planner(config)
    processes = build_processes(config, planner=planner)
    planner.on_swap_start("a", [])  # 14 GiB: the smallest device that holds it
    planner.on_swap_start("b", ["a"])
    assert device_env(planner, "a", "CUDA_VISIBLE_DEVICES") == {"CUDA_VISIBLE_DEVICES": "1"}
    env = processes["b"]._child_env()
    assert env is not None and env["CUDA_VISIBLE_DEVICES"] == "0"
    assert processes["b"].last_start_env == {"CUDA_VISIBLE_DEVICES": "0"}
    assert device_env(planner, "c", "CUDA_VISIBLE_DEVICES") == {}  # never placed


def test_an_empty_env_name_sets_nothing() -> None:
    config = parse(three({"devices": {"0": 48}, "env": ""}))
    planner = build_planner(config)
    planner.on_swap_start("a", [])
    assert build_processes(config, planner=planner)["a"]._child_env() is None


def test_the_router_uses_one_planner_for_placement_and_environment() -> None:
    config = parse(three({"devices": {"0": 24, "1": 16}}))
    router = build_router(config)
    assert isinstance(router.planner, PlacementPlanner)
    router.planner.on_swap_start("c", [])
    assert router.planner.placement_of("c") == {"0": 20.0 * GIB}
