"""Idle TTL unloads in the simulator: the router's rules on the virtual clock."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replay_helpers import router_run

from swapcore import ConfigError, FIFOScheduler, MaxLoadedPlanner
from swapcore.sim import (
    Arrival,
    LoadInterval,
    ModelProfile,
    SimReport,
    SimScheduler,
    dominant,
    fifo,
    format_comparison,
    format_report,
    poisson_mix,
    simulate,
)
from swapcore.sim.config import load_sim_config


def run(
    trace: list[Arrival],
    models: Mapping[str, ModelProfile | float],
    n: int = 1,
    scheduler: SimScheduler | None = None,
) -> SimReport:
    """Simulate ``trace`` with ``MaxLoadedPlanner(n)``."""
    return simulate(trace, planner=lambda: MaxLoadedPlanner(n), models=models, scheduler=scheduler)


def a(at: float, model: str = "a", service: float = 1.0) -> Arrival:
    return Arrival(at, model, service)


# --------------------------------------------------------------------------- one model


def test_a_request_within_the_ttl_keeps_the_model_loaded() -> None:
    report = run([a(0), a(5)], {"a": ModelProfile(2, ttl=10)})
    assert report.total_loads == 1
    # Served 2-3 and 5-6: the timer armed at 3 is cancelled at 5, re-armed at 6.
    assert report.timeline == (LoadInterval("a", 0.0, 2.0, 16.0, 16.0),)
    assert report.usage["a"].ttl_unloads == report.ttl_unloads == 1
    assert report.makespan == 6.0


def test_an_idle_model_unloads_after_its_ttl_and_loads_again() -> None:
    report = run([a(0), a(30)], {"a": ModelProfile(2, stop=1, ttl=10)})
    assert report.total_loads == 2
    # The first load ends at served-end (3) + ttl (10), plus its stop second.
    assert report.timeline == (
        LoadInterval("a", 0.0, 2.0, 14.0, 13.0),
        LoadInterval("a", 30.0, 32.0, 44.0, 43.0),
    )
    assert [r.wait for r in report.requests] == [2.0, 2.0]
    assert report.ttl_unloads == 2
    assert report.makespan == 33.0  # the unloads after the last request do not count


def test_without_a_ttl_nothing_unloads() -> None:
    for ttl in (None, 0, 0.0):
        report = run([a(0), a(30)], {"a": ModelProfile(2, stop=1, ttl=ttl)})
        assert report.total_loads == 1 and report.ttl_unloads == 0
        assert report.timeline == (LoadInterval("a", 0.0, 2.0, 31.0, None),)


def test_the_timer_counts_from_the_last_request_in_flight() -> None:
    # Two overlapping requests: the timer starts when the second one ends.
    report = run([a(0, service=4), a(1, service=10)], {"a": ModelProfile(0, ttl=5)})
    assert report.timeline == (LoadInterval("a", 0.0, 0.0, 16.0, 16.0),)


def test_a_ttl_timer_comes_before_an_arrival_at_the_same_time() -> None:
    models: dict[str, ModelProfile | float] = {"a": ModelProfile(0, ttl=10)}
    assert run([a(0, service=0), a(10, service=0)], models).total_loads == 2
    assert run([a(0, service=0), a(9.5, service=0)], models).total_loads == 1


def test_a_request_arriving_while_the_ttl_stop_runs_is_served_by_a_fresh_load() -> None:
    # Unload at 13, stopped at 18; the request at 15 waits for the stop, then the load.
    report = run([a(0), a(15)], {"a": ModelProfile(2, stop=5, ttl=10)})
    assert report.total_loads == 2
    assert report.requests[1].started == 20.0
    assert report.timeline[0] == LoadInterval("a", 0.0, 2.0, 18.0, 13.0)


# --------------------------------------------------------------------------- several models


def test_a_ttl_unload_frees_room_for_a_queued_request() -> None:
    # b serves 1-101; a is served 3-4, idle after; c (at 5) would evict b, the
    # least recently used, which is busy: it queues. a's TTL at 14 frees a slot.
    trace = [a(0, "b", 100), a(2), a(5, "c")]
    profiles: dict[str, ModelProfile | float] = {"a": ModelProfile(1, ttl=10), "b": 1, "c": 1}
    report = run(trace, profiles, n=2)
    assert [r.started for r in report.requests] == [1.0, 3.0, 15.0]
    assert report.timeline[1] == LoadInterval("a", 2.0, 3.0, 14.0, 14.0)
    without = run(trace, {**profiles, "a": 1.0}, n=2)
    assert [r.started for r in without.requests] == [1.0, 3.0, 102.0]


def test_an_evicted_model_has_no_ttl_unload() -> None:
    # a's timer (armed as its request ends, while the swap to b evicts it) is void.
    report = run([a(0), a(0.5, "b")], {"a": ModelProfile(1, stop=2, ttl=1), "b": 5})
    assert report.ttl_unloads == 0
    assert report.timeline == (
        LoadInterval("a", 0.0, 1.0, 4.0, 2.0),
        LoadInterval("b", 4.0, 9.0, 10.0, None),
    )


def test_ttl_with_max_wait() -> None:
    # A dominant stream and a rare model with a TTL: max_wait serves the rare
    # requests; each is then evicted by the stream, so no TTL unload happens
    # except after the stream's end, and the loads are those without a TTL.
    trace = dominant("a", ["b"], duration=60, dominant_rate=1, rare_every=20, service=1, seed=1)
    trace.append(a(200, "b"))
    scheduler = fifo(max_wait=5, default_concurrency_limit=1000)
    reports = {
        ttl: run(trace, {"a": 2, "b": ModelProfile(2, ttl=ttl)}, scheduler=scheduler)
        for ttl in (None, 3.0)
    }
    plain, timed = reports[None], reports[3.0]
    assert timed.total_loads == plain.total_loads
    assert [r.started for r in timed.requests] == [r.started for r in plain.requests]
    assert timed.waits_by_model["b"].max <= 5 + 2 + 2 + 1  # max_wait + stop/load + service
    assert timed.ttl_unloads == timed.usage["b"].ttl_unloads == 1
    assert timed.timeline[-1].model == "b" and timed.timeline[-1].stop_began == 206.0  # 202 + 1 + 3
    assert "ttl unloads" in format_comparison({"none": plain, "ttl": timed})
    assert "ttl unloads: 1" in format_report(timed)
    assert "ttl unloads" not in format_report(plain)


def test_ttl_runs_are_deterministic_and_serve_everything() -> None:
    trace = poisson_mix({"a": 0.3, "b": 0.1, "c": 0.05}, duration=600, service=2, seed=3)
    models: dict[str, ModelProfile | float] = {
        "a": ModelProfile(5, 1, ttl=20),
        "b": ModelProfile(8, 1, ttl=5),
        "c": 3,
    }
    first = run(trace, models, n=2, scheduler=fifo(max_wait=30))
    assert run(trace, models, n=2, scheduler=fifo(max_wait=30)) == first
    assert first.served == len(trace) and first.ttl_unloads > 0
    assert first.to_dict()["usage"]["a"]["ttl_unloads"] == first.usage["a"].ttl_unloads


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 60), st.sampled_from("abc"), st.integers(0, 5)),
        max_size=25,
    ),
    st.lists(st.sampled_from([None, 0, 1, 4, 10]), min_size=3, max_size=3),
    st.integers(1, 2),
)
def test_loads_never_overlap_and_every_request_is_served(
    raw: list[tuple[int, str, int]], ttls: list[float | None], n: int
) -> None:
    trace = [Arrival(at, model, service) for at, model, service in raw]
    models = {m: ModelProfile(2, 1, ttl=ttl) for m, ttl in zip("abc", ttls, strict=True)}
    report = run(trace, models, n=n, scheduler=fifo(max_wait=10))
    assert report.served == len(trace)
    for model in "abc":
        loads = [i for i in report.timeline if i.model == model]
        assert all(x.end <= y.start for x, y in itertools.pairwise(loads))
        assert report.usage[model].ttl_unloads <= report.usage[model].loads
        if models[model].ttl is None:
            assert report.usage[model].ttl_unloads == 0


# --------------------------------------------------------------------------- the real router


@pytest.mark.parametrize(
    ("trace", "n"),
    [
        ([a(0), a(5)], 1),
        ([a(0), a(30)], 1),
        ([a(0), a(13.2), a(14, "b"), a(20)], 1),
        ([a(0, "b", 100), a(2), a(5, "c")], 2),
        ([a(0), a(1, "b"), a(2, "c"), a(9), a(30, "b"), a(31)], 2),
    ],
)
def test_the_simulator_matches_the_router(trace: list[Arrival], n: int) -> None:
    models = {
        "a": ModelProfile(2, 0.5, ttl=10),
        "b": ModelProfile(3, 0.5, ttl=4),
        "c": ModelProfile(1, 0.5),
    }
    loads, started = router_run(trace, models, n, FIFOScheduler)
    report = simulate(trace, planner=lambda: MaxLoadedPlanner(n), models=models)
    assert dict(report.loads_per_model) == loads
    assert [r.started for r in report.requests] == pytest.approx(started)


# --------------------------------------------------------------------------- profiles and configs


@pytest.mark.parametrize("ttl", [-1, float("inf"), float("nan"), "10", True])
def test_model_profile_validates_the_ttl(ttl: object) -> None:
    with pytest.raises(ConfigError, match=r"ModelProfile\.ttl"):
        ModelProfile(1, ttl=ttl)


def test_a_zero_ttl_is_none() -> None:
    assert ModelProfile(1, ttl=0).ttl is None
    assert ModelProfile(1, ttl=0) == ModelProfile(1)
    assert ModelProfile(1, ttl=5).ttl == 5.0


def test_the_sim_config_reads_ttl(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("models:\n  a: {load: 1, ttl: 30}\n  b: {load: 1, ttl: 0}\n  c: 1\n")
    models = load_sim_config(path).models
    assert [models[m].ttl for m in "abc"] == [30.0, None, None]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "models.a.ttl: must be a finite number >= 0, got -1"),
        ("soon", "models.a.ttl: must be a finite number >= 0, got 'soon'"),
        (".inf", "models.a.ttl: must be a finite number >= 0, got inf"),
    ],
)
def test_a_bad_sim_config_ttl_names_the_key(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(f"models:\n  a: {{load: 1, ttl: {value}}}\n")
    with pytest.raises(ConfigError) as info:
        load_sim_config(path)
    assert str(info.value) == f"{path}: {message}"


LLAMA_SWAP = """\
globalTTL: {global_ttl}
models:
  a:
    cmd: llama-server --port ${{PORT}} -m a.gguf
    ttl: {ttl}
  b:
    cmd: llama-server --port ${{PORT}} -m b.gguf
  c:
    cmd: llama-server --port ${{PORT}} -m c.gguf
    ttl: 0
"""


def test_the_llama_swap_config_reads_ttl_as_the_gateway_does(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(LLAMA_SWAP.format(global_ttl=60, ttl=5))
    config = load_sim_config(path)
    assert [config.models[m].ttl for m in "abc"] == [5.0, 60.0, None]  # b: globalTTL
    assert not any("ttl" in warning for warning in config.warnings)
    path.write_text(LLAMA_SWAP.format(global_ttl=0, ttl=-1))  # -1: globalTTL, 0: never
    assert [load_sim_config(path).models[m].ttl for m in "abc"] == [None, None, None]


def test_a_bad_llama_swap_ttl_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(LLAMA_SWAP.format(global_ttl=0, ttl=-5))
    with pytest.raises(ConfigError, match="models\\.a\\.ttl: must be >= 0"):
        load_sim_config(path)
