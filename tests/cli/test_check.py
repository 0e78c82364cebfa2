"""``swapcore check``: summaries of valid configs, warnings, one line per error, exit codes."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from swapcore.cli import main
from swapcore.config import demo_yaml

DATA = Path(__file__).parents[1] / "config" / "data"
LLAMA_SWAP_EXAMPLE = DATA / "llama-swap-config-example.yaml"
EXAMPLE_ENV = {
    "HOME": "/home/tester",
    "API_KEY_1": "sk-one",
    "API_KEY_2": "sk-two",
    "OPENROUTER_API_KEY": "or-key",
}

GROUPS = """\
startPort: 7000
models:
  a:
    cmd: srv --port ${PORT} -m a
    aliases: [alpha]
  b:
    cmd: srv --port ${PORT} -m b
    ttl: 30
  c:
    cmd: srv -m c
    proxy: http://127.0.0.1:9999
    cmdStop: kill ${PID}
    unlisted: true
groups:
  pair:
    swap: true
    exclusive: true
    members: [a, b]
  side:
    swap: false
    exclusive: false
    persistent: true
    members: [c]
hooks:
  on_startup:
    preload: [alpha]
"""

MATRIX = """\
models:
  q: {cmd: "srv --port ${PORT} q"}
  l: {cmd: "srv --port ${PORT} l"}
  e: {cmd: "srv --port ${PORT} e"}
  big: {cmd: "srv --port ${PORT} big"}
matrix:
  vars: {emb: e}
  evict_costs: {emb: 10}
  sets:
    small: "(q | l) & emb"
    duo: "q & l"
    alone: "big"
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["check", *argv])
    out, err = capsys.readouterr()
    return status, out, err


# ------------------------------------------------------------------- valid configs


def test_groups_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GROUPS)
    status, out, err = run(capsys, path)
    assert status == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == f"{path}: valid: 3 models, router group, 0 warnings"
    assert "  a  port 7000  proxy http://localhost:7000" in lines
    assert "     cmd: srv --port 7000 -m a" in lines
    assert "  c  port -  proxy http://127.0.0.1:9999" in lines
    assert "     cmdStop: kill ${PID}" in lines
    assert any(line.strip().startswith("check /health; aliases alpha; ttl never") for line in lines)
    assert "ttl 30 s" in out
    assert "unlisted" in out
    assert "  pair  swap=yes exclusive=yes persistent=no   members: a, b" in lines
    assert "  side  swap=no  exclusive=no  persistent=yes  members: c" in lines
    assert not any(line.startswith("  (default)") for line in lines)
    assert "aliases: alpha -> a" in lines
    assert "peers: none" in lines
    assert "preload: a" in lines
    assert (
        "scheduler: fifo, max_wait unbounded, default concurrency 10, start_retries 1, "
        "priority none"
    ) in lines
    assert lines[-1] == "warnings: none"
    defaults = (
        "     timeouts: connect 30 s, responseHeader none, read 600 s, keepalive 30 s, "
        "tlsHandshake 10 s, idleConn 90 s, expectContinue 1 s"
    )
    assert lines.count(defaults) == 3  # one per model


def test_timeouts_of_models_and_peers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = """\
    models:
      a:
        cmd: srv --port ${PORT}
        timeouts: {connect: 5, responseHeader: 120, read: 0, tlsHandshake: 2.5}
    peers:
      far:
        proxy: https://far.example
        models: [m]
        timeouts: {responseHeader: 0}
    swapcore:
      start_retries: 3
    """
    status, out, err = run(capsys, write(tmp_path, text))
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert (
        "     timeouts: connect 5 s, responseHeader 120 s, read none, keepalive 30 s, "
        "tlsHandshake 2.5 s, idleConn 90 s, expectContinue 1 s"
    ) in lines
    assert lines[lines.index("  far: https://far.example; models: m") + 1] == (
        "    timeouts: connect 30 s, responseHeader none, read 600 s, keepalive 30 s, "
        "tlsHandshake 10 s, idleConn 90 s, expectContinue 1 s"
    )
    assert "start_retries 3" in out
    status, out, _ = run(capsys, write(tmp_path, text), "--json")
    summary = json.loads(out)
    assert summary["models"][0]["timeouts"]["response_header"] == 120
    assert summary["models"][0]["timeouts"]["read"] is None
    assert summary["peers"][0]["timeouts"]["response_header"] is None
    assert summary["settings"]["start_retries"] == 3


