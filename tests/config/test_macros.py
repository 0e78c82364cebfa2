"""Macro rules: global and model macros, ${MODEL_ID}, ${PORT}, ${PID}, ${env.NAME}."""

from __future__ import annotations

from typing import Any

import pytest

from swapcore.config import load_config, parse_config
from swapcore.config.macros import (
    check_macro,
    clean_command,
    expand,
    expand_value,
    macro_text,
    merge_macros,
    resolve_macros,
    substitute_env,
    unknown_macros,
)
from swapcore.errors import ConfigError


def parse(document: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return parse_config(document, env=env or {})


def one_model(cmd: str, **fields: Any) -> dict[str, Any]:
    return {"models": {"m": {"cmd": cmd, **fields}}}


# ---------------------------------------------------------------- in configurations


def test_global_macro_expands_in_cmd() -> None:
    config = parse({"macros": {"bin": "/opt/server"}, **one_model("${bin} --port ${PORT}")})
    assert config.models["m"].cmd == "/opt/server --port 5800"


def test_model_macro_overrides_global_macro() -> None:
    document = {
        "macros": {"ctx": 4096},
        "models": {
            "a": {"cmd": "srv --port ${PORT} -c ${ctx}", "macros": {"ctx": 16384}},
            "b": {"cmd": "srv --port ${PORT} -c ${ctx}"},
        },
    }
    config = parse(document)
    assert config.models["a"].cmd == "srv --port 5800 -c 16384"
    assert config.models["b"].cmd == "srv --port 5801 -c 4096"


def test_override_takes_the_global_macros_place_for_later_macros() -> None:
    # llama-swap substitutes the merged list in reverse: a later global macro
    # that uses an overridden one sees the model's value.
    document = {
        "macros": {"ctx": 4096, "args": "--ctx-size ${ctx}"},
        "models": {"a": {"cmd": "srv --port ${PORT} ${args}", "macros": {"ctx": 999}}},
    }
    assert parse(document).models["a"].cmd == "srv --port 5800 --ctx-size 999"


def test_macro_may_use_earlier_macros_only() -> None:
    ok = {"macros": {"a": "x", "b": "${a}-y"}, **one_model("srv ${b} --port ${PORT}")}
    assert parse(ok).models["m"].cmd == "srv x-y --port 5800"
    late = {"macros": {"b": "${a}-y", "a": "x"}, **one_model("srv ${b} --port ${PORT}")}
    with pytest.raises(ConfigError, match=r"^models\.m\.cmd: unknown macro '\$\{a\}'$"):
        parse(late)


def test_model_id_macro() -> None:
    config = parse(
        {
            "models": {
                "qwen": {
                    "cmd": "docker run --name ${MODEL_ID} -p ${PORT}:8080 img",
                    "cmdStop": "docker stop ${MODEL_ID}",
                    "name": "model ${MODEL_ID}",
                }
            }
        }
    )
    model = config.models["qwen"]
    assert model.cmd == "docker run --name qwen -p 5800:8080 img"
    assert model.cmd_stop == "docker stop qwen"
    assert model.name == "model qwen"


def test_model_id_is_usable_inside_global_macros() -> None:
    config = parse({"macros": {"tag": "name-${MODEL_ID}"}, **one_model("srv ${tag} -p ${PORT}")})
    assert config.models["m"].cmd == "srv name-m -p 5800"


def test_ports_follow_sorted_model_ids_as_in_llama_swap() -> None:
    document = {
        "startPort": 7000,
        "models": {
            "zeta": {"cmd": "srv --port ${PORT}"},
            "alpha": {"cmd": "srv --port ${PORT}"},
            "fixed": {"cmd": "srv --port 9999", "proxy": "http://127.0.0.1:9999"},
            "Mid": {"cmd": "srv --port ${PORT}"},
        },
    }
    config = parse(document)
    # Byte order: uppercase sorts first; models without ${PORT} take no port.
    assert {m: c.port for m, c in config.models.items()} == {
        "zeta": 7002,
        "alpha": 7001,
        "fixed": None,
        "Mid": 7000,
    }
    assert config.models["alpha"].proxy == "http://localhost:7001"
    assert list(config.models) == ["zeta", "alpha", "fixed", "Mid"]  # definition order kept


def test_port_from_a_macro_counts() -> None:
    config = parse({"macros": {"server": "srv --port ${PORT}"}, **one_model("${server} -m x")})
    assert config.models["m"].port == 5800
    assert config.models["m"].cmd == "srv --port 5800 -m x"


def test_port_expands_in_every_model_field() -> None:
    config = parse(
        one_model(
            "srv --port ${PORT}",
            proxy="http://127.0.0.1:${PORT}/",
            cmdStop="stop ${PORT}",
            description="on ${PORT}",
            env=["PORT_COPY=${PORT}"],
            metadata={"port": "${PORT}", "text": "p=${PORT}"},
        )
    )
    model = config.models["m"]
    assert model.proxy == "http://127.0.0.1:5800/"
    assert model.cmd_stop == "stop 5800"
    assert model.description == "on 5800"
    assert model.env == {"PORT_COPY": "5800"}
    assert model.metadata == {"port": 5800, "text": "p=5800"}


def test_default_proxy_needs_port_in_cmd() -> None:
    with pytest.raises(ConfigError) as info:
        parse(one_model("srv --port 8080"))
    assert str(info.value) == (
        "models.m.proxy: the default proxy http://localhost:${PORT} needs ${PORT} in cmd; "
        "use ${PORT} in cmd or set proxy"
    )


def test_explicit_proxy_with_port_needs_port_in_cmd() -> None:
    with pytest.raises(ConfigError) as info:
        parse(one_model("srv --port 8080", proxy="http://127.0.0.1:${PORT}"))
    assert str(info.value) == (
        "models.m.proxy: uses ${PORT} but cmd does not; ${PORT} is only assigned through cmd"
    )


def test_port_beyond_65535_is_an_error() -> None:
    document = {
        "startPort": 65535,
        "models": {"a": {"cmd": "s --port ${PORT}"}, "b": {"cmd": "s --port ${PORT}"}},
    }
    with pytest.raises(ConfigError, match=r"^models\.b\.cmd: no port left for \$\{PORT\}"):
        parse(document)


def test_pid_is_left_for_the_process_manager_in_cmd_stop_only() -> None:
    config = parse(one_model("srv -p ${PORT}", cmdStop="kill -TERM ${PID}"))
    assert config.models["m"].cmd_stop == "kill -TERM ${PID}"
    with pytest.raises(ConfigError, match=r"^models\.m\.cmd: unknown macro '\$\{PID\}'$"):
        parse(one_model("srv -p ${PORT} ${PID}"))


def test_unknown_macro_is_an_error_naming_field() -> None:
    with pytest.raises(ConfigError) as info:
        parse(one_model("srv -p ${PORT} ${nope}"))
    assert str(info.value) == "models.m.cmd: unknown macro '${nope}'"


def test_unknown_macro_in_env_entry() -> None:
    with pytest.raises(ConfigError, match=r"^models\.m\.env\[1\]: unknown macro '\$\{x\}'$"):
        parse(one_model("srv -p ${PORT}", env=["A=1", "B=${x}"]))


def test_non_macro_dollar_text_is_left_alone() -> None:
    config = parse(one_model("sh -c 'srv -p ${PORT} $HOME ${not a macro}'"))
    assert config.models["m"].cmd == "sh -c 'srv -p 5800 $HOME ${not a macro}'"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("PORT", "'PORT' is a reserved macro name"),
        ("MODEL_ID", "'MODEL_ID' is a reserved macro name"),
        ("PID", "'PID' is a reserved macro name"),
        ("has space", "macro names may contain only letters, digits, '_' and '-'"),
        ("x" * 64, "macro names may be at most 63 characters long"),
    ],
)
def test_invalid_macro_names(name: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse({"macros": {name: "v"}, **one_model("srv -p ${PORT}")})
    assert str(info.value) == f"macros.{name}: {message}"


def test_model_macro_errors_name_the_model() -> None:
    with pytest.raises(ConfigError, match=r"^models\.m\.macros\.PORT: 'PORT' is a reserved"):
        parse(one_model("srv -p ${PORT}", macros={"PORT": 1}))


def test_self_referencing_and_empty_macros() -> None:
    with pytest.raises(ConfigError) as info:
        parse({"macros": {"a": "x ${a}", "b": None}, **one_model("srv -p ${PORT}")})
    assert str(info.value).splitlines() == [
        "macros.a: macro 'a' refers to itself",
        "macros.b: a macro value must be a string, number, boolean or mapping, not empty",
    ]


def test_scalar_macro_values_render_like_go() -> None:
    config = parse(
        {
            "macros": {"t": True, "f": False, "x": 0.7, "one": 1.0, "n": 42},
            **one_model("srv -p ${PORT} ${t} ${f} ${x} ${one} ${n}"),
        }
    )
    assert config.models["m"].cmd == "srv -p 5800 true false 0.7 1 42"


def test_mapping_macro_is_whole_value_only() -> None:
    document = {
        "macros": {"preset": {"temperature": 0.2}},
        **one_model("srv -p ${PORT}", metadata={"sampling": "${preset}"}),
    }
    assert parse(document).models["m"].metadata == {"sampling": {"temperature": 0.2}}
    bad = {"macros": {"preset": {"t": 1}}, **one_model("srv -p ${PORT} ${preset}")}
    with pytest.raises(ConfigError) as info:
        parse(bad)
    assert str(info.value) == (
        "models.m.cmd: macro 'preset' has a mapping value and can only be used as a whole value"
    )


def test_cmd_comments_and_continuations() -> None:
    cmd = "# start the server\nsrv \\\n  --port ${PORT} \\  \n  # a comment\n  -m model.gguf\n"
    config = parse(one_model(cmd))
    assert config.models["m"].cmd.split() == ["srv", "--port", "5800", "-m", "model.gguf"]


# ---------------------------------------------------------------- ${env.NAME}


def test_env_macros_everywhere() -> None:
    document = {
        "macros": {"dir": "${env.MODELS}"},
        "apiKeys": ["${env.KEY}"],
        "models": {"m": {"cmd": "srv -p ${PORT} -m ${dir}/a.gguf", "env": ["HOME=${env.HOME}"]}},
        "peers": {"p": {"proxy": "http://${env.HOST}:1", "apiKey": "${env.KEY}", "models": ["x"]}},
    }
    env = {"MODELS": "/models", "KEY": "sk-1", "HOME": "/home/u", "HOST": "box"}
    config = parse(document, env)
    assert config.models["m"].cmd == "srv -p 5800 -m /models/a.gguf"
    assert config.models["m"].env == {"HOME": "/home/u"}
    assert config.api_keys == ("sk-1",)
    assert config.peers["p"].proxy == "http://box:1"
    assert config.peers["p"].api_key == "sk-1"


def test_env_values_are_inserted_verbatim() -> None:
    # Substitution happens after YAML parsing: quotes and colons in a value
    # cannot change the document's structure.
    config = parse(one_model("srv -p ${PORT} ${env.ARGS}"), {"ARGS": "--x 'a: b' \"q\""})
    assert config.models["m"].cmd == "srv -p 5800 --x 'a: b' \"q\""


def test_missing_env_variable_names_key_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse({"models": {"m": {"cmd": "srv -p ${PORT} ${env.NOPE}"}}, "apiKeys": ["${env.NOKEY}"]})
    assert str(info.value).splitlines() == [
        "models.m.cmd: environment variable 'NOPE' is not set",
        "apiKeys[0]: environment variable 'NOKEY' is not set",
    ]


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWAPCORE_TEST_BIN", "/bin/fake")
    config = parse_config(one_model("${env.SWAPCORE_TEST_BIN} -p ${PORT}"))
    assert config.models["m"].cmd == "/bin/fake -p 5800"


def test_env_macros_in_yaml_comments_are_ignored() -> None:
    text = "# uses ${env.NOT_SET}\nmodels:\n  m:\n    cmd: srv -p ${PORT}  # ${env.NOPE}\n"
    assert load_config(text, env={}).models["m"].cmd == "srv -p 5800"


# ---------------------------------------------------------------- the functions


def test_expand_is_a_single_pass() -> None:
    assert expand("${a}", {"a": "${b}", "b": "x"}, path="p") == "${b}"
    assert expand("${a} ${zz}", {"a": 1}, path="p") == "1 ${zz}"


def test_expand_value_keeps_types_for_whole_references() -> None:
    macros = {"n": 3, "t": True}
    value = {"a": "${n}", "b": ["${t}", "x${n}"], "c": 1.5}
    assert expand_value(value, macros, path="p") == {"a": 3, "b": [True, "x3"], "c": 1.5}


def test_merge_and_resolve_order() -> None:
    merged = merge_macros([("a", "1"), ("b", "${a}2")], [("a", "9"), ("c", "${b}3")], "id")
    assert merged == [("MODEL_ID", "id"), ("a", "9"), ("b", "${a}2"), ("c", "${b}3")]
    assert resolve_macros(merged) == {"MODEL_ID": "id", "a": "9", "b": "92", "c": "923"}


def test_check_macro() -> None:
    assert check_macro("ok-name_1", "v") is None
    assert check_macro("ok", {"k": [1]}) is None
    assert check_macro("bad", [1, 2]) == (
        "a macro value must be a string, number, boolean or mapping, not list"
    )
    assert check_macro(3, "v") is not None


def test_macro_text_and_unknown_macros() -> None:
    assert macro_text(2.5) == "2.5"
    assert macro_text(1e22) == "1e+22"
    assert unknown_macros({"a": ["${x}", "${y} ${z}"], "b": 1}) == ["x", "y", "z"]


def test_clean_command() -> None:
    assert clean_command("  # only a comment\n") == ""
    assert clean_command("a \\\nb") == "a  \nb"


def test_substitute_env_walks_shared_nodes_once_and_reports_cycles() -> None:
    shared = ["${env.A}"]
    errors: list[ConfigError] = []
    result = substitute_env({"x": shared, "y": shared}, {"A": "1"}, errors)
    assert result == {"x": ["1"], "y": ["1"]}
    assert errors == []
    loop: list[Any] = []
    loop.append(loop)
    substitute_env({"k": loop}, {}, errors)
    assert [str(e) for e in errors] == ["k[0]: a YAML alias refers to its own ancestor"]
