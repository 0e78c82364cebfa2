"""``swapcore explain``: evictions and their reasons, for groups and for a swap matrix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swapcore.cli import main
from swapcore.config import demo_yaml

GROUPS = """\
models:
  a: {cmd: "srv --port ${PORT} a", aliases: [alpha]}
  b: {cmd: "srv --port ${PORT} b"}
  c: {cmd: "srv --port ${PORT} c"}
  d: {cmd: "srv --port ${PORT} d"}
  e: {cmd: "srv --port ${PORT} e"}
groups:
  pair:
    members: [a, b]
  side:
    swap: false
    exclusive: false
    members: [c]
  keep:
    swap: false
    exclusive: false
    persistent: true
    members: [d]
peers:
  far:
    proxy: http://192.0.2.1:8080
    models: [remote]
"""


@pytest.fixture
def groups(tmp_path: Path) -> str:
    path = tmp_path / "groups.yaml"
    path.write_text(GROUPS)
    return str(path)


@pytest.fixture
def matrix(tmp_path: Path) -> str:
    path = tmp_path / "matrix.yaml"
    path.write_text(demo_yaml("matrix"))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["explain", *argv])
    out, err = capsys.readouterr()
    return status, out, err


# ------------------------------------------------------------------- groups


def test_group_swap_and_exclusive(groups: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, groups, "--running", "alpha,c,d,e", "--request", "b")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "request: b, group 'pair' (swap=yes exclusive=yes persistent=no)",
        "running: a, c, d, e",
        "evict 3 of 4:",
        "  a  same group 'pair' (swap)",
        "  c  'pair' is exclusive, 'side' is not persistent",
        "  e  'pair' is exclusive, '(default)' is not persistent",
        "keep:",
        "  d  'keep' is persistent",
        "then start: b",
    ]


def test_group_not_exclusive_keeps_everything(
    groups: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, groups, "--running", "a,d", "--request", "c")
    assert status == 0
    assert out.splitlines() == [
        "request: c, group 'side' (swap=no exclusive=no persistent=no)",
        "running: a, d",
        "evict: nothing",
        "keep:",
        "  a  'side' is not exclusive",
        "  d  'side' is not exclusive",
        "then start: c",
    ]


def test_group_without_swap_keeps_its_members(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "models:\n  x: {cmd: 'srv --port ${PORT}'}\n  y: {cmd: 'srv --port ${PORT}'}\n"
        "groups:\n  both: {swap: false, members: [x, y]}\n"
    )
    status, out, _ = run(capsys, str(path), "--running", "x", "--request", "y")
    assert status == 0
    assert "  x  same group 'both', which does not swap" in out.splitlines()


def test_already_running(groups: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, groups, "--running", "a,c", "--request", "alpha")
    assert status == 0
    assert out.splitlines() == [
        "request: a (alias 'alpha'), group 'pair' (swap=yes exclusive=yes persistent=no)",
        "running: a, c",
        "a is already running: it is served at once, nothing is evicted",
    ]


def test_nothing_running(groups: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, groups, "--request", "a")
    assert status == 0
    assert out.splitlines()[1:] == ["running: nothing", "evict: nothing", "then start: a"]


def test_peer_model(groups: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, groups, "--running", "a", "--request", "far/remote")
    assert status == 0
    assert out.splitlines() == [
        "request: far/remote: served by peer 'far' (model 'remote'); "
        "forwarded, nothing local is evicted"
    ]


def test_group_json(groups: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, groups, "--running", "a,d", "--request", "b", "--json")
    assert status == 0
    assert json.loads(out) == {
        "request": "b",
        "model": "b",
        "running": ["a", "d"],
        "router": "group",
        "group": "pair",
        "flags": {"swap": True, "exclusive": True, "persistent": False},
        "evict": [{"model": "a", "group": "pair", "reason": "same group 'pair' (swap)"}],
        "keep": [{"model": "d", "group": "keep", "reason": "'keep' is persistent"}],
        "already_running": False,
    }


# ------------------------------------------------------------------- matrix


def test_matrix_cheapest_set(matrix: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(
        capsys, matrix, "--running", "gpt-4o-mini,embed-small", "--request", "llama-8b"
    )
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "request: llama-8b",
        "running: qwen-7b, embed-small",
        "set: small = (q | l) & e",
        "combination: embed-small, llama-8b",
        "evict 1 of 2 (total cost 1):",
        "  qwen-7b      cost 1   not in the chosen combination",
        "keep:",
        "  embed-small  cost 10  in the chosen combination",
        "asleep instead of stopped: qwen-7b",  # the demo's small chat models sleep
        "then start: llama-8b",
    ]


def test_matrix_big_model_evicts_all(matrix: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, matrix, "--running", "qwen-7b,text-embedding-3-small", "--request", "mistral-24b"
    )
    assert status == 0
    assert out.splitlines()[2:] == [
        "set: big = m",
        "combination: mistral-24b",
        "evict 2 of 2 (total cost 11):",
        "  qwen-7b      cost 1   not in the chosen combination",
        "  embed-small  cost 10  not in the chosen combination",
        "asleep instead of stopped: qwen-7b",
        "then start: mistral-24b",
    ]


def test_matrix_model_in_no_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "models:\n  a: {cmd: 'srv --port ${PORT}'}\n  b: {cmd: 'srv --port ${PORT}'}\n"
        "  solo: {cmd: 'srv --port ${PORT}'}\nmatrix:\n  sets:\n    ab: 'a & b'\n"
    )
    status, out, _ = run(capsys, str(path), "--running", "a,b", "--request", "solo", "--json")
    assert status == 0
    result = json.loads(out)
    assert result["in_no_set"] is True
    assert result["set"] is None
    assert result["combination"] == ["solo"]
    assert [e["model"] for e in result["evict"]] == ["a", "b"]
    assert result["total_cost"] == 2
    status, out, _ = run(capsys, str(path), "--running", "a,b", "--request", "solo")
    assert "set: none holds solo: it runs alone" in out.splitlines()
    assert "  a  cost 1  the target runs alone" in out.splitlines()


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--request", "ghost"],
            "swapcore explain: error: --request: unknown model 'ghost' "
            "(not a model id or alias in {path})",
        ),
        (
            ["--running", "a,ghost", "--request", "b"],
            "swapcore explain: error: --running: unknown model 'ghost' "
            "(not a model id or alias in {path})",
        ),
    ],
)
def test_unknown_model_is_one_line(
    argv: list[str], message: str, groups: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, groups, *argv) == (2, "", message.format(path=groups) + "\n")


def test_invalid_config_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  a: {cmd: 'srv --port ${PORT}', ttl: -3}\n")
    assert run(capsys, str(path), "--request", "a") == (
        2,
        "",
        "swapcore explain: error: models.a.ttl: must be >= 0 (or -1 to use globalTTL)\n",
    )
    status, out, err = run(capsys, str(tmp_path / "absent.yaml"), "--request", "a")
    assert (status, out) == (2, "")
    assert len(err.splitlines()) == 1


def test_request_is_required(groups: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["explain", groups])
    assert info.value.code == 2
    assert "--request" in capsys.readouterr().err


# ---------------------------------------------------- memory budget, sleep

MEMORY = """\
models:
  a: {cmd: "srv --port ${PORT} a", memory: 16GiB, sleepMode: {level: 1}, hostMemory: 16GiB}
  b: {cmd: "srv --port ${PORT} b", memory: 24GiB, sleepMode: {level: 1}, hostMemory: 40GiB}
  c: {cmd: "srv --port ${PORT} c", memory: 40GiB}
  d: {cmd: "srv --port ${PORT} d", memory: 8GiB}
