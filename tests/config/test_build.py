"""From a loaded configuration to planner, processes, scheduler factory and router."""

from __future__ import annotations

import functools
import sys
from typing import Any

import pytest

from swapcore.adapters.subprocess import SubprocessProcess
from swapcore.config import (
    DEMO_VARIANTS,
    build_planner,
    build_processes,
    build_router,
    build_scheduler_factory,
    demo_config,
    demo_yaml,
    load_config,
    parse_config,
    router_kwargs,
)
from swapcore.planners.groups import DEFAULT_GROUP, Group, GroupPlanner
from swapcore.planners.matrix import MatrixPlanner
from swapcore.planners.placement import PlacementPlanner
from swapcore.process import ProcessState
from swapcore.router import BaseRouter
from swapcore.scheduling.fifo import FIFOScheduler
from swapcore.testing.fakes import FakeProcess


def parse(document: dict[str, Any]) -> Any:
    return parse_config(document, env={})


def models(*ids: str, **extra: Any) -> dict[str, Any]:
    return {m: {"cmd": f"srv --port ${{PORT}} -m {m}", **extra} for m in ids}


GROUPS = {
    "globalTTL": 60,
    "unloadTimeout": 4,
    "healthCheckTimeout": 45,
    "models": {
        **models("a", ttl=5, unloadTimeout=2, concurrencyLimit=3),
        **models("b", ttl=0),
        **models("c", "loner"),
        **models("embed", env=["GPU=1"], cmdStop="kill ${PID}", checkEndpoint="/ready"),
    },
    "groups": {
        "chat": {"members": ["a", "b", "c"]},
        "always": {"swap": False, "exclusive": False, "persistent": True, "members": ["embed"]},
    },
    "routing": {"scheduler": {"settings": {"fifo": {"priority": {"embed": 7}}}}},
    "swapcore": {"max_wait": 12, "default_concurrency_limit": 5},
}

MATRIX = {
    "models": models("a", "b", "c", "e"),
    "routing": {
        "router": {
            "use": "matrix",
            "settings": {
                "matrix": {
                    "vars": {"x": "e"},
                    "evict_costs": {"x": 10},
                    "sets": {"small": "(a | b) & x", "duo": "a & b", "big": "c"},
                }
            },
        }
    },
}


def test_group_planner_has_the_configured_groups_and_the_default_group() -> None:
    planner = build_planner(parse(GROUPS))
    assert isinstance(planner, GroupPlanner)
    assert planner.groups["chat"] == Group(("a", "b", "c"))
    assert planner.groups["always"] == Group(
        ("embed",), swap=False, exclusive=False, persistent=True
    )
    assert planner.group_of("loner") == DEFAULT_GROUP
    assert tuple(planner.eviction_for("a", ["b", "embed", "loner"])) == ("b", "loner")
    assert tuple(planner.eviction_for("embed", ["a"])) == ()


def test_no_groups_means_one_model_at_a_time() -> None:
    planner = build_planner(parse({"models": models("a", "b")}))
    assert tuple(planner.eviction_for("a", ["b"])) == ("b",)


def test_matrix_planner_uses_sets_vars_and_evict_costs() -> None:
    planner = build_planner(parse(MATRIX))
    assert isinstance(planner, MatrixPlanner)
    # {b, e} evicts a (cost 1); {a, b} would evict e (cost 10).
    assert tuple(planner.eviction_for("b", ["a", "e"])) == ("a",)
    assert tuple(planner.eviction_for("c", ["a", "e"])) == ("a", "e")
    assert planner.solver.evict_costs["e"] == 10


def test_router_kwargs_resolve_timeouts_and_ttls() -> None:
    assert router_kwargs(parse(GROUPS)) == {
        "swap_timeout": 45,
        "unload_timeout": {"a": 2, "b": 4, "c": 4, "loner": 4, "embed": 4},
        "idle_ttl": {"a": 5, "c": 60, "loner": 60, "embed": 60},
        "start_retries": 1,
    }
    assert router_kwargs(parse({"models": models("a")}))["idle_ttl"] is None
    retries = parse({"models": models("a"), "swapcore": {"start_retries": 3}})
    assert router_kwargs(retries)["start_retries"] == 3
    assert build_router(retries, processes={"a": FakeProcess("a")})._start_retries == 3


def test_scheduler_factory_is_a_configured_fifo_partial() -> None:
    factory = build_scheduler_factory(parse(GROUPS))
    assert isinstance(factory, functools.partial)
    assert factory.func is FIFOScheduler
    assert factory.keywords == {
        "priority": {"embed": 7},
        "concurrency_limits": {"a": 3},
        "default_concurrency_limit": 5,
        "max_wait": 12,
    }


def test_processes_get_expanded_settings() -> None:
    processes = build_processes(parse(GROUPS), health_interval=0.5)
    assert list(processes) == ["a", "b", "c", "loner", "embed"]
    embed = processes["embed"]
    assert isinstance(embed, SubprocessProcess)
    assert embed.name == "embed"
    assert embed.port == 5803  # sorted ids: a, b, c, embed, loner
    assert embed.argv == ("srv", "--port", "5803", "-m", "embed")
    assert embed.url == "http://localhost:5803"
    assert embed.state is ProcessState.STOPPED