def test_matrix_summary_counts_combinations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, write(tmp_path, MATRIX))
    assert status == 0
    lines = out.splitlines()
    assert lines[0].endswith("valid: 4 models, router matrix, 0 warnings")
    assert "matrix (3 sets, 4 models):" in lines
    assert "  small  (q | l) & emb  ->  2 combinations" in lines
    assert "  duo    q & l  ->  1 combination" in lines
    assert "  alone  big  ->  1 combination" in lines
    assert "  vars: emb=e" in lines
    assert "  evict costs: emb=10" in lines


def test_huge_matrix_is_counted_without_expanding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = [f"m{i}" for i in range(40)]
    models = "\n".join(f"  {n}: {{cmd: 'srv --port ${{PORT}} {n}'}}" for n in names)
    pairs = " & ".join(f"({names[2 * i]} | {names[2 * i + 1]})" for i in range(20))
    text = f'models:\n{models}\nmatrix:\n  sets:\n    wide: "{pairs}"\n'
    status, out, _ = run(capsys, write(tmp_path, text))
    assert status == 0
    assert "more than 10,000 combinations (at most 1,048,576)" in out


def test_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, write(tmp_path, GROUPS), "--json")
    assert status == 0
    summary = json.loads(out)
    assert summary["valid"] is True
    assert [m["id"] for m in summary["models"]] == ["a", "b", "c"]
    assert summary["models"][0]["cmd"] == "srv --port 7000 -m a"
    assert summary["models"][2]["cmd_stop"] == "kill ${PID}"
    assert [g["name"] for g in summary["groups"]] == ["pair", "side"]
    assert summary["aliases"] == {"alpha": "a"}
    assert summary["preload"] == ["a"]
    assert summary["warnings"] == []


def test_json_matrix_has_bounds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, write(tmp_path, MATRIX), "--json")
    assert status == 0
    sets = json.loads(out)["matrix"]["sets"]
    assert [(s["name"], s["combinations"], s["combinations_bound"]) for s in sets] == [
        ("small", 2, 2),
        ("duo", 1, 1),
        ("alone", 1, 1),
    ]


@pytest.mark.parametrize("variant", ["groups", "matrix"])
def test_demo_configs_are_valid(
    variant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, write(tmp_path, demo_yaml(variant)))  # type: ignore[arg-type]
    assert (status, err) == (0, "")
    assert "valid: 4 models" in out.splitlines()[0]


def test_warnings_are_printed_and_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = GROUPS + "logLevel: debug\ncolour: blue\n"
    status, out, err = run(capsys, write(tmp_path, text))
    assert (status, err) == (0, "")
    assert out.splitlines()[0].endswith("router group, 2 warnings")
    assert out.splitlines()[-3:] == [
        "warnings (2):",
        "  logLevel: not supported by swapcore, ignored",
        "  colour: unknown key, ignored",
    ]


# ------------------------------------------------------------- llama-swap's example


def test_llama_swap_example_is_accepted_with_warnings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)
    status, out, err = run(capsys, str(LLAMA_SWAP_EXAMPLE))
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].endswith("valid: 3 models, router group, 12 warnings")
    warnings = lines[lines.index("warnings (12):") + 1 :]
    assert warnings == [
        "  logLevel: not supported by swapcore, ignored",
        "  logTimeFormat: not supported by swapcore, ignored",
        "  logToStdout: not supported by swapcore, ignored",
        "  metricsMaxInMemory: not supported by swapcore, ignored",
        "  captureBuffer: not supported by swapcore, ignored",
        "  models.chat-8b.aliases[1].name: not supported by swapcore, ignored",
        "  models.chat-8b.aliases[1].unlisted: not supported by swapcore, ignored",
        "  groups.together.members[1]: 'undefined-a' is not a defined model, ignored",
        "  groups.together.members[2]: 'undefined-b' is not a defined model, ignored",
        "  groups.pinned.members[0]: 'pinned-one' is not a defined model, ignored",
        "  groups.pinned.members[1]: 'pinned-two' is not a defined model, ignored",
        "  hooks.on_startup.preload[0]: 'chat' is not a defined model, ignored",
    ]
    assert "     cmd: /opt/llama/bin/llama-server-b4000 --port 12000" in out
    # setParamsByID names are aliases too, as in llama-swap.
    assert (
        "aliases: gpt-4o-mini -> chat-8b, gpt-3.5-turbo -> chat-8b, chat-8b:think -> chat-8b"
        in lines
    )
    assert "preload: chat-8b" in lines
    # Filters show the parameters they name, never the values.
    assert (
        "filters: strip temperature, top_p; set temperature; "
        "set for chat-8b:think: chat_template_kwargs"
    ) in out
    assert "    filters: strip top_p; set provider" in lines
    assert "  together  swap=no  exclusive=no  persistent=no   members: container-coder" in lines


