"""``filters`` on models and peers: reading, macros, aliases, errors, and the rule itself."""

from __future__ import annotations

from typing import Any

import pytest

from swapcore import ConfigError
from swapcore.config import Filters, GatewayConfig, apply_filters, load_config, parse_config


def model(**keys: Any) -> dict[str, Any]:
    return {"cmd": "srv --port ${PORT}", **keys}


def parse(document: dict[str, Any], **kwargs: Any) -> GatewayConfig:
    return parse_config(document, env={}, **kwargs)


def error_of(document: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse(document)
    return str(info.value)


# The model and peer blocks of llama-swap's documented config.example.yaml.
EXAMPLE = """
models:
  gpt-oss:
    cmd: srv --port ${PORT}
    useModelName: "openai/gpt-oss-120B"
    aliases: ["gpt-4o-mini"]
    filters:
      stripParams: "temperature, top_p, top_k"
      setParams:
        temperature: 0.7
        top_p: 0.9
      setParamsByID:
        "${MODEL_ID}":
          chat_template_kwargs:
            reasoning_effort: medium
        "${MODEL_ID}:high":
          chat_template_kwargs:
            reasoning_effort: high
        "${MODEL_ID}:low":
          chat_template_kwargs:
            reasoning_effort: low
peers:
  openrouter:
    proxy: https://openrouter.ai/api
    apiKey: ${env.OPENROUTER_API_KEY}
    models: [meta-llama/llama-3.1-8b-instruct, z-ai/glm-4.7]
    filters:
      stripParams: "temperature, top_p"
      setParams:
        provider:
          data_collection: "deny"
          zdr: true
"""


@pytest.fixture(scope="module")
def example() -> GatewayConfig:
    return load_config(EXAMPLE, env={"OPENROUTER_API_KEY": "sk-or"})


def test_documented_model_filters(example: GatewayConfig) -> None:
    gpt = example.models["gpt-oss"]
    assert gpt.filters.strip_params == ("temperature", "top_k", "top_p")  # sorted
    assert dict(gpt.filters.set_params) == {"temperature": 0.7, "top_p": 0.9}
    assert {k: dict(v) for k, v in gpt.filters.set_params_by_id.items()} == {
        "gpt-oss": {"chat_template_kwargs": {"reasoning_effort": "medium"}},
        "gpt-oss:high": {"chat_template_kwargs": {"reasoning_effort": "high"}},
        "gpt-oss:low": {"chat_template_kwargs": {"reasoning_effort": "low"}},
    }
    # Each setParamsByID name other than the id becomes an alias.
    assert gpt.aliases == ("gpt-4o-mini", "gpt-oss:high", "gpt-oss:low")
    assert example.resolve_model("gpt-oss:high") == "gpt-oss"
    assert example.warnings == ()


def test_documented_peer_filters(example: GatewayConfig) -> None:
    peer = example.peers["openrouter"].filters
    assert peer.strip_params == ("temperature", "top_p")
    assert dict(peer.set_params) == {"provider": {"data_collection": "deny", "zdr": True}}
    assert dict(peer.set_params_by_id) == {}


def test_documented_rule_on_a_body(example: GatewayConfig) -> None:
    gpt = example.models["gpt-oss"].filters
    body = {"model": "gpt-oss:high", "messages": [], "temperature": 0.1, "top_k": 5, "seed": 1}
    assert apply_filters(body, gpt, "gpt-oss:high") == {
        "model": "gpt-oss:high",
        "messages": [],
        "seed": 1,
        "temperature": 0.7,
        "top_p": 0.9,
        "chat_template_kwargs": {"reasoning_effort": "high"},
    }
    assert body["temperature"] == 0.1  # not changed
    # An alias without setParamsByID gets setParams only.
    assert "chat_template_kwargs" not in apply_filters(body, gpt, "gpt-4o-mini")


def test_strip_params_cleaning() -> None:
    document = {"models": {"m": model(filters={"stripParams": " top_p ,, temperature,top_p, ,"})}}
    assert parse(document).models["m"].filters.strip_params == ("temperature", "top_p")


def test_model_is_protected_with_a_warning() -> None:
    filters = {
        "stripParams": "model, seed",
        "setParams": {"model": "other", "seed": 1},
        "setParamsByID": {"m": {"model": "x", "n": 2}},
    }
    config = parse({"models": {"m": model(filters=filters)}})
    built = config.models["m"].filters
    assert built.strip_params == ("seed",)
    assert dict(built.set_params) == {"seed": 1}
    assert dict(built.set_params_by_id["m"]) == {"n": 2}
    assert config.warnings == (
        "models.m.filters.stripParams: 'model' is protected and never stripped, ignored",
        "models.m.filters.setParams.model: 'model' is protected and never set, ignored",
        "models.m.filters.setParamsByID.m.model: 'model' is protected and never set, ignored",
    )
    with pytest.raises(ConfigError, match="protected 'model'"):
        Filters(set_params={"model": "x"})
    with pytest.raises(ConfigError, match="protected 'model'"):
        Filters(strip_params=["model"])


def test_legacy_strip_params_for_models_only() -> None:
    config = parse({"models": {"m": model(filters={"strip_params": "a, b"})}})
    assert config.models["m"].filters.strip_params == ("a", "b")
    # stripParams wins when both are given.
    config = parse({"models": {"m": model(filters={"strip_params": "a", "stripParams": "c"})}})
    assert config.models["m"].filters.strip_params == ("c",)
    peer = {"proxy": "http://h", "models": ["x"], "filters": {"strip_params": "a"}}
    assert error_of({"peers": {"p": peer}}).startswith("peers.p.filters.strip_params: unknown")


def test_macros_expand_in_values_and_by_id_keys() -> None:
    document = {
        "macros": {"effort": "high", "limit": 4096},
        "models": {
            "m": model(
                macros={"temp": 0.2},
                filters={
                    "stripParams": "${MODEL_ID}_x",
                    "setParams": {
                        "temperature": "${temp}",
                        "max_tokens": "${limit}",
                        "p": "${PORT}",
                    },
                    "setParamsByID": {"${MODEL_ID}:${effort}": {"effort": "${effort}"}},
                },
            )
        },
        "peers": {
            "p": {
                "proxy": "http://h",
                "models": ["x"],
                "filters": {"setParams": {"max_tokens": "${limit}", "tag": "t-${effort}"}},
            }
        },
    }
    config = parse(document)
    built = config.models["m"].filters
    assert built.strip_params == ("m_x",)
    # A value that is exactly one macro keeps the macro's type.
    assert dict(built.set_params) == {"temperature": 0.2, "max_tokens": 4096, "p": 5800}
    assert dict(built.set_params_by_id["m:high"]) == {"effort": "high"}
    assert dict(config.peers["p"].filters.set_params) == {"max_tokens": 4096, "tag": "t-high"}


def test_env_in_filters() -> None:
    document = {"models": {"m": model(filters={"stripParams": "${env.STRIP}"})}}
    config = parse_config(document, env={"STRIP": "temperature,top_p"})
    assert config.models["m"].filters.strip_params == ("temperature", "top_p")


def test_peer_by_id_keys_are_not_expanded() -> None:
    peer = {"proxy": "http://h", "models": ["x"], "filters": {"setParamsByID": {"${a}": {"n": 1}}}}
    document = {"macros": {"a": "b"}, "peers": {"p": peer}}
    assert error_of(document) == "peers.p.filters.setParamsByID: unknown macro '${a}' in key '${a}'"


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ("temperature", "models.m.filters: must be a mapping, got a string"),
        (
            {"stripParams": ["temperature"]},
            "models.m.filters.stripParams: must be a comma-separated string of parameter names,"
            " got a list",
        ),
        ({"setParams": [1]}, "models.m.filters.setParams: must be a mapping, got a list"),
        (
            {"setParamsByID": {"m:x": [1]}},
            "models.m.filters.setParamsByID.m:x: must be a mapping, got a list",
        ),
        (
            {"setParams": {"top_p": float("nan")}},
            "models.m.filters.setParams.top_p: must be a finite number, got nan",
        ),
        (
            {"setParams": {"stop": [1, {2: "x"}]}},
            "models.m.filters.setParams.stop: JSON object keys must be strings, got 2",
        ),
        (
            {"setParams": {"blob": b"x"}},
            "models.m.filters.setParams.blob: must be a JSON value (string, number, boolean,"
            " null, list or mapping), got a bytes",
        ),
        (
            {"stripParams": "provider.zdr"},
            "models.m.filters.stripParams: parameter 'provider.zdr' contains '.', which"
            " llama-swap reads as JSON path syntax; filters apply to top-level parameters only",
        ),
        (
            {"setParams": {"a*": 1}},
            "models.m.filters.setParams: parameter 'a*' contains '*', which llama-swap reads"
            " as JSON path syntax; filters apply to top-level parameters only",
        ),
        ({"setParams": {"": 1}}, "models.m.filters.setParams: parameter names must not be empty"),
        (
            {"setParamsByID": {" ": {}}},
            "models.m.filters.setParamsByID: model names must not be empty",
        ),
        ({"stripParams": "${nope}"}, "models.m.filters.stripParams: unknown macro '${nope}'"),
        (
            {"setParamsByID": {"a": {}, "${MODEL_ID}": {}}},
            None,
        ),
    ],
)
def test_invalid_filters(filters: object, message: str | None) -> None:
    document = {"models": {"m": model(filters=filters)}}
    if message is None:
        parse(document)  # valid
    else:
        assert error_of(document) == message


