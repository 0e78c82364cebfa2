"""MatrixSolver: the four solver rules, tie-breaks, costs and their validation."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from swapcore import ConfigError
from swapcore.matrix import MatrixSolver, SolveResult, compile_matrix


def test_solve_result_is_frozen() -> None:
    result = SolveResult(("a",), ("b",), "s", "b", 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.total_cost = 2  # type: ignore[misc]


# -- rule 1: the target is already running ---------------------------------------


def test_running_target_evicts_nothing_and_reports_a_set() -> None:
    program = compile_matrix({"small": "a", "pair": "a & (b | c)"})
    result = program.solve("a", ["c", "a"])
    assert result == SolveResult((), ("a", "c"), "pair", "a & (b | c)", 0)


def test_running_target_reports_the_full_first_combination() -> None:
    program = compile_matrix({"s": "a & (x | y) & (b | c)"})
    assert program.solve("a", ["a", "c"]).target_set == ("a", "c", "x")


def test_running_target_without_a_containing_set() -> None:
    program = compile_matrix({"s": "a & b", "t": "c"})
    assert program.solve("a", ["c", "a"]) == SolveResult((), ("a", "c"), "", "", 0)
    assert program.solve("a", ["zz", "a"]) == SolveResult((), ("a", "zz"), "", "", 0)
    assert program.solve("zz", ["zz"]) == SolveResult((), ("zz",), "", "", 0)


# -- rule 2: the target is in no set --------------------------------------------------


def test_target_in_no_set_runs_alone() -> None:
    program = compile_matrix({"s": "a & b"})
    solver = MatrixSolver(program, {"b": 4})
    assert solver.solve("z", ["b", "a", "q"]) == SolveResult(("b", "a", "q"), ("z",), "", "", 6)
    assert solver.solve("z", []) == SolveResult((), ("z",), "", "", 0)


# -- rule 3: cheapest combination -----------------------------------------------------------


def test_swap_evicts_conflicting() -> None:
    program = compile_matrix({"s_a": "a", "s_b": "b"})
    assert program.solve("b", ["a"]) == SolveResult(("a",), ("b",), "s_b", "b", 1)


def test_coexisting_models_stay() -> None:
    program = compile_matrix({"s_ab": "a & b"})
    assert program.solve("b", ["a"]) == SolveResult((), ("a", "b"), "s_ab", "a & b", 0)


def test_subset_semantics_nothing_running() -> None:
    program = compile_matrix({"s": "a & b & c"})
    assert program.solve("a", []) == SolveResult((), ("a", "b", "c"), "s", "a & b & c", 0)


def test_tie_goes_to_the_earlier_set() -> None:
    program = compile_matrix({"first": "a & b", "second": "a & c"})
    assert program.solve("a", []).set_name == "first"


def test_referenced_set_comes_first_in_ties() -> None:
    program = compile_matrix({"wide": "+narrow & (x | y)", "narrow": "a"})
    assert program.set_names == ("narrow", "wide")
    result = program.solve("a", ["q"])
    assert (result.set_name, result.target_set, result.evict) == ("narrow", ("a",), ("q",))


def test_evict_costs_steer_the_choice() -> None:
    program = compile_matrix({"a_with_c": "a & c", "a_with_b": "a & b"})
    result = program.solve("a", ["b", "c"], {"b": 10, "c": 1})
    assert result == SolveResult(("c",), ("a", "b"), "a_with_b", "a & b", 1)


def test_tie_goes_to_the_earlier_combination() -> None:
    program = compile_matrix({"pool": "(t | a | b | c)", "all": "+pool & +pool & +pool"})
    result = program.solve("t", ["a", "b", "c"])
    assert result == SolveResult(("c",), ("a", "b", "t"), "all", "+pool & +pool & +pool", 1)


def test_earlier_combination_is_not_the_projection_order() -> None:
    # Both (a, y) and (b, x) keep one running model at cost 1; (a, ...) comes first
    # although its projection ({a}) differs from the later one ({x}).
    program = compile_matrix({"s": "t & (a | b) & (x | y)"})
    result = program.solve("t", ["x", "a"])
    assert result.target_set == ("a", "t", "x")
    assert result.evict == ()
    result = program.solve("t", ["y", "b", "x"], {"x": 1, "y": 1, "b": 1})
    assert result.target_set == ("b", "t", "x")
    assert result.evict == ("y",)


def test_first_combination_among_equal_cost_projections() -> None:
    # Keeping p or q costs the same; the first combination keeping either wins.
    program = compile_matrix({"s": "t & ((z & q) | (p & w))"})
    result = program.solve("t", ["p", "q"])
    assert (result.target_set, result.evict) == (("q", "t", "z"), ("p",))


def test_shared_sub_expressions() -> None:
    # Both operands are one hash-consed node; the product still counts twice.
    program = compile_matrix({"s0": "(a|b)&(a|b)", "s1": "a"})
    assert program.solve("a", ["b"]) == SolveResult((), ("a", "b"), "s0", "(a|b)&(a|b)", 0)
    assert program.solve("b", ["a"]).target_set == ("a", "b")


def test_dominated_branch_never_wins_a_tie() -> None:
    # `t & a` alone keeps a; `t & a & b` keeps a and b: strictly better.
    program = compile_matrix({"s": "(t & a) | (t & a & b)"})
    assert program.solve("t", ["a", "b"]).target_set == ("a", "b", "t")


def test_models_outside_the_matrix_are_always_evicted() -> None:
    program = compile_matrix({"s": "t & a"})
    result = program.solve("t", ["out", "a"], {"out": 7})
    assert result == SolveResult(("out",), ("a", "t"), "s", "t & a", 7)


def test_running_is_deduplicated_and_keeps_its_order() -> None:
    program = compile_matrix({"s": "t & a"})
    result = program.solve("t", ["c", "b", "c", "a", "b"])
    assert result.evict == ("c", "b")
    assert result.total_cost == 2


def test_aliases_in_costs_and_expressions() -> None:
    program = compile_matrix(
        {"s": "t & (big | small)"},
        vars={"big": "org/big", "small": "org/small"},
        models=["t", "org/big", "org/small"],
    )
    solver = MatrixSolver(program, {"big": 9})
    assert solver.evict_costs == {"org/big": 9}
    assert solver.cost_of("org/big") == 9
    assert solver.cost_of("org/small") == 1
    result = solver.solve("t", ["org/small", "org/big"])
    assert result == SolveResult(("org/small",), ("org/big", "t"), "s", "t & (big | small)", 1)


def test_cheaper_later_set_beats_earlier_set() -> None:
    program = compile_matrix({"one": "t & a", "two": "t & (b | c) & d"})
    result = program.solve("t", ["a", "c", "d"])
    assert (result.set_name, result.evict, result.total_cost) == ("two", ("a",), 1)


def test_ten_dimensions_without_expansion() -> None:
    dims = [f"({' | '.join(f'm-{i}-{j}' for j in range(10))})" for i in range(10)]
    program = compile_matrix({"huge": " & ".join(["target", *dims])})
    assert program.combination_count("huge") == 10**10
    running = [f"m-{i}-{(3 * i) % 10}" for i in range(10)] + ["outside"]
    result = program.solve("target", running)
    assert result.evict == ("outside",)
    assert result.total_cost == 1
    assert result.target_set == tuple(sorted(["target", *running[:-1]]))
    # With half the dimensions doubly occupied, the first model of each pair stays.
    running = [f"m-{i}-{j}" for i in range(5) for j in (7, 2)]
    result = program.solve("target", running)
    assert result.evict == tuple(f"m-{i}-7" for i in range(5))
    assert result.target_set == tuple(
        sorted(["target", *(f"m-{i}-2" for i in range(5)), *(f"m-{i}-0" for i in range(5, 10))])
    )


def test_solver_is_reusable_and_pure() -> None:
    program = compile_matrix({"s": "t & (a | b)"})
    solver = MatrixSolver(program, {"a": 2})
    first = solver.solve("t", ["a", "b"])
    assert solver.solve("t", ["a", "b"]) == first
    assert first.evict == ("b",)
    assert solver.program is program
    assert "MatrixSolver" in repr(solver)


# -- evict_costs validation ------------------------------------------------------------------


@pytest.mark.parametrize("cost", [0, -1, True, False, 1.5, "2", None])
def test_costs_must_be_positive_ints(cost: Any) -> None:
    program = compile_matrix({"s": "a"})
    with pytest.raises(ConfigError) as info:
        MatrixSolver(program, {"a": cost})
    assert str(info.value) == f"evict_costs['a']: cost must be a positive integer, not {cost!r}"
    with pytest.raises(ConfigError):
        program.solve("a", [], {"a": cost})


def test_unknown_cost_key_with_known_models() -> None:
    program = compile_matrix({"s": "a"}, models=["a", "b"])
    assert MatrixSolver(program, {"b": 3}).cost_of("b") == 3
    with pytest.raises(ConfigError, match=r"^evict_costs: unknown var or model 'zz'$"):
        MatrixSolver(program, {"zz": 3})


def test_any_cost_key_without_known_models() -> None:
    program = compile_matrix({"s": "a"})
    assert MatrixSolver(program, {"elsewhere": 3}).cost_of("elsewhere") == 3


def test_alias_and_model_with_different_costs() -> None:
    program = compile_matrix({"s": "x"}, vars={"x": "real"})
    assert MatrixSolver(program, {"x": 2, "real": 2}).evict_costs == {"real": 2}
    with pytest.raises(ConfigError, match="'x' and 'real' both name model 'real'"):
        MatrixSolver(program, {"x": 2, "real": 3})


@pytest.mark.parametrize(("costs", "message"), [([("a", 1)], "mapping"), ({3: 1}, "key 3")])
def test_malformed_costs(costs: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MatrixSolver(compile_matrix({"s": "a"}), costs)
