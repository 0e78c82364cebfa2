"""Upstream ``timeouts`` of models and peers, and the ``swapcore.start_retries`` setting."""

from __future__ import annotations

import json
import math
from typing import Any

import attrs
import pytest

from swapcore.config import (
    DEFAULT_MODEL_TIMEOUTS,
    DEFAULT_PEER_TIMEOUTS,
    TIMEOUT_KEYS,
    GatewayConfig,
    ModelConfig,
    PeerConfig,
    SwapcoreSettings,
    UpstreamTimeouts,
    load_config,
    parse_config,
    router_kwargs,
)
from swapcore.errors import ConfigError

ALL_DEFAULT = {
    "connect": 30.0,
    "response_header": None,
    "read": 600.0,
    "keepalive": 30.0,
    "tls_handshake": 10.0,
    "idle_conn": 90.0,
    "expect_continue": 1.0,
}


def parse(document: dict[str, Any]) -> GatewayConfig:
    return parse_config(document, env={})


def model(**extra: Any) -> dict[str, Any]:
    return {"models": {"a": {"cmd": "srv --port ${PORT}", **extra}}}


def peer(**extra: Any) -> dict[str, Any]:
    return {"peers": {"p": {"proxy": "https://peer.example", "models": ["m"], **extra}}}


def error_of(document: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(document, env={})
    return str(info.value)


# ------------------------------------------------------------------ the class


def test_defaults_are_llama_swaps_plus_read() -> None:
    assert attrs.asdict(UpstreamTimeouts()) == ALL_DEFAULT
    assert UpstreamTimeouts() == DEFAULT_MODEL_TIMEOUTS
    assert attrs.asdict(DEFAULT_PEER_TIMEOUTS) == {**ALL_DEFAULT, "response_header": 60.0}
    assert list(TIMEOUT_KEYS.values()) == list(ALL_DEFAULT)  # field order
    assert set(TIMEOUT_KEYS) == {
        "connect",
        "keepalive",
        "responseHeader",
        "tlsHandshake",
        "expectContinue",
        "idleConn",
        "read",
    }


def test_integers_become_floats_and_the_class_is_frozen() -> None:
    timeouts = UpstreamTimeouts(connect=5, read=None)
    assert timeouts.connect == 5.0
    assert isinstance(timeouts.connect, float)
    assert timeouts.read is None
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        timeouts.connect = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("value", [0, 0.0, -1, math.inf, math.nan, True, "30", [30]])
def test_invalid_values_name_the_field(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^UpstreamTimeouts\.idle_conn: must be a number"):
        UpstreamTimeouts(idle_conn=value)  # type: ignore[arg-type]


def test_model_and_peer_defaults_and_type_check() -> None:
    assert ModelConfig(id="a", cmd="x", proxy="http://h:1").timeouts == DEFAULT_MODEL_TIMEOUTS
    assert PeerConfig(name="p", proxy="http://h:1").timeouts == DEFAULT_PEER_TIMEOUTS
    with pytest.raises(ConfigError, match=r"^ModelConfig\.timeouts: must be an UpstreamTimeouts"):
        ModelConfig(id="a", cmd="x", proxy="http://h:1", timeouts={"connect": 1})  # type: ignore[arg-type]


# ------------------------------------------------------------------ loading


def test_absent_or_empty_sections_take_the_defaults() -> None:
    assert parse(model()).models["a"].timeouts == DEFAULT_MODEL_TIMEOUTS
    assert parse(model(timeouts=None)).models["a"].timeouts == DEFAULT_MODEL_TIMEOUTS
    assert parse(model(timeouts={"connect": None})).models["a"].timeouts == DEFAULT_MODEL_TIMEOUTS
    assert parse(peer()).peers["p"].timeouts == DEFAULT_PEER_TIMEOUTS


def test_every_key_of_a_model() -> None:
    section = {
        "connect": 5,
        "keepalive": 15,
        "responseHeader": 120,
        "tlsHandshake": 2.5,
        "expectContinue": 3,
        "idleConn": 45,
        "read": 900,
    }
    config = parse(model(timeouts=section))
    assert attrs.asdict(config.models["a"].timeouts) == {
        "connect": 5.0,
        "response_header": 120.0,
        "read": 900.0,
        "keepalive": 15.0,
        "tls_handshake": 2.5,
        "idle_conn": 45.0,
        "expect_continue": 3.0,
    }
    assert config.warnings == ()


def test_zero_means_no_timeout() -> None:
    section = {key: 0 for key in TIMEOUT_KEYS}
    timeouts = parse(model(timeouts=section)).models["a"].timeouts
    assert attrs.asdict(timeouts) == dict.fromkeys(ALL_DEFAULT)


def test_peer_keys_override_the_peer_defaults() -> None:
    config = parse(peer(timeouts={"responseHeader": 0, "read": 30, "connect": 3}))
    assert attrs.asdict(config.peers["p"].timeouts) == {
        **ALL_DEFAULT,
        "connect": 3.0,
        "response_header": None,
        "read": 30.0,
    }


def test_unknown_keys_are_warnings() -> None:
    document = {**model(timeouts={"conect": 5}), **peer(timeouts={"write": 1, "read": 2})}
    config = parse(document)
    assert config.warnings == (
        "models.a.timeouts.conect: unknown key, ignored",
        "peers.p.timeouts.write: unknown key, ignored",
    )
    assert config.models["a"].timeouts == DEFAULT_MODEL_TIMEOUTS
    assert config.peers["p"].timeouts.read == 2.0


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (30, "models.a.timeouts: must be a mapping, got a number"),
        ({"connect": -1}, "models.a.timeouts.connect: must be >= 0"),
        ({"read": "30"}, "models.a.timeouts.read: must be a number, got a string"),
        ({"idleConn": True}, "models.a.timeouts.idleConn: must be a number, got a boolean"),
        ({"keepalive": [1]}, "models.a.timeouts.keepalive: must be a number, got a list"),
        ({"tlsHandshake": math.nan}, "models.a.timeouts.tlsHandshake: must be a number, got NaN"),
        (
            {"responseHeader": math.inf},
            "models.a.timeouts.responseHeader: must be a finite number of seconds "
            "(0 for no timeout)",
        ),
    ],
)
def test_model_errors_name_the_key(section: object, message: str) -> None:
    assert error_of(model(timeouts=section)) == message


