"""MatrixPlanner: silent, pure eviction_for; one INFO line per real swap."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swapcore import MatrixPlanner, MatrixSolver, SwapPlanner, compile_matrix
from swapcore.testing.strategies import MatrixSpec, matrix_configs


@pytest.fixture
def planner() -> MatrixPlanner:
    program = compile_matrix(
        {"creative": "a & (b | c)", "coding": "x & y"},
    )
    return MatrixPlanner(MatrixSolver(program, {"b": 3}))


def test_is_a_swap_planner(planner: MatrixPlanner) -> None:
    assert isinstance(planner, SwapPlanner)
    assert isinstance(planner.solver, MatrixSolver)
    assert "MatrixPlanner" in repr(planner)


def test_eviction_for_follows_the_solver(planner: MatrixPlanner) -> None:
    assert planner.eviction_for("c", ["x", "a"]) == ("x",)
    assert planner.eviction_for("b", ["a", "c"]) == ("c",)
    assert planner.eviction_for("x", ["a", "y"]) == ("a",)
    assert planner.eviction_for("zz", ["a", "y"]) == ("a", "y")
    assert planner.eviction_for("a", ["a", "x"]) == ()
    assert planner.decide("c", ["x", "a"]) == planner.solver.solve("c", ["x", "a"])


def test_eviction_for_never_logs(planner: MatrixPlanner, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        planner.eviction_for("c", ["x", "a"])
        planner.eviction_for("zz", ["a"])
    assert caplog.records == []


def test_on_swap_start_logs_one_info_line(
    planner: MatrixPlanner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="swapcore.matrix")
    planner.eviction_for("c", ["x", "a"])
    planner.on_swap_start("c", ["x", "a"])
    assert [(r.name, r.levelno) for r in caplog.records] == [("swapcore.matrix", logging.INFO)]
    assert caplog.records[0].getMessage() == (
        "swap to 'c': set 'creative' dsl='a & (b | c)' evict=['x'] cost=1"
    )


def test_on_swap_start_for_a_model_in_no_set(
    planner: MatrixPlanner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="swapcore.matrix")
    planner.on_swap_start("zz", ["a", "b"])
    assert [r.getMessage() for r in caplog.records] == [
        "swap to 'zz': in no set, runs alone evict=['a', 'b'] cost=4"
    ]


def test_on_swap_start_is_quiet_when_info_is_off(
    planner: MatrixPlanner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="swapcore.matrix")
    planner.on_swap_start("c", ["x", "a"])
    assert caplog.records == []


def test_cache_stays_correct_past_its_size(planner: MatrixPlanner) -> None:
    queries = [("c", [f"m{i}", "a"]) for i in range(600)]
    for _ in range(2):
        for target, running in queries:
            assert planner.eviction_for(target, running) == (running[0],)
    # The running order is part of the key: a different order is a new answer.
    assert planner.eviction_for("x", ["b", "a"]) == ("b", "a")
    assert planner.eviction_for("x", ["a", "b"]) == ("a", "b")


@st.composite
def planner_queries(draw: st.DrawFn) -> tuple[MatrixSpec, str, list[str]]:
    spec = draw(matrix_configs())
    pool = [*spec.models, "outside"]
    target = draw(st.sampled_from(pool))
    running = draw(st.lists(st.sampled_from(pool), max_size=7))
    return spec, target, running


@given(planner_queries())
def test_eviction_is_a_subset_of_running_without_the_target(
    case: tuple[MatrixSpec, str, list[str]],
) -> None:
    spec, target, running = case
    planner = MatrixPlanner(spec.solver())
    evict = planner.eviction_for(target, running)
    assert set(evict) <= set(running)
    assert target not in evict
    assert planner.eviction_for(target, running) == evict