def test_processes_receive_every_model_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import swapcore.adapters.subprocess as adapter

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(adapter, "SubprocessProcess", lambda **kwargs: calls.append(kwargs))
    build_processes(parse(GROUPS), output_lines=5)
    by_name = {call["name"]: call for call in calls}
    assert by_name["embed"] == {
        "name": "embed",
        "cmd": "srv --port 5803 -m embed",
        "port": 5803,
        "proxy": "http://localhost:5803",
        "check_endpoint": "/ready",
        "env": {"GPU": "1"},
        "cmd_stop": "kill ${PID}",
        "sleep_level": None,
        "sleep_endpoint": "/sleep?level={level}",
        "wake_endpoint": "/wake_up",
        "output_lines": 5,
    }
    assert by_name["a"]["cmd_stop"] is None
    assert by_name["a"]["env"] == {}


def test_processes_without_port_or_health_check() -> None:
    document = {
        "models": {
            "ext": {"cmd": "run-it", "proxy": "http://10.0.0.1:80", "checkEndpoint": "none"},
        }
    }
    process = build_processes(parse(document))["ext"]
    assert process.port is None
    assert process.argv == ("run-it",)
    assert process.url == "http://10.0.0.1:80"


async def test_build_router_wires_planner_and_processes() -> None:
    config = parse(GROUPS)
    fakes = {model: FakeProcess(model) for model in config.models}
    router = build_router(config, processes=fakes)
    assert isinstance(router, BaseRouter)
    async with router:
        assert router.handles("a") and not router.handles("gpt")
        await router.preload("embed")
        async with router.acquire("a") as lease:
            assert lease.model == "a"
        async with router.acquire("b"):
            pass
        running = router.running_models()
        assert running.get("embed") is ProcessState.READY  # persistent: never evicted
        assert running.get("b") is ProcessState.READY
        assert "a" not in running or running["a"] is not ProcessState.READY
    assert fakes["a"].stops >= 1


def test_build_router_builds_subprocesses_by_default() -> None:
    router = build_router(parse(GROUPS), swap_timeout=3.0)
    assert isinstance(router, BaseRouter)
    assert router.handles("embed")


@pytest.mark.parametrize("variant", DEMO_VARIANTS)
def test_demo_configs(variant: Any) -> None:
    config = demo_config(variant, python="/usr/bin/python3", load=0.5, start_port=6000)
    assert config.warnings == ()
    assert list(config.models) == ["qwen-7b", "llama-8b", "mistral-24b", "embed-small"]
    qwen = config.models["qwen-7b"]
    assert qwen.cmd == (
        "/usr/bin/python3 -m swapcore.fakemodel --port 6003 --load 0.5 --sleep-mode"
        " --wake-time 0.1 --model-name qwen-7b"
    )
    assert qwen.proxy == "http://127.0.0.1:6003"
    # The small chat models sleep when evicted; the big one and the embedder stop.
    assert {m.id: m.sleep_level for m in config.models.values()} == {
        "qwen-7b": 1,
        "llama-8b": 1,
        "mistral-24b": None,
        "embed-small": None,
    }
    assert "--load 1.0" in config.models["mistral-24b"].cmd
    assert config.preload == ("embed-small",)
    assert config.resolve_model("gpt-4o-mini") == "qwen-7b"
    planner = build_planner(config)
    # The embedder survives chat swaps in every variant.
    if variant == "gpus":  # two 24 GiB devices hold 2 + 14 + 16 GiB; the big one needs 30
        assert tuple(planner.eviction_for("llama-8b", ["qwen-7b", "embed-small"])) == ()
        for model in ("embed-small", "qwen-7b"):
            planner.on_swap_start(model, ["embed-small"])
        planner.on_swap_start("llama-8b", ["embed-small", "qwen-7b"])
        full = ["embed-small", "qwen-7b", "llama-8b"]
        assert len(planner.eviction_for("mistral-24b", full)) == 1
        assert "embed-small" not in planner.eviction_for("mistral-24b", full)
    else:
        evicted = planner.eviction_for("llama-8b", ["qwen-7b", "embed-small"])
        assert tuple(evicted) == ("qwen-7b",)
    expected = {"groups": GroupPlanner, "matrix": MatrixPlanner, "gpus": PlacementPlanner}
    assert isinstance(planner, expected[variant])
    assert planner.sleep_rules is not None
    assert planner.residency_for("mistral-24b", ["qwen-7b"], []).sleep == ("qwen-7b",)
    routers = {"groups": "group", "matrix": "matrix", "gpus": "placement"}
    assert config.summary()["router"] == routers[variant]


def test_demo_defaults_use_this_interpreter() -> None:
    text = demo_yaml()
    assert sys.executable in text
    assert load_config(text, env={}).models["embed-small"].port == 5800
    with pytest.raises(ValueError, match="unknown demo variant"):
        demo_yaml("pools")  # type: ignore[arg-type]


def test_the_cost_aware_scheduler_prices_swaps_with_the_router_costs() -> None:
    from swapcore import CostAwareScheduler
    from swapcore.config import parse_config
    from swapcore.config.build import build_router
    from swapcore.testing.fakes import FakeProcess

    config = parse_config(
        {
            "models": {
                "a": {"cmd": "srv --port ${PORT}", "swapCosts": {"load": 30, "wake": 1.5}},
                "b": {"cmd": "srv --port ${PORT}"},
            },
            "swapcore": {"scheduler": "cost-aware"},
        }
    )
    router = build_router(config, processes={m: FakeProcess(m) for m in "ab"})
    scheduler = router._scheduler
    assert isinstance(scheduler, CostAwareScheduler)
    assert scheduler.load_time("a") == 30
    router.costs.record("a", "load", 12.0)
    assert scheduler.load_time("a") == 12.0  # the same learned costs
    assert router.costs.describe("a")["wake"] == {
        "seconds": 1.5,
        "measured": 0,
        "source": "configured",
    }