def test_llama_swap_example_needs_its_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("API_KEY_2")
    status, out, err = run(capsys, str(LLAMA_SWAP_EXAMPLE))
    assert (status, out) == (2, "")
    assert err.splitlines() == [
        "swapcore check: error: apiKeys[3]: environment variable 'API_KEY_2' is not set"
    ]


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "models:\n  a:\n    cmd: srv --port ${PORT}\n    ttl: -5\n",
            "models.a.ttl: must be >= 0 (or -1 to use globalTTL)",
        ),
        ("models:\n  a: {cmd: srv, proxy: ftp://x}\n", "models.a.proxy: must be an http:// or "),
        ("models:\n  a:\n    proxy: http://127.0.0.1:1\n", "models.a.cmd: required"),
        (
            "models:\n  a: {cmd: 'srv ${nope}', proxy: 'http://h:1'}\n",
            "models.a.cmd: unknown macro",
        ),
        ("logLevel: info\n", "models: at least one model is required"),
        ("- a\n- b\n", "the top level must be a mapping of settings, got a list"),
        (
            "models:\n  a: {cmd: 'srv --port ${PORT}'}\ngroups:\n  g: {members: [a]}\n"
            "  h: {members: [a]}\n",
            "groups.h.members[0]: model 'a' is already in group 'g'; "
            "a model can be in only one group",
        ),
        (
            "models:\n  a: {cmd: 'srv --port ${PORT}'}\nmatrix:\n  sets:\n    s: 'a &'\n",
            "matrix.sets.s: ",
        ),
        (
            "models:\n  a: {cmd: 'srv --port ${PORT} \"unclosed'}\n",
            "models.a.cmd: cannot be split into arguments: No closing quotation",
        ),
        ("models:\n  a: {cmd: 123}\n", "models.a.cmd: must be a string, got a number"),
        (
            'models:\n  "a\\tb": {cmd: "srv --port ${PORT}"}\n',
            "models: model id 'a\\tb' contains a control character U+0009",
        ),
        ("x: " + "[" * 1000 + "]" * 1000 + "\n", "nested more than 100 levels deep"),
        ("models: [\n", "line "),
    ],
)
def test_each_error_is_one_line(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, text)
    status, out, err = run(capsys, path)
    assert status == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("swapcore check: error: ")
    assert message in err
    assert "Traceback" not in err


def test_alias_bomb_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["models:", "  a: {cmd: 'srv --port ${PORT}'}", "lol0: &l0 [lol]"]
    lines += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = write(tmp_path, "\n".join(lines) + "\n", "bomb.yaml")
    status, out, err = run(capsys, path)
    assert (status, out) == (2, "")
    assert err == (
        f"swapcore check: error: {path}: line 8: the document expands to more than 100,000 "
        "values (each use of a YAML alias counts the whole value it names)\n"
    )


def test_shared_port_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = """\
    models:
      a: {cmd: run-a, proxy: "http://127.0.0.1:9000"}
      b: {cmd: run-b, proxy: "http://localhost:9000"}
    groups:
      free: {members: [a, b], swap: false}
    """
    status, out, err = run(capsys, write(tmp_path, text))
    assert (status, out) == (2, "")
    assert err.splitlines() == [
        "swapcore check: error: models.b.proxy: localhost:9000 is also the upstream of "
        "models.a.proxy, and the groups let both models run at once; put them in one group "
        "with swap: true, or give each model its own port"
    ]