swapcore:
  memory_budget: 48GiB
  host_memory_budget: 32GiB
"""


def test_memory_budget_and_sleepers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "memory.yaml"
    path.write_text(MEMORY)
    status, out, err = run(capsys, str(path), "--running", "a,b,d", "--request", "c")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "request: c, memory 40 GiB of the budget 48 GiB",
        "running: a, b, d",
        "evict 2 of 3:",
        "  a  holds 16 GiB; evicted to make room",
        "  b  holds 24 GiB; evicted to make room",
        "keep:",
        "  d  holds 8 GiB; fits beside c",
        "asleep instead of stopped: a",  # b's 40 GiB do not fit the 32 GiB host budget
        "then start: c",
    ]
    status, out, _ = run(capsys, str(path), "--running", "a,b,d", "--request", "c", "--json")
    result = json.loads(out)
    assert result["router"] == "memory" and result["sleep"] == ["a"]
    assert result["memory"] == 40 << 30 and result["budget"] == 48 << 30


# ------------------------------------------------------------------- GPUs


@pytest.fixture
def gpus(tmp_path: Path) -> str:
    path = tmp_path / "gpus.yaml"
    path.write_text(demo_yaml("gpus"))
    return str(path)


def test_placement_says_where_everything_is_and_why(
    gpus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(
        capsys, gpus, "--running", "embed-small,qwen-7b,llama-8b", "--request", "mistral-24b"
    )
    assert status == 0
    assert out.splitlines() == [
        "request: mistral-24b, memory 30 GiB",
        "devices: GPU 0 8 GiB free of 24 GiB, GPU 1 8 GiB free of 24 GiB",
        "running: embed-small, qwen-7b, llama-8b",
        "evict 1 of 3:",
        "  qwen-7b      holds 14 GiB on GPU 0; evicted to make room",
        "keep:",
        "  embed-small  holds 2 GiB on GPU 0; stays",
        "  llama-8b     holds 16 GiB on GPU 1; stays",
        "asleep instead of stopped: qwen-7b",
        "why: needs 30 GiB on one device, or over several; GPU 0 has 8 GiB free after keeping "
        "embed-small, qwen-7b, GPU 1 has 8 GiB free after keeping llama-8b; evicting qwen-7b "
        "makes room: 22 GiB on GPU 0 + 8 GiB on GPU 1",
        "then start: mistral-24b on 22 GiB on GPU 0, 8 GiB on GPU 1",
    ]


def test_placement_json_and_a_running_set_that_cannot_be(
    gpus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, gpus, "--running", "embed-small", "--request", "qwen-7b", "--json")
    result = json.loads(out)
    assert status == 0 and result["router"] == "placement" and result["evict"] == []
    assert result["placement"] == {"0": 14 * 2**30}
    assert result["free"] == {"0": 22 * 2**30, "1": 24 * 2**30}
    status, _, err = run(
        capsys, gpus, "--running", "mistral-24b,qwen-7b,llama-8b", "--request", "embed-small"
    )
    assert status == 2
    assert err.strip() == (
        "swapcore explain: error: --running: mistral-24b, qwen-7b, llama-8b cannot all be "
        "loaded at once on these devices (loading them in this order evicts qwen-7b)"
    )
