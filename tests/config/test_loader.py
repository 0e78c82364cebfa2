"""Loading llama-swap configurations: every key, defaults, warnings and error messages."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swapcore.config import GatewayConfig, load_config, parse_config
from swapcore.errors import ConfigError, MatrixSyntaxError
from swapcore.planners.groups import Group

DATA = Path(__file__).parent / "data"
EXAMPLE_ENV = {"HOME": "/home/u", "API_KEY_1": "sk-env", "ROUTER_KEY": "rk-1"}


def parse(document: dict[str, Any], env: dict[str, str] | None = None) -> GatewayConfig:
    return parse_config(document, env=env or {})


def models(*ids: str, **extra: Any) -> dict[str, Any]:
    return {m: {"cmd": f"srv --port ${{PORT}} -m {m}", **extra} for m in ids}


def error_of(document: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(document, env={})
    return str(info.value)


# ---------------------------------------------------------------- the example file


@pytest.fixture(scope="module")
def example() -> GatewayConfig:
    # It uses profiles and selectors, which swapcore does not implement.
    return load_config(DATA / "llama-swap-example.yaml", env=EXAMPLE_ENV, allow_unsupported=True)


def test_example_globals(example: GatewayConfig) -> None:
    assert example.source.endswith("llama-swap-example.yaml")
    assert example.health_check_timeout == 300
    assert example.start_port == 9000
    assert example.send_loading_state is True
    assert example.include_aliases_in_list is True
    assert example.global_ttl == 600
    assert example.unload_timeout == 15
    assert example.api_keys == ("sk-static-key", "sk-env")
    assert example.preload == ("embed", "llama")  # the alias gpt-4o-mini resolved
    assert example.swapcore.max_wait == 45
    assert example.swapcore.default_concurrency_limit == 8


def test_example_models(example: GatewayConfig) -> None:
    assert list(example.models) == ["llama", "coder", "embed", "docker-vision", "external"]
    llama = example.models["llama"]
    assert llama.cmd.split() == [
        "/opt/llama.cpp/llama-server",
        "--port",
        "9003",
        "--model",
        "/home/u/models/llama-8b.gguf",
        "--ctx-size",
        "16384",
        "--flash-attn",
        "--temp",
        "0.7",
    ]
    assert llama.port == 9003
    assert llama.proxy == "http://localhost:9003"
    assert llama.name == "Llama 8B"
    assert llama.description == "General chat on port 9003"
    assert llama.env == {"CUDA_VISIBLE_DEVICES": "0", "LLAMA_ARG_THREADS": "8"}
    assert llama.ttl == 120
    assert llama.unload_timeout == 20
    assert llama.aliases == ("gpt-4o-mini", "gpt-3.5-turbo")
    assert llama.use_model_name == "meta/llama-3.1-8b"
    assert llama.upstream_model == "meta/llama-3.1-8b"
    assert llama.concurrency_limit == 4
    assert llama.send_loading_state is False
    assert llama.metadata == {"port": 9003, "family": "llama 0.7"}

    coder = example.models["coder"]
    assert coder.unlisted is True
    assert coder.ttl == 600  # globalTTL
    assert coder.unload_timeout == 15  # global unloadTimeout
    assert coder.send_loading_state is True  # global sendLoadingState
    assert example.models["embed"].ttl == 0  # explicit 0: never, despite globalTTL

    docker = example.models["docker-vision"]
    assert docker.cmd_stop == "docker stop docker-vision"
    assert docker.check_endpoint == "none"
    assert docker.health_check_enabled is False
    assert docker.proxy == "http://127.0.0.1:9001"
    assert example.models["external"].port is None


def test_example_routing_and_peers(example: GatewayConfig) -> None:
    routing = example.routing
    assert routing.router == "group"
    assert routing.groups == {
        "chat": Group(("llama", "coder", "docker-vision")),
        "always-on": Group(("embed",), swap=False, exclusive=False, persistent=True),
    }
    assert routing.priority == {"llama": 10, "coder": 5}
    assert routing.matrix is None
    assert list(example.peers) == ["lan-box", "router-service"]
    assert example.peers["router-service"].api_key == "rk-1"
    assert example.peers["lan-box"].models == ("qwen-32b", "embeddings/bge")


def test_example_warns_about_each_ignored_key(example: GatewayConfig) -> None:
    unsupported = [
        "logLevel",
        "logTimeFormat",
        "logToStdout",
        "logRequests",
        "metricsMaxInMemory",
        "captureBuffer",
        "store",
        "ui",
        "performance",
        "upstream",
        "models.llama.capabilities",
        "models.llama.compat",
    ]
    expected = [f"{key}: not supported by swapcore, ignored" for key in unsupported]
    expected += [
        "profiles: not supported by swapcore "
        "(profiles pin requested model names to other models); ignored (allow_unsupported)",
        "selectors: not supported by swapcore "
        "(selectors send requests for virtual model names to other models);"
        " ignored (allow_unsupported)",
        "hooks.on_startup.profile: not supported by swapcore "
        "(a startup profile pins requested model names to other models);"
        " ignored (allow_unsupported)",
    ]
    expected.append("routing.router.settings.matrix: ignored: routing.router.use is 'group'")
    assert sorted(example.warnings) == sorted(expected)


def test_example_refuses_its_unsupported_policy_keys_by_default() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(DATA / "llama-swap-example.yaml", env=EXAMPLE_ENV)
    paths = [line.split(":")[0] for line in str(info.value).splitlines()]
    assert paths == ["profiles", "selectors", "hooks.on_startup.profile"]
    assert "--allow-unsupported" in str(info.value)


def test_example_filters(example: GatewayConfig) -> None:
    llama = example.models["llama"].filters
    assert llama.strip_params == ("temperature", "top_p")
    assert dict(llama.set_params) == {"top_k": 40}
    assert example.peers["router-service"].filters.strip_params == ("top_k",)


def test_example_summary_is_json(example: GatewayConfig) -> None:
    summary = example.summary()
    json.dumps(summary)
    assert [m["id"] for m in summary["models"]] == list(example.models)
    assert summary["router"] == "group"
    groups = {g["name"]: g["members"] for g in summary["groups"]}
    assert groups == {
        "chat": ["llama", "coder", "docker-vision"],
        "always-on": ["embed"],
        "(default)": ["external"],
    }
    assert summary["warnings"] == list(example.warnings)
    assert summary["peers"][1] == {
        "name": "router-service",
        "proxy": "https://router.example.com/api",
        "models": ["vendor/model-a"],
        "api_key": True,
        "timeouts": {
            "connect": 30.0,
            "response_header": 60.0,
            "read": 600.0,
            "keepalive": 30.0,
            "tls_handshake": 10.0,
            "idle_conn": 90.0,
            "expect_continue": 1.0,
        },
        "filters": {"strip_params": ["top_k"], "set_params": [], "set_params_by_id": {}},
    }
    # Filters are summarised by the parameters they name, without the values.
    assert summary["models"][0]["filters"] == {
        "strip_params": ["temperature", "top_p"],
        "set_params": ["top_k"],
        "set_params_by_id": {},
    }
    assert summary["settings"]["start_retries"] == 1


def test_resolve_model_and_peer(example: GatewayConfig) -> None:
    assert example.resolve_model("llama") == "llama"
    assert example.resolve_model("gpt-3.5-turbo") == "llama"
    assert example.resolve_model("qwen-32b") is None
    assert example.resolve_peer("qwen-32b") == ("lan-box", "qwen-32b")
    assert example.resolve_peer("lan-box/embeddings/bge") == ("lan-box", "embeddings/bge")
    assert example.resolve_peer("router-service/vendor/model-a") == (
        "router-service",
        "vendor/model-a",
    )
    assert example.resolve_peer("nobody") is None
    assert example.aliases == {"gpt-4o-mini": "llama", "gpt-3.5-turbo": "llama"}


# ---------------------------------------------------------------- defaults and keys


def test_defaults() -> None:
    config = parse({"models": models("a")})
    assert config.health_check_timeout == 120
    assert config.start_port == 5800
    assert config.global_ttl == 0
    assert config.unload_timeout == 10
    assert config.send_loading_state is False
    assert config.include_aliases_in_list is False
    assert config.api_keys == ()
    assert config.preload == ()
    assert config.peers == {}
    assert config.warnings == ()
    assert config.source == "<config>"
    assert config.routing.router == "group"
    assert config.routing.groups == {}
    assert config.routing.scheduler == "fifo"
    assert config.routing.priority == {}
    assert config.swapcore.scheduler == "fifo"
    assert config.swapcore.max_wait is None
    assert config.swapcore.default_concurrency_limit == 10
    model = config.models["a"]
    assert (model.port, model.proxy, model.check_endpoint) == (
        5800,
        "http://localhost:5800",
        "/health",
    )
    assert (model.ttl, model.unload_timeout, model.concurrency_limit) == (0, 10, None)
    assert (model.use_model_name, model.upstream_model, model.unlisted) == (None, "a", False)
    assert (model.name, model.description, model.cmd_stop) == ("", "", "")
    assert model.aliases == ()
    assert model.env == {}
    assert model.metadata == {}


def test_empty_values_take_defaults() -> None:
    config = parse({"models": models("a", ttl=None, env=None), "groups": None, "hooks": None})
    assert config.models["a"].ttl == 0


def test_health_check_timeout_minimum_is_15_with_a_warning() -> None:
    config = parse({"healthCheckTimeout": 5, "models": models("a")})
    assert config.health_check_timeout == 15
    assert config.warnings == (
        "healthCheckTimeout: 5 is below the minimum of 15 seconds, using 15",
    )


def test_ttl_rules() -> None:
    document = {
        "globalTTL": 300,
        "models": {
            **models("default"),
            **models("minus-one", ttl=-1),
            **models("never", ttl=0),
            **models("own", ttl=30),
        },
    }
    config = parse(document)
    assert {m: c.ttl for m, c in config.models.items()} == {
        "default": 300,
        "minus-one": 300,
        "never": 0,
        "own": 30,
    }


def test_unload_timeout_rules() -> None:
    document = {"unloadTimeout": 0, "models": {**models("a"), **models("b", unloadTimeout=3)}}
    config = parse(document)
    assert config.unload_timeout == 10  # 0 means the default, as in llama-swap
    assert config.models["a"].unload_timeout == 10
    assert config.models["b"].unload_timeout == 3
    config = parse({"unloadTimeout": 25, "models": models("a", unloadTimeout=0)})
    assert config.models["a"].unload_timeout == 25


def test_env_as_list_or_mapping() -> None:
    listed = parse({"models": models("a", env=["A=1", "B=x=y", "C="])})
    assert listed.models["a"].env == {"A": "1", "B": "x=y", "C": ""}
    mapped = parse({"models": models("a", env={"A": 1, "B": True, "C": "s"})})
    assert mapped.models["a"].env == {"A": "1", "B": "true", "C": "s"}


def test_concurrency_limit_and_send_loading_state() -> None:
    document = {
        "sendLoadingState": True,
        "models": {**models("a", concurrencyLimit=0), **models("b", concurrencyLimit=3)},
    }
    config = parse(document)
    assert config.models["a"].concurrency_limit is None
    assert config.models["b"].concurrency_limit == 3
    assert config.models["a"].send_loading_state is True


def test_scalars_become_strings_like_go_does() -> None:
    config = parse({"models": models("a", name=7, useModelName=1.5)})
    assert config.models["a"].name == "7"
    assert config.models["a"].use_model_name == "1.5"


def test_legacy_groups() -> None:
    document = {
        "models": models("a", "b", "c"),
        "groups": {"pair": {"swap": False, "members": ["a", "b"]}},
    }
    config = parse(document)
    assert config.routing.groups == {"pair": Group(("a", "b"), swap=False)}
    assert config.group_members() == {"pair": ("a", "b"), "(default)": ("c",)}


def test_legacy_matrix() -> None:
    document = {
        "models": models("a", "b", "c"),
        "matrix": {
            "vars": {"x": "a"},
            "evict_costs": {"x": 5, "b": 2},
            "sets": {"one": "x & b", "two": "c"},
        },
    }
    config = parse(document)
    matrix = config.routing.matrix
    assert config.routing.router == "matrix"
    assert matrix is not None
    assert matrix.sets == (("one", "x & b"), ("two", "c"))
    assert matrix.vars == {"x": "a"}
    assert matrix.evict_costs == {"x": 5, "b": 2}
    assert matrix.resolved_evict_costs() == {"a": 5, "b": 2}
    assert config.group_members() == {}


def test_routing_matrix_and_summary_counts() -> None:
    document = {
        "models": models("a", "b", "c", "d"),
        "routing": {
            "router": {
                "use": "matrix",
                "settings": {
                    "matrix": {"sets": {"grid": "(a | b) & (c | d)", "solo": "a"}},
                    "groups": {"g": {"members": ["a"]}},
                },
            }
        },
    }
    config = parse(document)
    assert config.routing.router == "matrix"
    assert config.warnings == (
        "routing.router.settings.groups: ignored: routing.router.use is 'matrix'",
    )
    sets = config.summary()["matrix"]["sets"]
    assert [(s["name"], s["combinations"]) for s in sets] == [("grid", 4), ("solo", 1)]


def test_summary_caps_huge_matrices() -> None:
    names = [f"m{i}" for i in range(28)]
    dimensions = [f"({names[2 * i]} | {names[2 * i + 1]})" for i in range(14)]
    document = {"models": models(*names), "matrix": {"sets": {"big": " & ".join(dimensions)}}}
    summary = parse(document).summary()["matrix"]["sets"][0]
    assert summary["combinations"] is None
    assert summary["combinations_at_least"] == 10_000


def test_routing_group_settings_and_fifo_priority_by_alias() -> None:
    document = {
        "models": {**models("a", aliases=["alias-a"]), **models("b")},
        "routing": {
            "router": {"use": "group", "settings": {"groups": {"g": {"members": ["a", "b"]}}}},
            "scheduler": {"use": "fifo", "settings": {"fifo": {"priority": {"alias-a": 3}}}},
        },
    }
    config = parse(document)
    assert config.routing.groups == {"g": Group(("a", "b"))}
    assert config.routing.priority == {"a": 3}


def test_peers_only_configuration_is_valid() -> None:
    config = parse({"peers": {"p": {"proxy": "http://h:1", "models": ["x", "x"]}}})
    assert config.models == {}
    assert config.peers["p"].models == ("x",)


def test_swapcore_section() -> None:
    document = {
        "models": models("a"),
        "swapcore": {"scheduler": "fifo", "max_wait": 2.5, "default_concurrency_limit": 3},
    }
    settings = parse(document).swapcore
    assert (settings.scheduler, settings.max_wait, settings.default_concurrency_limit) == (
        "fifo",
        2.5,
        3,
    )


# ---------------------------------------------------------------- warnings


def test_unknown_and_unsupported_keys_are_warnings() -> None:
    document = {
        "modles": {},
        "logLevel": "info",
        "models": models("qwen", capabilities={"in": ["text"]}, colour="red"),
        "groups": {"g": {"members": ["qwen"], "sticky": True}},
        "hooks": {"on_startup": {"preload": [], "later": 1}, "on_exit": {}},
        "routing": {"scheduler": {"settings": {"lifo": {}}}},
        "swapcore": {"max_wiat": 1},
    }
    assert parse(document).warnings == (
        "modles: unknown key, ignored",
        "logLevel: not supported by swapcore, ignored",
        "models.qwen.capabilities: not supported by swapcore, ignored",
        "models.qwen.colour: unknown key, ignored",
        # Sections are read in a fixed order: models, routing (legacy groups first), hooks, ...
        "groups.g.sticky: unknown key, ignored",
        "routing.scheduler.settings.lifo: unknown key, ignored",
        "hooks.on_exit: unknown key, ignored",
        "hooks.on_startup.later: unknown key, ignored",
        "swapcore.max_wiat: unknown key, ignored",
    )


# ---------------------------------------------------------------- errors


def test_single_error_names_the_key_path() -> None:
    assert error_of({"models": models("qwen", ttl=-5)}) == (
        "models.qwen.ttl: must be >= 0 (or -1 to use globalTTL)"
    )


def test_several_errors_are_listed_one_per_line() -> None:
    document = {
        "startPort": 0,
        "globalTTL": "soon",
        "models": {**models("a", ttl=-2, unlisted="yes"), "b": {"proxy": "http://h:1"}},
    }
    assert error_of(document).splitlines() == [
        "startPort: must be >= 1",
        "globalTTL: must be a number, got a string",
        "models.a.ttl: must be >= 0 (or -1 to use globalTTL)",
        "models.a.unlisted: must be true or false, got a string",
        "models.b.cmd: required",
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([1, 2], "<config>: the top level must be a mapping of settings, got a list"),
        ({}, "models: at least one model is required"),
        ({"models": {}}, "models: at least one model is required"),
        ({"models": []}, "models: must be a mapping, got a list"),
        ({"models": {"a": None}}, "models.a: must be a mapping with at least cmd"),
        ({"models": {"a": {"cmd": "  # only a comment"}}}, "models.a.cmd: must not be empty"),
        ({"models": {1: {"cmd": "x"}}}, "models: keys must be strings, got 1"),
        ({"models": {" ": {"cmd": "x"}}}, "models: model ids must not be empty"),
        (
            {"models": models("a", proxy="localhost:80")},
            "models.a.proxy: must be an http:// or https:// URL, got 'localhost:80'",
        ),
        (
            {"models": models("a", checkEndpoint="health")},
            "models.a.checkEndpoint: must be a path starting with '/', or none, got 'health'",
        ),
        (
            {"models": models("a", env=["NOVALUE"])},
            "models.a.env[0]: must look like NAME=value, got 'NOVALUE'",
        ),
        (
            {"models": models("a", aliases="b")},
            "models.a.aliases: must be a list of strings, got a string",
        ),
        (
            {"models": models("a", concurrencyLimit=1.5)},
            "models.a.concurrencyLimit: must be an integer, got a number",
        ),
        ({"models": models("a", unloadTimeout=-1)}, "models.a.unloadTimeout: must be >= 0"),
        ({"models": models("a"), "unloadTimeout": -1}, "unloadTimeout: must be >= 0"),
        ({"models": models("a"), "startPort": 70000}, "startPort: must be <= 65535"),
        (
            {"models": models("a"), "sendLoadingState": 1},
            "sendLoadingState: must be true or false, got a number",
        ),
        (
            {"models": models("a"), "healthCheckTimeout": float("nan")},
            "healthCheckTimeout: must be a number, got NaN",
        ),
        ({"models": models("a", macros=[1])}, "models.a.macros: must be a mapping, got a list"),
    ],
)
def test_error_messages(document: object, message: str) -> None:
    assert error_of(document) == message


def test_model_in_two_groups() -> None:
    document = {
        "models": models("a", "b"),
        "groups": {"one": {"members": ["a"]}, "two": {"members": ["b", "a"]}},
    }
    assert error_of(document) == (
        "groups.two.members[1]: model 'a' is already in group 'one'; "
        "a model can be in only one group"
    )


def test_group_member_that_is_not_a_model_is_a_warning() -> None:
    # llama-swap accepts members that are not defined models (its own
    # config.example.yaml has them): swapcore ignores them with a warning.
    document = {
        "models": {**models("a", aliases=["gpt"]), **models("b")},
        "routing": {"router": {"settings": {"groups": {"g": {"members": ["ghost", "gpt", "a"]}}}}},
    }
    config = parse(document)
    assert config.warnings == (
        "routing.router.settings.groups.g.members[0]: 'ghost' is not a defined model, ignored",
        "routing.router.settings.groups.g.members[1]: "
        "'gpt' is an alias of 'a', not a model id, ignored",
    )
    assert config.routing.groups["g"].members == ("a",)
    assert config.group_members() == {"g": ("a",), "(default)": ("b",)}


def test_group_member_listed_twice_is_still_an_error() -> None:
    document = {
        "models": models("a"),
        "routing": {"router": {"settings": {"groups": {"g": {"members": ["ghost", "a", "a"]}}}}},
    }
    assert error_of(document) == (
        "routing.router.settings.groups.g.members[2]: model 'a' is listed twice"
    )


def test_group_flag_types() -> None:
    document = {"models": models("a"), "groups": {"g": {"members": ["a"], "swap": "no"}}}
    assert error_of(document) == "groups.g.swap: must be true or false, got a string"


def test_alias_objects() -> None:
    # Newer llama-swap writes aliases as {id, name, unlisted}; swapcore reads the id.
    document = {
        "models": models(
            "a", aliases=["plain", {"id": "obj", "name": "Shown", "unlisted": True}, {"id": 7}]
        )
    }
    config = parse(document)
    assert config.models["a"].aliases == ("plain", "obj", "7")
    assert config.warnings == (
        "models.a.aliases[1].name: not supported by swapcore, ignored",
        "models.a.aliases[1].unlisted: not supported by swapcore, ignored",
    )
    bad = {"models": models("a", aliases=[{"name": "x"}, {"id": ""}, {"id": [1]}, ["l"]])}
    assert error_of(bad).splitlines() == [
        "models.a.aliases[0].id: required",
        "models.a.aliases[1].id: must not be empty",
        "models.a.aliases[2].id: must be a string, got a list",
        "models.a.aliases[3]: must be a string, got a list",
    ]


def test_alias_collisions() -> None:
    document = {
        "models": {
            **models("a", aliases=["b", "shared"]),
            **models("b", aliases=["shared", "x", "x"]),
        }
    }
    assert error_of(document).splitlines() == [
        "models.a.aliases[0]: alias 'b' is already a model id",
        "models.b.aliases[0]: alias 'shared' is already used by model 'a'",
        "models.b.aliases[2]: alias 'x' is listed twice",
    ]


def test_preload_of_unknown_model_is_dropped_with_a_warning() -> None:
    # llama-swap silently drops preloads of unknown models; swapcore says so.
    document = {
        "models": models("a"),
        "hooks": {"on_startup": {"preload": ["a", " ", "ghost"]}},
    }
    config = parse(document)
    assert config.preload == ("a",)
    assert config.warnings == (
        "hooks.on_startup.preload[2]: 'ghost' is not a defined model, ignored",
    )


def test_priority_errors() -> None:
    document = {
        "models": models("a", aliases=["alias-a"]),
        "routing": {
            "scheduler": {
                "use": "lifo",
                "settings": {"fifo": {"priority": {"ghost": 1, "a": 1, "alias-a": 2}}},
            }
        },
    }
    assert error_of(document).splitlines() == [
        "routing.scheduler.use: unknown scheduler 'lifo' (valid: fifo)",
        "routing.scheduler.settings.fifo.priority.ghost: unknown model 'ghost'",
        "routing.scheduler.settings.fifo.priority.alias-a: model 'a' already has a priority",
    ]
    bad_value = {
        "models": models("a"),
        "routing": {"scheduler": {"settings": {"fifo": {"priority": {"a": "high"}}}}},
    }
    assert error_of(bad_value) == (
        "routing.scheduler.settings.fifo.priority.a: must be an integer, got a string"
    )


def test_routing_conflicts() -> None:
    both = {
        "models": models("a"),
        "groups": {"g": {"members": ["a"]}},
        "routing": {"router": {"use": "group"}},
    }
    assert error_of(both) == (
        "routing.router: cannot be combined with the legacy top-level groups/matrix keys; "
        "move them into routing.router.settings"
    )
    legacy_both = {"models": models("a"), "groups": {"g": {}}, "matrix": {"sets": {"s": "a"}}}
    assert error_of(legacy_both) == "matrix: cannot be used together with groups; choose one"
    unknown = {"models": models("a"), "routing": {"router": {"use": "lru"}}}
    assert error_of(unknown) == "routing.router.use: unknown router 'lru' (valid: group, matrix)"
    missing = {"models": models("a"), "routing": {"router": {"use": "matrix"}}}
    assert error_of(missing) == "routing.router.settings.matrix: must be a mapping with sets"


def test_matrix_section_errors() -> None:
    document = {
        "models": models("a", aliases=["al"]),
        "matrix": {
            "vars": {"bad name": "a", "v": "al", "w": "ghost"},
            "evict_costs": {"a": 0, "zz": 1, "al": True},
            "sets": {},
        },
    }
    assert error_of(document).splitlines() == [
        "matrix.vars.bad name: var names are 1-32 letters, digits, '-' or '.'",
        "matrix.vars.v: 'al' is an alias of 'a'; use the model id",
        "matrix.vars.w: 'ghost' is not a model",
        "matrix.evict_costs.a: must be a positive integer, got 0",
        "matrix.evict_costs.zz: unknown var or model 'zz'",
        "matrix.evict_costs.al: unknown var or model 'al'",
        "matrix.sets: must define at least one set",
    ]
    no_sets = {"models": models("a"), "matrix": {"vars": {}}}
    assert error_of(no_sets) == "matrix.sets: required: the matrix must define at least one set"


@pytest.mark.parametrize(
    ("prefix", "wrap"),
    [
        ("matrix", lambda m: {"matrix": m}),
        (
            "routing.router.settings.matrix",
            lambda m: {"routing": {"router": {"use": "matrix", "settings": {"matrix": m}}}},
        ),
    ],
)
def test_matrix_dsl_errors_keep_type_position_and_gain_key_path(prefix: str, wrap: Any) -> None:
    document = {"models": models("a", "b"), **wrap({"sets": {"ok": "a", "bad": "a & ghost"}})}
    with pytest.raises(MatrixSyntaxError) as info:
        parse(document)
    assert info.value.set_name == "bad"
    assert info.value.position == 4
    assert str(info.value).startswith(f"{prefix}.sets.bad: ")
    assert "ghost" in str(info.value)
    assert isinstance(info.value.__cause__, MatrixSyntaxError) or info.value.__cause__ is None


def test_matrix_cycle_error_has_no_position() -> None:
    document = {"models": models("a"), "matrix": {"sets": {"x": "+y", "y": "+x & a"}}}
    with pytest.raises(MatrixSyntaxError) as info:
        parse(document)
    assert info.value.position is None
    assert str(info.value).startswith("matrix.sets.")


def test_api_key_and_peer_errors() -> None:
    document = {
        "models": models("a"),
        "apiKeys": ["", "has space", "ok"],
        "peers": {
            "nop": {"models": ["x"]},
            "empty": {"proxy": "http://h:1"},
            "a": {"proxy": "http://h:1", "models": ["b"]},
            "shadow": {"proxy": "ftp://h", "models": ["x"]},
            "": {"proxy": "http://h:1", "models": ["x"]},
            "lan": {"proxy": "http://h:1", "models": ["box/m"]},
            "lan/box": {"proxy": "http://h:2", "models": ["m"]},
        },
    }
    document["models"]["a/b"] = {"cmd": "s --port ${PORT}"}
    assert error_of(document).splitlines() == [
        "apiKeys[0]: must not be empty",
        "apiKeys[1]: must not contain spaces",
        "peers.nop.proxy: required",
        "peers.empty.models: must list at least one model",
        "peers.a.models[0]: 'a/b' is also a local model id or alias",
        "peers.shadow.proxy: must be an http:// or https:// URL, got 'ftp://h'",
        "peers: peer names must not be empty",
        "peers.lan/box.models[0]: 'lan/box/m' also names peers.lan.models[0]",
    ]


def test_swapcore_section_errors() -> None:
    document = {
        "models": models("a"),
        "swapcore": {"scheduler": "cost", "max_wait": -1, "default_concurrency_limit": 0},
    }
    assert error_of(document).splitlines() == [
        "swapcore.scheduler: unknown scheduler 'cost' (valid: cost-aware, fifo)",
        "swapcore.max_wait: must be >= 0",
        "swapcore.default_concurrency_limit: must be >= 1",
    ]


# ---------------------------------------------------------------- YAML


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("models:\n  a:\n    cmd: [unclosed\n    ttl: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line ")
    assert "line 4, column 8" in message


def test_yaml_duplicate_key_is_an_error() -> None:
    text = "models:\n  a:\n    cmd: x\n  a:\n    cmd: y\n"
    with pytest.raises(ConfigError) as info:
        load_config(text)
    assert str(info.value) == (
        "<string>: line 4, column 3: found duplicate key 'a' (while constructing a mapping)"
    )


def test_yaml_merge_keys_still_work() -> None:
    text = (
        "base: &base\n  ttl: 5\n  cmd: srv -p ${PORT}\nmodels:\n  a:\n    <<: *base\n    ttl: 7\n"
    )
    config = load_config(text)
    assert config.models["a"].ttl == 7
    assert config.warnings == ("base: unknown key, ignored",)


def test_yaml_reads_booleans_and_dates_like_go() -> None:
    text = "models:\n  on:\n    cmd: srv -p ${PORT}\n    name: 2024-01-01\n    aliases: [no, yes]\n"
    model = load_config(text).models["on"]
    assert model.name == "2024-01-01"
    assert model.aliases == ("no", "yes")
    with pytest.raises(ConfigError, match=r"models\.on\.unlisted: must be true or false"):
        load_config(text + "    unlisted: yes\n")


def test_empty_and_non_mapping_documents(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    with pytest.raises(ConfigError) as info:
        load_config(empty)
    assert str(info.value) == f"{empty}: the configuration is empty"
    with pytest.raises(ConfigError) as info:
        load_config("- a\n- b\n")
    assert str(info.value) == "<string>: the top level must be a mapping of settings, got a list"


def test_load_config_path_or_text(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  a:\n    cmd: srv -p ${PORT}\n")
    assert load_config(str(path)).source == str(path)
    assert load_config(path, source="mine").source == "mine"
    assert load_config("models: {a: {cmd: 'srv -p ${PORT}'}}").source == "<string>"
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "missing.yaml"))
    assert str(info.value).startswith(f"{tmp_path / 'missing.yaml'}: cannot read the configuration")


def test_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"models:\n  caf\xe9: {}\n")
    with pytest.raises(ConfigError, match=r"latin\.yaml: not UTF-8 text"):
        load_config(path)


def test_recursive_alias_is_reported() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("models:\n  a: {cmd: 'srv -p ${PORT}'}\nloop: &x [*x]\n")
    assert "loop[0]: a YAML alias refers to its own ancestor" in str(info.value)


# ---------------------------------------------------------------- property


_KEYS = [
    "models", "groups", "matrix", "routing", "router", "use", "settings", "scheduler", "fifo",
    "priority", "hooks", "on_startup", "preload", "peers", "proxy", "apiKey", "apiKeys",
    "macros", "cmd", "cmdStop", "ttl", "env", "aliases", "members", "swap", "exclusive",
    "persistent", "vars", "evict_costs", "sets", "swapcore", "max_wait", "startPort",
    "globalTTL", "unloadTimeout", "healthCheckTimeout", "concurrencyLimit", "checkEndpoint",
    "metadata", "a", "b", "${PORT}",
]  # fmt: skip
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70000),
    st.floats(allow_nan=True),
    st.sampled_from(["a", "b", "${PORT}", "srv -p ${PORT}", "a & b", "(a | b", "none", "/x"]),
    st.text(max_size=8),
)
_keys = st.one_of(st.sampled_from(_KEYS), st.text(max_size=6), st.integers(0, 3))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=25,
)
_model = st.fixed_dictionaries(
    {"cmd": st.sampled_from(["srv -p ${PORT}", "srv", "${x}"])},
    optional={key: _values for key in ("ttl", "aliases", "env", "proxy", "macros", "unlisted")},
)
_documents = st.fixed_dictionaries(
    {},
    optional={
        "models": st.dictionaries(st.sampled_from(["a", "b", "c"]), _model, max_size=3),
        "groups": _values,
        "matrix": _values,
        "routing": _values,
        "hooks": _values,
        "peers": _values,
        "macros": _values,
        "swapcore": _values,
        "startPort": _values,
    },
)


@given(st.one_of(_values, _documents, st.dictionaries(_keys, _values, max_size=6)))
def test_parse_config_raises_only_config_errors(document: object) -> None:
    try:
        config = parse_config(document, env={"A": "1"})
    except ConfigError:
        return
    assert isinstance(config, GatewayConfig)
    json.dumps(config.summary())


_yaml_text = st.lists(
    st.sampled_from(
        ["models:", "  a:", "    cmd: srv -p ${PORT}", "  - x", "&a [*a]", "{", "]", ":", "b: *a",
         "? [k]", "  ttl: -1", "!!python/object:os.system x", "\t", "'", "x: 'y", "<<: 1"]
    ) | st.text(max_size=10),
    max_size=8,
).map("\n".join)  # fmt: skip


@given(_yaml_text)
def test_load_config_raises_only_config_errors(text: str) -> None:
    with contextlib.suppress(ConfigError):
        load_config(text + "\n", env={})