def test_exact_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "models:\n  a:\n    cmd: srv --port ${PORT}\n    ttl: -5\n")
    assert run(capsys, path) == (
        2,
        "",
        "swapcore check: error: models.a.ttl: must be >= 0 (or -1 to use globalTTL)\n",
    )
    empty = write(tmp_path, "# nothing\n", "empty.yaml")
    assert run(capsys, empty) == (
        2,
        "",
        f"swapcore check: error: {empty}: the configuration is empty\n",
    )


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, str(tmp_path / "absent.yaml"))
    assert (status, out) == (2, "")
    assert err.startswith(f"swapcore check: error: {tmp_path / 'absent.yaml'}: ")
    assert len(err.splitlines()) == 1


def test_several_errors_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = """\
    startPort: zero
    models:
      a:
        cmd: srv --port ${PORT}
        ttl: -5
      b:
        cmd: srv --port ${PORT}
        concurrencyLimit: many
    """
    status, out, err = run(capsys, write(tmp_path, text))
    assert (status, out) == (2, "")
    assert err.splitlines() == [
        "swapcore check: error: startPort: must be an integer, got a string",
        "swapcore check: error: models.a.ttl: must be >= 0 (or -1 to use globalTTL)",
        "swapcore check: error: models.b.concurrencyLimit: must be an integer, got a string",
    ]


def test_json_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "models:\n  a:\n    cmd: srv --port ${PORT}\n    ttl: -5\n")
    status, out, err = run(capsys, path, "--json")
    assert status == 2
    assert json.loads(out) == {
        "valid": False,
        "source": path,
        "errors": ["models.a.ttl: must be >= 0 (or -1 to use globalTTL)"],
    }
    assert err.startswith("swapcore check: error: models.a.ttl")


def test_no_arguments_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check"])
    assert info.value.code == 2
    assert "CONFIG" in capsys.readouterr().err


def test_missing_pyyaml_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, GROUPS)
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if the config extra were missing
    assert run(capsys, path) == (
        2,
        "",
        "swapcore check: error: reading YAML configurations needs PyYAML: "
        "pip install 'swapcore[config]'\n",
    )


def test_memory_router_and_residency_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """\
models:
  a:
    cmd: srv --port ${PORT}
    memory: 16GiB
    sleepMode: {level: 1}
    hostMemory: 1.5TiB
    swapCosts: {load: 30, wake: 2.5}
  b: {cmd: "srv --port ${PORT}", memory: 512MiB}
swapcore:
  memory_budget: 48GiB
  host_memory_budget: 2TiB
  costs_file: costs.json
"""
    path = write(tmp_path, text)
    status, out, err = run(capsys, path)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"{path}: valid: 2 models, router memory, 0 warnings"
    assert (
        "     sleeps at level 1 (/sleep?level={level}, /wake_up); host memory 1.5 TiB; "
        "memory 16 GiB; swap costs load 30 s, wake 2.5 s"
    ) in lines
    assert "     memory 512 MiB" in lines
    assert lines[lines.index("memory budget 48 GiB:") + 1 :][:2] == ["  a  16 GiB", "  b  512 MiB"]
    costs = tmp_path / "costs.json"
    assert f"residency: host_memory_budget 2 TiB, costs_file {costs}" in lines
    status, out, _ = run(capsys, path, "--json")
    summary = json.loads(out)
    assert summary["memory"] == {"budget": 48 << 30, "sizes": {"a": 16 << 30, "b": 512 << 20}}
    assert summary["settings"]["costs_file"] == str(costs)


def test_unsupported_policy_keys_fail_unless_allowed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("profiles: {}\nmodels:\n  m:\n    cmd: srv --port ${PORT}\n")
    status, out, err = run(capsys, str(path))
    assert (status, out) == (2, "")
    assert err.startswith("swapcore check: error: profiles: not supported by swapcore (")
    status, out, err = run(capsys, str(path), "--allow-unsupported")
    assert (status, err) == (0, "")
    assert "profiles: not supported by swapcore" in out and "ignored (allow_unsupported)" in out