def test_peer_errors_name_the_key() -> None:
    assert error_of(peer(timeouts={"connect": "soon"})) == (
        "peers.p.timeouts.connect: must be a number, got a string"
    )
    assert error_of(peer(timeouts=[1])) == "peers.p.timeouts: must be a mapping, got a list"


# ------------------------------------------------------------------ macros


def test_model_and_global_macros_expand_keeping_numbers() -> None:
    # As llama-swap's own test: a model macro inside timeouts.connect.
    document = {
        "macros": {"slow": 1200, "fast": 2.5},
        "models": {
            "a": {
                "cmd": "srv --port ${PORT}",
                "macros": {"CONNECT_TIMEOUT": 12},
                "timeouts": {"connect": "${CONNECT_TIMEOUT}", "read": "${slow}"},
            },
            "b": {
                "cmd": "srv --port ${PORT}",
                "macros": {"slow": 60},
                "timeouts": {"read": "${slow}", "tlsHandshake": "${fast}"},
            },
        },
    }
    config = parse(document)
    assert (config.models["a"].timeouts.connect, config.models["a"].timeouts.read) == (12.0, 1200.0)
    assert (config.models["b"].timeouts.read, config.models["b"].timeouts.tls_handshake) == (
        60.0,
        2.5,
    )


def test_peer_timeouts_expand_global_macros() -> None:
    document = {"macros": {"patience": 0}, **peer(timeouts={"responseHeader": "${patience}"})}
    assert parse(document).peers["p"].timeouts.response_header is None


def test_macro_errors_in_timeouts() -> None:
    assert error_of(model(timeouts={"connect": "${nope}"})) == (
        "models.a.timeouts.connect: unknown macro '${nope}'"
    )
    assert error_of(peer(timeouts={"read": "${nope}"})) == (
        "peers.p.timeouts.read: unknown macro '${nope}'"
    )
    # A macro inside a longer string makes a string, which is not a number
    # (llama-swap's typed decoder refuses it too).
    document = {"macros": {"n": 5}, **model(timeouts={"connect": "1${n}"})}
    assert error_of(document) == "models.a.timeouts.connect: must be a number, got a string"
    text = {"macros": {"n": "five"}, **model(timeouts={"connect": "${n}"})}
    assert error_of(text) == "models.a.timeouts.connect: must be a number, got a string"


def test_timeouts_from_yaml() -> None:
    text = """\
macros:
  patience: 90
models:
  a:
    cmd: srv --port ${PORT}
    timeouts:
      connect: 10
      responseHeader: ${patience}
      read: 0
peers:
  p:
    proxy: https://peer.example
    models: [m]
    timeouts: {connect: 3}
"""
    config = load_config(text, env={})
    timeouts = config.models["a"].timeouts
    assert (timeouts.connect, timeouts.response_header, timeouts.read) == (10.0, 90.0, None)
    assert config.peers["p"].timeouts == attrs.evolve(DEFAULT_PEER_TIMEOUTS, connect=3.0)


# ------------------------------------------------------------------ summary


def test_summary_shows_timeouts_per_model_and_peer() -> None:
    document = {**model(timeouts={"read": 0, "connect": 2}), **peer()}
    summary = parse(document).summary()
    json.dumps(summary)
    assert summary["models"][0]["timeouts"] == {**ALL_DEFAULT, "connect": 2.0, "read": None}
    assert summary["peers"][0]["timeouts"] == {**ALL_DEFAULT, "response_header": 60.0}


# ------------------------------------------------------------------ start_retries


def test_start_retries_default_and_value() -> None:
    assert parse(model()).swapcore.start_retries == 1
    config = parse({**model(), "swapcore": {"start_retries": 0}})
    assert config.swapcore.start_retries == 0
    assert config.summary()["settings"]["start_retries"] == 0
    assert parse({**model(), "swapcore": {"start_retries": 4}}).swapcore.start_retries == 4
    assert router_kwargs(config)["start_retries"] == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "swapcore.start_retries: must be >= 0"),
        (1.5, "swapcore.start_retries: must be an integer, got a number"),
        ("2", "swapcore.start_retries: must be an integer, got a string"),
        (True, "swapcore.start_retries: must be an integer, got a boolean"),
    ],
)
def test_start_retries_errors(value: object, message: str) -> None:
    assert error_of({**model(), "swapcore": {"start_retries": value}}) == message


def test_start_retries_validation_in_the_class() -> None:
    assert SwapcoreSettings().start_retries == 1
    with pytest.raises(ConfigError, match=r"^SwapcoreSettings\.start_retries: must be an integer"):
        SwapcoreSettings(start_retries=-1)