def test_by_id_keys_that_collide() -> None:
    by_id = {"setParamsByID": {"${MODEL_ID}": {}, "m": {}}}
    assert error_of({"models": {"m": model(filters=by_id)}}) == (
        "models.m.filters.setParamsByID: keys '${MODEL_ID}' and 'm' both resolve to 'm'"
    )
    models = {"m": model(filters={"setParamsByID": {"n": {}}}), "n": model()}
    assert error_of({"models": models}) == (
        "models.m.filters.setParamsByID: 'n' is already a model id"
    )
    models = {"m": model(filters={"setParamsByID": {"x": {}}}), "n": model(aliases=["x"])}
    assert error_of({"models": models}) == (
        "models.m.filters.setParamsByID: 'x' is already an alias of model 'n'"
    )
    # The model's own alias is no conflict (and is not listed twice).
    config = parse({"models": {"m": model(aliases=["x"], filters={"setParamsByID": {"x": {}}})}})
    assert config.models["m"].aliases == ("x",)


def test_unknown_filter_key_is_an_error_unless_allowed() -> None:
    document = {"models": {"m": model(filters={"stripParam": "temperature"})}}
    message = error_of(document)
    assert message.startswith(
        "models.m.filters.stripParam: unknown filter (known: stripParams, setParams,"
        " setParamsByID); ignoring it would change what is sent upstream or who may call."
    )
    assert "--allow-unsupported" in message
    config = parse(document, allow_unsupported=True)
    assert config.models["m"].filters.empty
    assert config.warnings == (
        "models.m.filters.stripParam: unknown filter (known: stripParams, setParams,"
        " setParamsByID); ignored (allow_unsupported)",
    )


