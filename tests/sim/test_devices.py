"""The simulator's devices: configuration errors, exact per-device peaks, budgets never exceeded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swapcore import MemoryBudgetPlanner
from swapcore.errors import ConfigError
from swapcore.planners.placement import PlacementPlanner
from swapcore.sim import ModelProfile, format_comparison, format_report, simulate
from swapcore.sim.config import load_sim_config, planner_from_spec
from swapcore.sim.traces import Arrival, read_trace

GPUS = {"gpu0": 24.0, "gpu1": 24.0}
# No two of these fit whole on one 24 GB GPU, yet all three fit in 48.
MODELS = {
    "a": ModelProfile(8, 1, size=14),
    "b": ModelProfile(6, 1, size=12),
    "c": ModelProfile(12, 1, size=18),
}
SIZES = {model: 14.0 if model == "a" else 12.0 if model == "b" else 18.0 for model in "abc"}


def one_each(*models: str, gap: float = 1.0) -> list[Arrival]:
    return [Arrival(at=i * gap, model=m, service=2.0) for i, m in enumerate(models)]


# -- configuration errors ---------------------------------------------------------------


def _load_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sim.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_sim_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: ") :]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "devices: {gpu0: 24}\nmodels: {a: {load: 1, size: 8}, b: {load: 1}}\n",
            "models.b.size: required when devices are set (in the budgets' unit)",
        ),
        (
            "devices: {gpu0: 24, gpu1: 24}\n"
            "models: {a: {load: 1, size: 8}, big: {load: 1, size: 50}}\n",
            "models.big.size: 50 exceeds what all devices together can hold (48); "
            "the model could never load",
        ),
        (
            "devices: {gpu0: 24, gpu1: 0}\nmodels: {a: {load: 1, size: 8}}\n",
            "devices.gpu1: must be a finite number > 0, got 0",
        ),
        (
            "devices: {gpu0: -3}\nmodels: {a: {load: 1, size: 8}}\n",
            "devices.gpu0: must be a finite number > 0, got -3",
        ),
        (
            "devices: {gpu0: lots}\nmodels: {a: {load: 1, size: 8}}\n",
            "devices.gpu0: must be a finite number > 0, got 'lots'",
        ),
        (
            "devices: {gpu0: .inf}\nmodels: {a: {load: 1, size: 8}}\n",
            "devices.gpu0: must be a finite number > 0, got inf",
        ),
        (
            "devices: {gpu0: true}\nmodels: {a: {load: 1, size: 8}}\n",
            "devices.gpu0: must be a finite number > 0, got True",
        ),
        (
            "devices: [24, 24]\nmodels: {a: {load: 1, size: 8}}\n",
            "devices: must map at least one device to its budget",
        ),
        (
            "devices: {}\nmodels: {a: {load: 1, size: 8}}\n",
            "devices: must map at least one device to its budget",
        ),
        (
            "models: {a: {load: 1, size: 8}}\nplanner: placement\n",
            "planner: planner 'placement': the placement planner needs devices "
            "(a top-level devices: mapping of device -> budget)",
        ),
        (
            "models: {a: {load: 1, size: 8}}\nplanner: {use: placement}\n",
            "planner: the placement planner needs devices "
            "(a top-level devices: mapping of device -> budget)",
        ),
        (
            "devices: {gpu0: 24, gpu1: 24}\nmodels: {a: {load: 1, size: 30}}\n"
            "planner: {use: placement, split: false}\n",
            "planner: PlacementPlanner: sizes['a'] = 30 exceeds what any one device can hold "
            "(24); the model could never load",
        ),
        (
            "devices: {gpu0: 24}\nmodels: {a: {load: 1, size: 8}}\n"
            "planner: {use: placement, split: maybe}\n",
            "planner.split: must be true or false, got 'maybe'",
        ),
        (
            "devices: {gpu0: 24}\nmodels: {a: {load: 1, size: 8}}\n"
            "planner: {use: placement, budget: 3}\n",
            "planner.budget: unknown key (expected one of use, split, evict_costs)",
        ),
        (
            "devices: {gpu0: 24}\nmodels: {a: {load: 1, size: 8}}\n"
            "planner: 'placement:split=sometimes'\n",
            "planner: planner 'placement:split=sometimes': split must be true or false, "
            "got 'sometimes'",
        ),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    assert _load_error(tmp_path, text) == message


def test_simulate_checks_devices_too() -> None:
    trace = one_each("a")
    with pytest.raises(ConfigError, match=r"^models\.b\.size: required when devices are set"):
        simulate(
            trace,
            planner=lambda: MemoryBudgetPlanner({"a": 1}, 10),
            models={"a": ModelProfile(1, size=1), "b": ModelProfile(1)},
            devices={"0": 10},
        )
    with pytest.raises(ConfigError, match=r"^models\.a\.size: 21 exceeds what all devices"):
        simulate(
            trace,
            planner=lambda: MemoryBudgetPlanner({"a": 21}, 30),
            models={"a": ModelProfile(1, size=21)},
            devices={"0": 10, "1": 10},
        )


def test_config_devices_and_the_placement_planner(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(
        "devices: {gpu0: 24, gpu1: 24}\n"
        "models:\n"
        "  a: {load: 8, stop: 1, size: 14}\n"
        "  b: {load: 6, stop: 1, size: 12}\n"
        "  c: {load: 12, stop: 1, size: 18}\n"
        "planner: {use: placement, split: false, evict_costs: {c: 2}}\n"
    )
    config = load_sim_config(path)
    assert config.devices == GPUS
    assert config.planner.name == "placement(split=false)"
    planner = config.planner()
    assert isinstance(planner, PlacementPlanner)
    assert planner.devices == GPUS
    spread = planner_from_spec("placement", models=config.models, config=config)
    assert spread.name == "placement"
    assert planner_from_spec("placement:split=false", models=config.models, config=config).name == (
        "placement(split=false)"
    )


# -- exact peaks on a small trace -----------------------------------------------------


def test_placement_spreads_the_third_model_and_fills_both_devices() -> None:
    report = simulate(
        one_each("a", "b", "c"),
        planner=lambda: PlacementPlanner(SIZES, GPUS),
        models=MODELS,
        devices=GPUS,
    )
    # a whole on gpu0 (10 left), b whole on gpu1 (12 left), c spread: 12 on gpu1, 6 on gpu0.
    assert report.total_loads == 3
    assert dict(report.peak_devices or {}) == {"gpu0": 20.0, "gpu1": 24.0}
    assert report.peak_memory == 44.0
    assert (report.overcommits, report.split_loads) == (0, 1)
    assert dict(report.devices or {}) == GPUS


def test_placement_without_split_evicts_and_frees_the_device_first() -> None:
    report = simulate(
        one_each("a", "b", "c", gap=20.0),
        planner=lambda: PlacementPlanner(SIZES, GPUS, split=False),
        models=MODELS,
        devices=GPUS,
    )
    # c fits whole nowhere beside a and b: a (least recently used) stops, then c loads on gpu0.
    assert [(i.model, i.start, i.end) for i in report.timeline] == [
        ("a", 0.0, 41.0),
        ("b", 20.0, 55.0),
        ("c", 41.0, 55.0),
    ]
    assert dict(report.peak_devices or {}) == {"gpu0": 18.0, "gpu1": 12.0}
    assert report.peak_memory == 30.0
    assert (report.overcommits, report.split_loads) == (0, 0)


def test_one_budget_overcommits_a_device() -> None:
    report = simulate(
        one_each("a", "b", "c"),
        planner=lambda: MemoryBudgetPlanner(SIZES, 48),
        models=MODELS,
        devices=GPUS,
    )
    # All three fit the one budget of 48; the server puts c whole on gpu1 (12 left): 30 of 24.
    assert report.total_loads == 3
    assert report.peak_memory == 44.0
    assert dict(report.peak_devices or {}) == {"gpu0": 14.0, "gpu1": 30.0}
    assert (report.overcommits, report.split_loads) == (1, 0)
    text = format_report(report)
    assert "devices:   peak gpu0 14/24, gpu1 30/24 over   overcommitted loads: 1" in text
    data = json.loads(json.dumps(report.to_dict(requests=False)))
    assert data["devices"] == GPUS
    assert data["peak_devices"] == {"gpu0": 14.0, "gpu1": 30.0}
    assert (data["overcommits"], data["split_loads"], data["peak_memory"]) == (1, 0, 44.0)


def test_a_sleeping_model_frees_its_devices() -> None:
    models = {
        "a": ModelProfile(8, 1, size=14, wake=1, sleep=1),
        "b": ModelProfile(6, 1, size=20),
    }
    sizes = {"a": 14.0, "b": 20.0}
    report = simulate(
        one_each("a", "b", "a", gap=20.0),
        planner=lambda: PlacementPlanner(sizes, {"gpu0": 24.0}),
        models=models,
        devices={"gpu0": 24.0},
    )
    assert (report.total_loads, report.total_wakes, report.total_sleeps) == (2, 1, 1)
    assert dict(report.peak_devices or {}) == {"gpu0": 20.0}
    assert report.overcommits == 0


def test_no_devices_no_device_figures() -> None:
    report = simulate(
        one_each("a", "b"), planner=lambda: MemoryBudgetPlanner(SIZES, 48), models=MODELS
    )
    assert (report.devices, report.peak_devices, report.overcommits) == (None, None, 0)
    assert "devices:" not in format_report(report)
    assert report.to_dict(requests=False)["peak_devices"] is None


def test_comparison_rows() -> None:
    trace = one_each("a", "b", "c")
    runs = {
        label: simulate(trace, planner=planner, models=MODELS, devices=GPUS)
        for label, planner in (
            ("one budget", lambda: MemoryBudgetPlanner(SIZES, 48)),
            ("placement", lambda: PlacementPlanner(SIZES, GPUS)),
        )
    }
    lines = format_comparison(runs).splitlines()
    assert any(line.split() == ["peak", "memory", "44", "44"] for line in lines)
    assert any(line.split() == ["peak", "gpu1", "30/24", "over", "24/24"] for line in lines)
    assert any(line.split() == ["overcommitted", "loads", "1", "0"] for line in lines)
    assert any(line.split() == ["split", "loads", "0", "1"] for line in lines)


class _Places(MemoryBudgetPlanner):
    """A placing planner that puts every model on ``gpu0``, room or not."""

    def placement_of(self, model: str) -> dict[str, float]:
        return {"gpu0": self.sizes[model]}


def test_a_placing_planner_is_read_and_its_overcommits_counted() -> None:
    report = simulate(
        one_each("a", "b"),
        planner=lambda: _Places(SIZES, 48),
        models=MODELS,
        devices=GPUS,
    )
    assert dict(report.peak_devices or {}) == {"gpu0": 26.0, "gpu1": 0.0}
    assert report.overcommits == 1


# -- the budgets hold over random traces ----------------------------------------------


@st.composite
def workloads(draw: st.DrawFn) -> tuple[dict[str, float], dict[str, ModelProfile], bool, list]:
    budgets = draw(st.lists(st.integers(4, 30), min_size=1, max_size=3))
    devices = {f"gpu{i}": float(b) for i, b in enumerate(budgets)}
    split = draw(st.booleans())
    room = sum(budgets) if split else max(budgets)
    names = ["a", "b", "c", "d", "e"][: draw(st.integers(1, 5))]
    models = {}
    for name in names:
        sleeps = draw(st.booleans())
        models[name] = ModelProfile(
            draw(st.integers(0, 20)),
            draw(st.integers(0, 5)),
            size=float(draw(st.integers(1, room))),
            ttl=draw(st.one_of(st.none(), st.integers(1, 30))),
            wake=1.0 if sleeps else None,
            sleep=1.0 if sleeps else 0.0,
        )
    gaps = draw(st.lists(st.integers(0, 15), min_size=1, max_size=30))
    trace, at = [], 0.0
    for gap in gaps:
        at += gap
        trace.append(
            Arrival(at=at, model=draw(st.sampled_from(names)), service=draw(st.integers(0, 10)))
        )
    return devices, models, split, trace


@settings(max_examples=150, deadline=None)
@given(workloads())
def test_placement_never_takes_a_device_over_its_budget(
    workload: tuple[dict[str, float], dict[str, ModelProfile], bool, list[Arrival]],
) -> None:
    devices, models, split, trace = workload
    sizes = {m: p.size or 0.0 for m, p in models.items()}
    report = simulate(
        trace,
        planner=lambda: PlacementPlanner(sizes, devices, split=split),
        models=models,
        devices=devices,
    )
    assert report.served == len(trace)
    assert report.overcommits == 0
    assert report.peak_devices is not None
    for device, peak in report.peak_devices.items():
        assert peak <= devices[device]
    assert report.peak_memory is not None
    assert report.peak_memory <= sum(devices.values())
    if not split:
        assert report.split_loads == 0


# -- the example docs/planners.md compares ----------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two_gpus"


def test_the_two_gpu_example_gives_the_documented_figures() -> None:
    config = load_sim_config(EXAMPLE / "sim.yaml")
    trace = read_trace(EXAMPLE / "trace.jsonl")
    figures = {}
    for spec in ("memory:budget=48", "placement", "placement:split=false"):
        report = simulate(
            trace,
            planner=planner_from_spec(spec, models=config.models, config=config),
            models=config.models,
            scheduler=config.scheduler,
            devices=config.devices,
        )
        figures[spec] = (
            report.total_loads,
            report.total_stops,
            round(report.waits.mean, 1),
            round(report.waits.max, 1),
            report.rejected,
            report.peak_memory,
            dict(report.peak_devices or {}),
            report.overcommits,
            report.split_loads,
        )
    assert len(trace) == 329
    assert figures == {
        "memory:budget=48": (3, 0, 0.3, 30.0, 0, 44.0, {"gpu0": 26.0, "gpu1": 18.0}, 1, 0),
        "placement": (3, 0, 0.3, 30.0, 0, 44.0, {"gpu0": 24.0, "gpu1": 20.0}, 0, 1),
        "placement:split=false": (
            *(53, 51, 10.3, 51.5, 4, 32.0),
            {"gpu0": 18.0, "gpu1": 18.0},
            *(0, 0),
        ),
    }


# -- a gateway config with gpus: --------------------------------------------------


def test_a_gateway_config_with_gpus_simulates_its_devices(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    from swapcore.config import demo_yaml

    path = tmp_path / "gpus.yaml"
    path.write_text(demo_yaml("gpus"))
    config = load_sim_config(str(path))
    assert config.planner.name == "placement"
    assert dict(config.devices or {}) == {"0": 24.0, "1": 24.0}
    assert {m: p.size for m, p in config.models.items()} == {
        "qwen-7b": 14.0,
        "llama-8b": 16.0,
        "mistral-24b": 30.0,
        "embed-small": 2.0,
    }
    trace = [Arrival(at=float(i), model=m, service=1.0) for i, m in enumerate(config.models)]
    report = simulate(trace, planner=config.planner, models=config.models, devices=config.devices)
    # embed 2 + qwen 14 on 0, llama 16 on 1; mistral (30) sends qwen to sleep, spread 22 + 8.
    assert dict(report.peak_devices or {}) == {"0": 24.0, "1": 24.0}
    assert (report.served, report.overcommits, report.split_loads) == (4, 0, 1)


def test_gpus_read_from_the_gpus_cannot_be_simulated(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "auto.yaml"
    path.write_text("models:\n  a: {cmd: 'srv --port ${PORT}', memory: 4}\ngpus: {devices: auto}\n")
    with pytest.raises(ConfigError, match=r"gpus\.devices: auto is read from the GPUs"):
        load_sim_config(str(path))
