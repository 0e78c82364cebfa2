"""``swapcore simulate --replicas N``: a cluster of hosts, each running the configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swapcore.cli.main import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two_gpus"

LLAMA_SWAP_YAML = """\
models:
  qwen:
    cmd: llama-server --port ${PORT} -m qwen.gguf
    aliases: [q]
    metadata:
      swapcore: {load: 12, stop: 1}
  llama:
    cmd: llama-server --port ${PORT} -m llama.gguf
    metadata:
      swapcore: {load: 30}
  mistral:
    cmd: llama-server --port ${PORT} -m mistral.gguf
    metadata:
      swapcore: {load: 20}
groups:
  chat:
    members: [qwen, llama, mistral]
"""

RR = "round-robin:models=q,llama,mistral;rounds=4;interval=40"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["simulate", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def rows(out: str) -> dict[str, list[str]]:
    return {cells[0]: cells for cells in map(str.split, out.splitlines()) if len(cells) == 11}


def test_a_gateway_config_on_three_hosts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(LLAMA_SWAP_YAML)
    status, out, err = run(capsys, str(config), "--generate", RR, "--replicas", "3")
    assert status == 0, err
    assert "cluster: 3 replicas, policy AffinityPolicy(spill_queue=None)" in out
    table = rows(out)
    # One swap group of three models per host: alone, a round robin reloads each time;
    # on three hosts each model is loaded once, on a host of its own.
    assert table["(all)"][1:4] == ["12", "12", "3"]
    assert [table[r][3] for r in ("r0", "r1", "r2")] == ["1", "1", "1"]
    status, out, err = run(capsys, str(config), "--generate", RR)
    assert status == 0, err
    assert rows(out)["(all)"][3] == "12"


def test_the_example_on_two_hosts_with_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.json"
    status, out, err = run(
        capsys,
        str(EXAMPLE / "sim.yaml"),
        str(EXAMPLE / "trace.jsonl"),
        "--replicas",
        "2",
        "--cluster-policy",
        "affinity:spill=4",
        "--planner",
        "placement",
        "--planner",
        "placement:split=false",
        "--json",
        str(report),
    )
    assert status == 0, err
    assert "== placement ==" in out and "== placement(split=false) ==" in out
    assert out.count("policy AffinityPolicy(spill_queue=4)") == 2
    data = json.loads(report.read_text())
    assert data["replicas"] == 2
    assert [run["label"] for run in data["runs"]] == ["placement", "placement(split=false)"]
    first = data["runs"][0]
    assert set(first["replicas"]) == {"r0", "r1"}
    assert first["outcomes"]["served"] + first["outcomes"]["refused"] == len(first["routes"])
    assert {load["replica"] for load in first["timeline"]} <= {"r0", "r1"}


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status = main(["simulate", *argv])
    _, err = capsys.readouterr()
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--replicas", "0"], "--replicas: expected a whole number >= 1, got '0'"),
        (["--replicas", "three"], "--replicas: expected a whole number >= 1, got 'three'"),
        (["--cluster-policy", "affinity"], "--cluster-policy needs --replicas N"),
        (["--replicas", "2", "--cluster-policy", "random"], "unknown cluster policy"),
        (["--replicas", "2", "--cluster-policy", "affinity:spil=2"], "unknown option 'spil'"),
        (
            ["--replicas", "2", "--cluster-policy", "affinity:spill=0"],
            "spill: must be an integer >= 1",
        ),
        (["--replicas", "2", "--cluster-policy", "affinity:spill=x"], "spill: must be an integer"),
    ],
)
def test_bad_cluster_options(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    line = one_line_error(
        capsys, str(EXAMPLE / "sim.yaml"), "--generate", "round-robin:models=chat", *argv
    )
    assert expected in line
