"""Hostile and broken configurations: each is a ConfigError naming the key, found quickly.

Commands and URLs of the wrong type, two models on one upstream port, names
with invisible characters, and YAML documents built to exhaust time or
memory (alias bombs, deep nesting, huge files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swapcore.config import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_DEPTH,
    GatewayConfig,
    ModelConfig,
    PeerConfig,
    load_config,
    parse_config,
)
from swapcore.config.schema import invisible_character
from swapcore.errors import ConfigError


def parse(document: dict[str, Any]) -> GatewayConfig:
    return parse_config(document, env={})


def error_of(document: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(document, env={})
    return str(info.value)


def load_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(text, env={})
    return str(info.value)


def fixed(port: int, host: str = "127.0.0.1", scheme: str = "http") -> dict[str, Any]:
    """A model that runs a container publishing a fixed port."""
    return {"cmd": "docker run -p 8080:8080 img", "proxy": f"{scheme}://{host}:{port}"}


# ------------------------------------------------------------ commands and URLs


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (123, "a number"),
        (1.5, "a number"),
        (True, "a boolean"),
        (["x"], "a list"),
        ({}, "a mapping"),
    ],
)
@pytest.mark.parametrize("key", ["cmd", "cmdStop", "proxy", "checkEndpoint"])
def test_commands_and_urls_are_never_coerced(key: str, value: object, kind: str) -> None:
    document = {"models": {"x": {"cmd": "srv --port ${PORT}", key: value}}}
    assert error_of(document) == f"models.x.{key}: must be a string, got {kind}"


def test_peer_proxy_must_be_a_string() -> None:
    document = {"peers": {"p": {"proxy": 8080, "models": ["m"]}}}
    assert error_of(document) == "peers.p.proxy: must be a string, got a number"


def test_other_strings_keep_go_like_coercion() -> None:
    config = parse({"models": {"x": {"cmd": "srv --port ${PORT}", "name": 7, "description": 1.5}}})
    assert (config.models["x"].name, config.models["x"].description) == ("7", "1.5")


# ------------------------------------------------------------ shared upstream ports


def test_two_models_on_one_fixed_port_that_can_run_together() -> None:
    document = {
        "models": {"a": fixed(9001), "b": fixed(9001, host="localhost")},
        "groups": {"one": {"members": ["a"], "exclusive": False}, "two": {"members": ["b"]}},
    }
    assert error_of(document) == (
        "models.b.proxy: localhost:9001 is also the upstream of models.a.proxy, and the "
        "groups let both models run at once; put them in one group with swap: true, "
        "or give each model its own port"
    )


@pytest.mark.parametrize(
    "groups",
    [
        None,  # no groups: every model is in "(default)", one at a time
        {"containers": {"members": ["a", "b"]}},  # one swapping group
        {"containers": {"members": ["a", "b"], "exclusive": False}},
        # two exclusive groups, neither persistent: loading either stops the other
        {"one": {"members": ["a"]}, "two": {"members": ["b"]}},
    ],
)
def test_models_sharing_a_port_that_never_run_together_load(groups: object) -> None:
    document: dict[str, Any] = {"models": {"a": fixed(9001), "b": fixed(9001)}}
    if groups is not None:
        document["groups"] = groups
    config = parse(document)
    assert config.models["a"].proxy == config.models["b"].proxy


@pytest.mark.parametrize(
    "groups",
    [
        {"g": {"members": ["a", "b"], "swap": False}},
        {"one": {"members": ["a"]}, "two": {"members": ["b"], "persistent": True}},
        {"one": {"members": ["a"], "exclusive": False}, "two": {"members": ["b"]}},
    ],
)
def test_models_sharing_a_port_that_may_run_together_are_refused(groups: object) -> None:
    document = {"models": {"a": fixed(9001), "b": fixed(9001)}, "groups": groups}
    assert error_of(document).startswith(
        "models.b.proxy: localhost:9001 is also the upstream of models.a.proxy"
    )


def test_matrix_router_uses_the_sets() -> None:
    apart = {
        "models": {"a": fixed(9001), "b": fixed(9001)},
        "matrix": {"sets": {"x": "a", "y": "b"}},
    }
    assert parse(apart).routing.router == "matrix"
    together = {"models": {"a": fixed(9001), "b": fixed(9001)}, "matrix": {"sets": {"x": "a & b"}}}
    assert error_of(together) == (
        "models.b.proxy: localhost:9001 is also the upstream of models.a.proxy, and a matrix "
        "set can hold both models; keep them out of a common set, or give each model its own port"
    )


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        ("http://localhost:9001", "http://[::1]:9001/v1", True),
        ("http://LOCALHOST:9001", "http://127.0.0.1:9001", True),
        ("http://host.lan", "http://host.lan:80", True),
        ("https://host.lan", "https://host.lan:443/api", True),
        ("http://localhost:8443", "https://localhost:8443", True),  # one port, one server
        ("http://host.lan", "https://host.lan", False),  # ports 80 and 443
        ("http://10.0.0.1:9001", "http://10.0.0.2:9001", False),
        ("http://localhost:9001", "http://localhost:9002", False),
    ],
)
def test_what_counts_as_one_address(first: str, second: str, shared: bool) -> None:
    document = {
        "models": {
            "a": {"cmd": "start-a", "proxy": first},
            "b": {"cmd": "start-b", "proxy": second},
        },
        "groups": {"free": {"members": ["a", "b"], "swap": False}},
    }
    if shared:
        assert "is also the upstream of models.a.proxy" in error_of(document)
    else:
        assert set(parse(document).models) == {"a", "b"}


def test_an_assigned_port_colliding_with_a_fixed_one_says_so() -> None:
    document = {
        "models": {
            "a": {"cmd": "srv --port ${PORT}"},  # gets 5800
            "b": fixed(5800, host="localhost"),
        },
        "groups": {"free": {"members": ["a", "b"], "swap": False}},
    }
    assert error_of(document) == (
        "models.b.proxy: localhost:5800 is also the upstream of models.a.proxy, and the groups "
        "let both models run at once; put them in one group with swap: true, or give each "
        "model its own port (port 5800 is the ${PORT} of models.a: set startPort past the "
        "fixed ports)"
    )


def test_each_later_model_is_reported_once() -> None:
    document = {
        "models": {"a": fixed(9001), "b": fixed(9001), "c": fixed(9001), "d": fixed(9002)},
        "groups": {
            "containers": {"members": ["a", "b"], "exclusive": False},
            "other": {"members": ["c", "d"], "exclusive": False},
        },
    }
    lines = error_of(document).splitlines()
    assert [line.split(":")[0] for line in lines] == ["models.c.proxy"]
    assert "upstream of models.a.proxy" in lines[0]


def test_the_check_waits_for_valid_routing() -> None:
    # A broken routing section is reported by itself, not as a port problem too.
    document = {
        "models": {"a": fixed(9001), "b": fixed(9001)},
        "groups": {"one": {"members": ["a"]}, "two": {"members": ["a", "b"], "swap": "no"}},
    }
    assert "proxy" not in error_of(document)


# ------------------------------------------------------------ invisible characters


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("a\x07b", "a control character U+0007"),
        ("a\tb", "a control character U+0009"),
        ("line\n", "a control character U+000A"),
        ("del\x7f", "a control character U+007F"),
        ("nel\x85", "a control character U+0085"),
        ("\u200eltr", "an invisible formatting character U+200E"),
        ("bom\ufeff", "an invisible formatting character U+FEFF"),
        ("a\u2028b", "a line separator U+2028"),
        ("a\u2029b", "a paragraph separator U+2029"),
    ],
)
def test_names_with_invisible_characters_are_refused(name: str, what: str) -> None:
    model_error = error_of({"models": {name: {"cmd": "srv --port ${PORT}"}}})
    assert model_error == f"models: model id {name!r} contains {what}"
    assert model_error.isprintable()  # the message shows the character escaped
    alias = {"models": {"a": {"cmd": "srv --port ${PORT}", "aliases": ["ok", name]}}}
    assert error_of(alias) == f"models.a.aliases[1]: alias {name!r} contains {what}"
    alias_object = {"models": {"a": {"cmd": "srv --port ${PORT}", "aliases": [{"id": name}]}}}
    assert error_of(alias_object) == f"models.a.aliases[0].id: alias {name!r} contains {what}"
    peer_name = {"peers": {name: {"proxy": "http://h:1", "models": ["m"]}}}
    assert error_of(peer_name) == f"peers: peer name {name!r} contains {what}"
    peer_model = {"peers": {"p": {"proxy": "http://h:1", "models": ["m", name]}}}
    assert error_of(peer_model) == f"peers.p.models[1]: model name {name!r} contains {what}"


@pytest.mark.parametrize(
    "name", ["qwen-7b", "modèle", "模型", "my model", "👩\u200d💻", "ab\u200cc"]
)
def test_visible_names_load(name: str) -> None:
    config = parse(
        {
            "models": {name: {"cmd": "srv --port ${PORT}", "aliases": [f"{name}-alias"]}},
            "peers": {f"{name}-peer": {"proxy": "http://h:1", "models": [name]}},
        }
    )
    assert list(config.models) == [name]
    assert invisible_character(name) is None


def test_invisible_characters_from_yaml_escapes() -> None:
    message = load_error('models:\n  "a\\ab": {cmd: "srv --port ${PORT}"}\n')
    assert message == "models: model id 'a\\x07b' contains a control character U+0007"


def test_hand_built_configs_are_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"^ModelConfig\.id: 'a\\nb' contains a control"):
        ModelConfig(id="a\nb", cmd="x", proxy="http://h:1")
    with pytest.raises(ConfigError, match=r"^ModelConfig\.aliases: 'x\\ty' contains"):
        ModelConfig(id="a", cmd="x", proxy="http://h:1", aliases=["x\ty"])
    with pytest.raises(ConfigError, match=r"^PeerConfig\.name: '\\u200ep' contains"):
        PeerConfig(name="\u200ep", proxy="http://h:1")
    with pytest.raises(ConfigError, match=r"^PeerConfig\.models: 'm\\x00' contains"):
        PeerConfig(name="p", proxy="http://h:1", models=["m\x00"])


# ------------------------------------------------------------ YAML limits

MODEL = "models:\n  a: {cmd: 'srv --port ${PORT}'}\n"


def test_billion_laughs_is_refused() -> None:
    lines = ["lol0: &l0 [lol]"]
    lines += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    message = load_error(MODEL + "\n".join(lines) + "\n")
    assert message.startswith("<string>: line ")
    assert message.endswith(
        "the document expands to more than 100,000 values "
        "(each use of a YAML alias counts the whole value it names)"
    )


def test_a_bomb_inside_a_model_is_refused_before_macros_expand() -> None:
    lines = ["b0: &b0 [x, y]"] + [f"b{i}: &b{i} [*b{i - 1}, *b{i - 1}]" for i in range(1, 40)]
    text = "\n".join(lines) + "\nmodels:\n  a:\n    cmd: srv --port ${PORT}\n    metadata: *b39\n"
    assert "expands to more than 100,000 values" in load_error(text)


def test_a_long_alias_chain_is_refused() -> None:
    chain = "c0: &c0 [x]\n" + "".join(f"c{i}: &c{i} [*c{i - 1}]\n" for i in range(1, 5000))
    assert load_error(MODEL + chain) == (
        "<string>: line 101: the document is nested more than 100 levels deep "
        "(counting through YAML aliases)"
    )


def test_merge_key_bomb_is_refused() -> None:
    merges = "m0: &m0 {k: v}\n" + "".join(
        f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}\n" for i in range(1, 60)
    )
    assert "expands to more than 100,000 values" in load_error(MODEL + merges)


def test_deep_nesting_is_refused() -> None:
    text = MODEL + "x: " + "[" * 50_000 + "]" * 50_000 + "\n"
    assert load_error(text) == (
        "<string>: line 3: the document is nested more than 100 levels deep "
        "(counting through YAML aliases)"
    )


def test_nesting_up_to_the_limit_loads() -> None:
    # root, models, a, metadata: 4 levels; then lists; the innermost scalar is one more.
    def text(lists: int) -> str:
        value = "[" * lists + "1" + "]" * lists
        return f"models:\n  a:\n    cmd: srv --port ${{PORT}}\n    metadata: {{x: {value}}}\n"

    assert load_config(text(MAX_CONFIG_DEPTH - 5), env={}).models["a"].metadata["x"]
    assert "nested more than 100 levels" in load_error(text(MAX_CONFIG_DEPTH - 4))


def test_shared_values_within_the_limit_load() -> None:
    # Anchors and merge keys are ordinary YAML: 200 models sharing defaults load.
    models = "".join(
        f"  m{i}:\n    <<: *defaults\n    cmd: srv --port ${{PORT}} -m {i}\n" for i in range(200)
    )
    text = f"defaults: &defaults\n  ttl: 60\n  metadata: {{a: 1, b: [1, 2, 3]}}\nmodels:\n{models}"
    config = load_config(text, env={})
    assert len(config.models) == 200
    assert config.models["m7"].ttl == 60


def test_oversized_text_is_refused_before_parsing(tmp_path: Path) -> None:
    text = MODEL + "# " + "x" * (20 << 20) + "\n"
    assert load_error(text) == (
        "<string>: the configuration is larger than 1,048,576 bytes, the most swapcore reads"
    )
    path = tmp_path / "huge.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: the configuration is larger than 1,048,576 bytes, the most swapcore reads"
    )


def test_the_byte_limit_counts_utf8_bytes() -> None:
    text = MODEL + "# " + "é" * (MAX_CONFIG_BYTES // 2) + "\n"  # fewer characters than bytes
    assert len(text) < MAX_CONFIG_BYTES
    assert "larger than 1,048,576 bytes" in load_error(text)


def test_parse_config_bounds_shared_python_values_too() -> None:
    shared: list[Any] = ["x"]
    for _ in range(40):
        shared = [shared, shared]
    document = {"models": {"a": {"cmd": "srv --port ${PORT}", "metadata": {"m": shared}}}}
    message = error_of(document)
    assert message.startswith("models.a.metadata.m[0]")
    assert message.endswith(
        "the document expands to more than 100,000 values "
        "(a value shared through YAML aliases counts once per use)"
    )
    deep: list[Any] = []
    inner = deep
    for _ in range(5000):
        inner.append([])
        inner = inner[0]
    message = error_of({"models": {"a": {"cmd": "srv --port ${PORT}"}}, "deep": deep})
    assert message.endswith("...: the document is nested more than 100 levels deep")
    assert len(message) < 200
