"""``swapcore simulate``: tables, comparisons, JSON, pictures and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swapcore.cli.main import main

SIM_YAML = """\
models:
  a: {load: 10, stop: 1, size: 8}
  b: {load: 20, size: 16}
  c: {load: 5, size: 4}
planner: max-loaded
scheduler: {use: fifo, max_wait: 30}
"""

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
  embed:
    cmd: llama-server --port ${PORT} -m embed.gguf
groups:
  chat:
    members: [qwen, llama]
  always:
    members: [embed]
    persistent: true
    exclusive: false
"""

RR = "round-robin:models=a,b,c;rounds=4"


@pytest.fixture
def sim(tmp_path: Path) -> Path:
    path = tmp_path / "sim.yaml"
    path.write_text(SIM_YAML)
    return path


def write_trace(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["simulate", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_prints_the_report_table(sim: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, str(sim), "--generate", RR)
    assert status == 0, err
    assert f"trace:  {RR}: 12 requests over 11.0 s" in out
    assert "scheduler: fifo(max_wait=30)" in out
    assert "planner:   MaxLoadedPlanner(1)" in out
    total = next(line for line in out.splitlines() if line.startswith("(all)"))
    assert total.split()[1:4] == ["12", "12", "3"]
    assert "peak memory: 16" in out


def test_reads_a_jsonl_trace(sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(
        tmp_path / "t.jsonl",
        ['{"at": 0, "model": "a", "service": 1}', '{"at": 1, "model": "zzz", "service": 1}'],
    )
    status, out, _ = run(capsys, str(sim), str(trace))
    assert status == 0
    assert "requests:  1 served, 1 not found" in out


def test_compare_runs_schedulers_side_by_side(
    sim: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(
        capsys,
        str(sim),
        "--generate",
        RR,
        "--compare",
        "fifo,arrival,cost-aware,fifo:max_wait=none",
    )
    assert status == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if "arrival" in line)
    # fifo and cost-aware inherit the config's max_wait; arrival order has none
    assert header.split() == ["fifo(max_wait=30)", "arrival", "cost-aware(max_wait=30)", "fifo"]
    loads = next(line for line in lines if line.startswith("loads"))
    assert loads.split() == ["loads", "3", "12", "3", "3"]


def test_planners_multiply_the_runs(sim: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys,
        str(sim),
        "--generate",
        RR,
        "--planner",
        "max-loaded:n=1",
        "--planner",
        "memory:budget=24",
    )
    assert status == 0
    header = next(line for line in out.splitlines() if "max-loaded" in line)
    assert header.split() == ["max-loaded(n=1)", "memory(budget=24)"]


def test_json_writes_every_run(
    sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "report.json"
    status, _, _ = run(
        capsys, str(sim), "--generate", RR, "--compare", "fifo,arrival", "--json", str(target)
    )
    assert status == 0
    data = json.loads(target.read_text())
    assert data["trace"] == RR
    assert [r["label"] for r in data["runs"]] == ["fifo(max_wait=30)", "arrival"]
    assert [r["total_loads"] for r in data["runs"]] == [3, 12]
    assert len(data["runs"][0]["requests"]) == 12


def test_plot_writes_a_png(sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "timeline.png"
    status, _, err = run(
        capsys,
        str(sim),
        "--generate",
        RR,
        "--compare",
        "fifo,arrival",
        "--plot",
        str(target),
        "--plot-range",
        "0:60",
        "--plot-size",
        "9x4",
    )
    assert status == 0, err
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (900, 400)
    assert 1_000 < len(data) < 200_000


def test_save_trace_round_trips(
    sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "saved.jsonl"
    run(capsys, str(sim), "--generate", RR, "--save-trace", str(saved))
    first = capsys.readouterr()
    status, out, _ = run(capsys, str(sim), str(saved))
    assert status == 0
    assert "(all)" in out and first is not None
    assert len(saved.read_text().splitlines()) == 12


def test_llama_swap_config_with_profiles_aliases_and_an_assumed_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(LLAMA_SWAP_YAML)
    status, out, err = run(
        capsys, str(config), "--generate", "round-robin:models=q,llama,embed;rounds=2"
    )
    assert status == 0, err
    assert "note: assumed load 10 s for embed" in err
    assert "(llama-swap; 3 models)" in out
    rows = {cells[0]: cells for cells in map(str.split, out.splitlines()) if len(cells) == 11}
    assert rows["qwen"][1:4] == ["2", "2", "1"]  # the alias q resolved to qwen
    assert rows["qwen"][-3] == "12.0" and rows["embed"][-3] == "10.0"  # seconds loading


def test_load_overrides(sim: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_each = "round-robin:models=a,b,c;rounds=1"
    status, out, _ = run(
        capsys, str(sim), "--generate", one_each, "--load", "a=1,b=2", "--load", "c=3"
    )
    assert status == 0
    total = next(line for line in out.splitlines() if line.startswith("(all)"))
    assert total.split()[-3] == "6.0"  # 1 + 2 + 3 seconds of loading


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status = main(["simulate", *argv])
    _, err = capsys.readouterr()
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_bad_trace_line_names_file_and_line(
    sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_trace(
        tmp_path / "bad.jsonl",
        ['{"at": 0, "model": "a", "service": 1}', '{"at": 1, "model": "a", "service": -1}'],
    )
    line = one_line_error(capsys, str(sim), str(trace))
    assert f"{trace}:2:" in line and '"service"' in line


def test_bad_config_key_names_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text("models:\n  a: {load: fast}\n")
    line = one_line_error(capsys, str(config), "--generate", "round-robin:models=a")
    assert line.startswith("swapcore simulate: error: ")
    assert f"{config}: models.a.load:" in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models:\n  a: {load: 1, colour: red}\n", "models.a.colour: unknown key"),
        ("models:\n  a: 1\nplanner: {use: lru}\n", "planner.use:"),
        ("models:\n  a: 1\nplanner: {use: memory, budget: 4}\n", "needs a size for a"),
        ("models:\n  a: 1\nscheduler: {use: fifo, max_wait: -1}\n", "scheduler.max_wait"),
        ("models:\n  a: 1\nscheduler: {use: arrival, max_wait: 5}\n", "unknown option 'max_wait'"),
        ("models: {}\n", "models: must name at least one model"),
        ("- a\n", "must be a mapping"),
        ("models: [a, b\n", "line 2, column 1"),
    ],
)
def test_bad_sim_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text(text)
    line = one_line_error(capsys, str(config), "--generate", "round-robin:models=a")
    assert expected in line
    assert str(config) in line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--compare", "fifo,lifo"], "unknown scheduler"),
        (["--compare", "fifo:max_wiat=3"], "unknown option 'max_wiat'"),
        (["--compare", "fifo,fifo"], "given twice"),
        (["--scheduler", "fifo", "--compare", "arrival"], "exclusive"),
        (["--planner", "memory"], "budget=<size> is required"),
        (["--planner", "matrix"], "use config"),
        (["--load", "a"], "--load: expected MODEL=SECONDS"),
        (["--load", "zz=3"], "unknown model 'zz'"),
        (["--plot-range", "5:1"], "--plot-range"),
        (["--plot-size", "9"], "--plot-size"),
    ],
)
def test_bad_options(
    sim: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    line = one_line_error(capsys, str(sim), "--generate", RR, *argv)
    assert expected in line


def test_bad_generator_and_missing_files(
    sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "unknown option 'modelz'" in one_line_error(
        capsys, str(sim), "--generate", "round-robin:modelz=a"
    )
    assert "unknown generator" in one_line_error(capsys, str(sim), "--generate", "zipf:n=3")
    assert "exactly one" in one_line_error(capsys, str(sim))
    assert "nope.jsonl" in one_line_error(capsys, str(sim), str(tmp_path / "nope.jsonl"))
    assert "missing.yaml" in one_line_error(capsys, str(tmp_path / "missing.yaml"), "x.jsonl")


def test_plot_without_matplotlib_is_a_one_line_error(
    sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.collections", None)
    line = one_line_error(capsys, str(sim), "--generate", RR, "--plot", str(tmp_path / "x.png"))
    assert "swapcore[plot]" in line