# ----------------------------------------------------- the unsupported-key rule


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"profiles": {"p": {"pins": {}}}}, "profiles"),
        ({"selectors": {"s": {"targets": ["m"]}}}, "selectors"),
        ({"hooks": {"on_startup": {"profile": "p"}}}, "hooks.on_startup.profile"),
        (
            {"peers": {"p": {"proxy": "http://h", "models": ["x"], "tailcatKey": "k"}}},
            "peers.p.tailcatKey",
        ),
    ],
)
def test_policy_keys_are_errors_unless_allowed(document: dict[str, Any], path: str) -> None:
    document = {"models": {"m": model()}, **document}
    message = error_of(document)
    assert message.startswith(f"{path}: not supported by swapcore (")
    assert message.endswith(
        "ignoring it would change what is sent upstream or who may call. Remove it, or pass"
        " --allow-unsupported (allow_unsupported=True) to start without it"
    )
    config = parse(document, allow_unsupported=True)
    assert len(config.warnings) == 1
    assert config.warnings[0].startswith(f"{path}: not supported by swapcore (")
    assert config.warnings[0].endswith("; ignored (allow_unsupported)")


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"logLevel": "debug"}, "logLevel"),
        ({"ui": {}}, "ui"),
        ({"upstream": {"ignorePaths": []}}, "upstream"),
        ({"scheduling": {}}, "scheduling"),
        ({"models": {"m": model(capabilities={"in": ["text"]})}}, "models.m.capabilities"),
        ({"models": {"m": model(compat={"ignoreWebsockets": True})}}, "models.m.compat"),
        ({"models": {"m": model(aliases=[{"id": "a", "name": "A"}])}}, "models.m.aliases[0].name"),
    ],
)
def test_cosmetic_keys_stay_warnings(document: dict[str, Any], path: str) -> None:
    config = parse({"models": {"m": model()}, **document})
    assert config.warnings == (f"{path}: not supported by swapcore, ignored",)


def test_load_config_passes_allow_unsupported() -> None:
    text = "profiles: {}\nmodels:\n  m:\n    cmd: srv --port ${PORT}\n"
    with pytest.raises(ConfigError, match=r"^profiles: not supported"):
        load_config(text, env={})
    assert load_config(text, env={}, allow_unsupported=True).warnings[0].startswith("profiles:")


def test_peer_set_params_by_id_is_keyed_by_the_requested_name() -> None:
    peer = {
        "proxy": "http://h",
        "models": ["org/m"],
        "filters": {"setParamsByID": {"p/org/m": {"a": 1}, "org/m": {"b": 2}, "other": {}}},
    }
    config = parse({"peers": {"p": peer}})
    filters = config.peers["p"].filters
    assert filters.assignments("p/org/m") == {"a": 1}
    assert filters.assignments("org/m") == {"b": 2}
    assert config.warnings == (
        "peers.p.filters.setParamsByID: 'other' names none of this peer's models,"
        " so it never applies",
    )
    assert config.resolve_model("org/m") is None  # a peer's names make no alias
