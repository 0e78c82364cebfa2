"""compile_matrix: inputs, resolution, references, tie-break order and inspection."""

from __future__ import annotations

from typing import Any

import pytest

from swapcore import ConfigError, MatrixSyntaxError
from swapcore.matrix import MAX_DEPTH, MatrixProgram, compile_matrix


def combos(program: MatrixProgram, name: str) -> list[list[str]]:
    return [sorted(c) for c in program.combinations(name)]


# -- meaning ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(a | b) & (c | d)", [["a", "c"], ["a", "d"], ["b", "c"], ["b", "d"]]),
        ("a | b & c", [["a"], ["b", "c"]]),
        ("a & a", [["a"]]),
        ("a | a", [["a"]]),
        ("(a | b) & (a | b)", [["a"], ["a", "b"], ["b"]]),
        (
            "a & (b | c) & (d | e)",
            [["a", "b", "d"], ["a", "b", "e"], ["a", "c", "d"], ["a", "c", "e"]],
        ),
        ("(a & b) & c", [["a", "b", "c"]]),
        ("a | (b | c)", [["a"], ["b"], ["c"]]),
    ],
)
def test_combinations_meaning_and_order(text: str, expected: list[list[str]]) -> None:
    assert combos(compile_matrix({"s": text}), "s") == expected


def test_combinations_are_lazy() -> None:
    text = " & ".join(f"(m{i}a | m{i}b)" for i in range(40))  # 2**40 combinations
    program = compile_matrix({"big": text})
    first = next(program.combinations("big"))
    assert first == frozenset(f"m{i}a" for i in range(40))
    assert program.combination_count("big") == 2**40


def test_combination_count() -> None:
    program = compile_matrix(
        {
            "s": "(a | b) & (c | d | e)",
            "t": "a & a",
            "u": "a | a",
            "v": "+s | x",
            "w": "(a|b)&(a|b)",
        }
    )
    assert program.combination_count("s") == 6
    assert program.combination_count("t") == 1
    assert program.combination_count("u") == 2  # an upper bound: one distinct combination
    assert program.combination_count("u", exact=True) == 1
    assert program.combination_count("v") == 7
    assert program.combination_count("w") == 4
    assert program.combination_count("w", exact=True) == 3


def test_references_inline_the_other_set() -> None:
    program = compile_matrix({"pair": "+base & (x | y)", "base": "a | b"})
    assert combos(program, "pair") == [["a", "x"], ["a", "y"], ["b", "x"], ["b", "y"]]
    assert program.set_models("pair") == {"a", "b", "x", "y"}


def test_pairs_keep_definition_order() -> None:
    program = compile_matrix([("z", "a"), ("y", "b"), ("x", "c")])
    assert program.set_names == ("z", "y", "x")
    assert program.expression("y") == "b"


def test_empty_program() -> None:
    program = compile_matrix({})
    assert program.set_names == ()
    assert program.models == frozenset()
    assert program.solve("a", ["b"]).evict == ("b",)


# -- tie-break order ----------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "order"),
    [
        ({"a": "x", "b": "y", "c": "z"}, ("a", "b", "c")),
        ({"a": "+c & x", "b": "y", "c": "z"}, ("c", "a", "b")),
        ({"a": "+c & +b", "b": "y", "c": "z"}, ("c", "b", "a")),
        ({"a": "x", "b": "+d", "c": "y", "d": "+e", "e": "z"}, ("a", "e", "d", "b", "c")),
        ({"a": "+b | +c", "b": "+c", "c": "z"}, ("c", "b", "a")),
        ({"p": "+q & +q", "q": "z", "r": "+q"}, ("q", "p", "r")),
    ],
)
def test_tie_break_order(sets: dict[str, str], order: tuple[str, ...]) -> None:
    assert compile_matrix(sets).set_names == order


# -- vars and models ----------------------------------------------------------


def test_vars_resolve_to_models() -> None:
    program = compile_matrix(
        {"s": "big & (small | tiny)"},
        vars={"big": "org/Big-70B:q4", "small": "org/small"},
        models=["org/Big-70B:q4", "org/small", "tiny"],
    )
    assert program.models == {"org/Big-70B:q4", "org/small", "tiny"}
    assert combos(program, "s") == [["org/Big-70B:q4", "org/small"], ["org/Big-70B:q4", "tiny"]]
    assert dict(program.vars) == {"big": "org/Big-70B:q4", "small": "org/small"}
    assert program.known_models == {"org/Big-70B:q4", "org/small", "tiny"}


def test_alias_wins_over_a_same_named_model() -> None:
    program = compile_matrix({"s": "a & b"}, vars={"a": "c"}, models=["a", "b", "c"])
    assert combos(program, "s") == [["b", "c"]]


def test_without_models_any_identifier_is_a_model() -> None:
    assert compile_matrix({"s": "anything-at.all_1"}).models == {"anything-at.all_1"}
    assert compile_matrix({"s": "x"}).known_models is None


def test_unknown_var_or_model() -> None:
    with pytest.raises(MatrixSyntaxError) as info:
        compile_matrix({"ok": "a", "bad": "a & (b | zz)"}, models=["a", "b"])
    assert str(info.value) == "set 'bad': unknown var or model 'zz' at position 9"
    assert info.value.set_name == "bad"
    assert info.value.position == 9


def test_resolution_errors_come_in_text_order() -> None:
    with pytest.raises(MatrixSyntaxError) as info:
        compile_matrix({"s": "+nope & zz"}, models=["a"])
    assert info.value.position == 0
    with pytest.raises(MatrixSyntaxError) as info:
        compile_matrix({"s": "zz & +nope"}, models=["a"])
    assert info.value.position == 0
    assert "unknown var or model 'zz'" in str(info.value)


@pytest.mark.parametrize("alias", ["", "a" * 33, "has_underscore", "spa ce", "é", "a+b"])
def test_bad_alias_key(alias: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_matrix({"s": "x"}, vars={alias: "x"})
    assert str(info.value).startswith(f"var {alias!r}: ")


def test_alias_key_limits() -> None:
    alias = "A1-." + "z" * 28
    program = compile_matrix({"s": alias}, vars={alias: "m"})
    assert program.models == {"m"}


def test_alias_to_unknown_model() -> None:
    with pytest.raises(ConfigError, match=r"^var 'x': unknown model 'nope'$"):
        compile_matrix({"s": "x"}, vars={"x": "nope"}, models=["a"])


@pytest.mark.parametrize("model", ["", 3, None])
def test_alias_to_a_non_string(model: Any) -> None:
    with pytest.raises(ConfigError, match=r"^var 'x': model must be a non-empty string"):
        compile_matrix({"s": "x"}, vars={"x": model})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vars": ["x"]}, "vars must be a mapping"),
        ({"vars": {3: "x"}}, "var 3: "),
        ({"models": "abc"}, "models must be an iterable"),
        ({"models": 3}, "models must be an iterable"),
        ({"models": [[1]]}, "models: model id [1] must be a string"),
    ],
)
def test_bad_vars_or_models(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_matrix({"s": "x"}, **kwargs)
    assert message in str(info.value)


# -- sets input -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "has space", "+s", "é", "a|b"])
def test_bad_set_name(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_matrix({name: "x"})
    assert str(info.value).startswith(f"set name {name!r} is invalid")
    assert not isinstance(info.value, MatrixSyntaxError)


def test_non_string_set_name() -> None:
    with pytest.raises(ConfigError, match=r"^set name 3 must be a string$"):
        compile_matrix({3: "x"})  # type: ignore[dict-item]


@pytest.mark.parametrize("text", [3, None, ["a"], b"a"])
def test_non_string_expression(text: Any) -> None:
    with pytest.raises(ConfigError) as info:
        compile_matrix({"s": text})
    assert str(info.value) == f"set 's': expression must be a string, not {type(text).__name__}"


def test_duplicate_set_names_in_pairs() -> None:
    with pytest.raises(ConfigError, match=r"^set 's' is defined twice$"):
        compile_matrix([("s", "a"), ("t", "b"), ("s", "c")])


@pytest.mark.parametrize("sets", [None, 3, "s", [("s",)], [("s", "a", "b")], ["sa"], [3]])
def test_malformed_sets(sets: Any) -> None:
    with pytest.raises(ConfigError):
        compile_matrix(sets)


def test_syntax_errors_name_the_set() -> None:
    with pytest.raises(MatrixSyntaxError) as info:
        compile_matrix({"fine": "a", "creative": "a & (b @"})
    assert str(info.value) == "set 'creative': unexpected character '@' at position 7"
    assert (info.value.set_name, info.value.position) == ("creative", 7)


# -- references -------------------------------------------------------------------


def test_reference_to_undefined_set() -> None:
    with pytest.raises(MatrixSyntaxError) as info:
        compile_matrix({"s": "a | +missing"})
    assert str(info.value) == "set 's': reference to undefined set 'missing' at position 4"
    assert info.value.position == 4


@pytest.mark.parametrize(
    ("sets", "name", "cycle"),
    [
        ({"a": "x | +a"}, "a", "a -> a"),
        ({"a": "+b", "b": "+a"}, "a", "a -> b -> a"),
        ({"ok": "x", "a": "+b & y", "b": "+c", "c": "z | +b"}, "b", "b -> c -> b"),
        ({"a": "+b", "b": "x & +c", "c": "+a"}, "a", "a -> b -> c -> a"),
    ],
)
def test_circular_reference(sets: dict[str, str], name: str, cycle: str) -> None:
    with pytest.raises(MatrixSyntaxError) as info:
        compile_matrix(sets)
    assert str(info.value) == f"set {name!r}: circular reference {cycle}"
    assert info.value.set_name == name
    assert info.value.position is None


def test_long_reference_chain_is_iterative() -> None:
    sets = {f"s{i}": f"+s{i + 1}" for i in range(5000)}
    sets["s5000"] = "leaf"
    program = compile_matrix(sets)
    assert program.set_names[0] == "s5000"
    assert combos(program, "s0") == [["leaf"]]


def test_long_reference_cycle_is_reported() -> None:
    sets = {f"s{i}": f"+s{(i + 1) % 3000}" for i in range(3000)}
    with pytest.raises(MatrixSyntaxError, match="circular reference s0 -> s1 -> s2"):
        compile_matrix(sets)


# -- nesting ------------------------------------------------------------------------


def test_parentheses_and_same_operator_chains_do_not_count_as_depth() -> None:
    depth = 10_000
    assert compile_matrix({"s": "(" * depth + "a" + ")" * depth}).models == {"a"}
    deep_and = "(a0 & " * depth + "z" + ")" * depth
    assert compile_matrix({"s": deep_and}).combination_count("s") == 1


def test_alternating_nesting_beyond_the_limit() -> None:
    levels = MAX_DEPTH // 2 + 1
    text = "(a | (b & " * levels + "c" + "))" * levels
    with pytest.raises(MatrixSyntaxError) as info:
        compile_matrix({"deep": text})
    assert str(info.value) == f"set 'deep': expression nests more than {MAX_DEPTH} levels deep"
    assert info.value.position is None


def test_nesting_at_the_limit_is_fine() -> None:
    levels = MAX_DEPTH // 2
    text = "(a | (b & " * levels + "c" + "))" * levels
    program = compile_matrix({"deep": text})
    assert next(program.combinations("deep")) == {"a"}
    assert program.solve("c", ["a"]).target_set == ("b", "c")


def test_unclosed_parentheses_deep() -> None:
    with pytest.raises(MatrixSyntaxError):
        compile_matrix({"s": "(" * 10_000})


# -- inspection ---------------------------------------------------------------------


def test_unknown_set_in_inspection() -> None:
    program = compile_matrix({"s": "a"})
    for call in (
        lambda: program.combinations("t"),
        lambda: program.combination_count("t"),
        lambda: program.expression("t"),
        lambda: program.set_models("t"),
    ):
        with pytest.raises(ConfigError, match=r"^unknown set 't'$"):
            call()


def test_models_lists_real_models() -> None:
    program = compile_matrix({"s": "a & (b | x)", "t": "+s | c"}, vars={"x": "real-x"})
    assert program.models == {"a", "b", "real-x", "c"}


def test_can_contain_all() -> None:
    program = compile_matrix({"s": "a & (b | c)", "t": "c & d"})
    assert program.can_contain_all(["a", "b"])
    assert program.can_contain_all(["a", "c"])
    assert program.can_contain_all(["c", "d"])
    assert program.can_contain_all(["a", "a"])
    assert program.can_contain_all([])
    assert not program.can_contain_all(["b", "c"])
    assert not program.can_contain_all(["a", "d"])
    assert not program.can_contain_all(["a", "unknown"])


def test_can_contain_all_without_expansion() -> None:
    text = " & ".join(f"(m{i}a | m{i}b)" for i in range(60))
    program = compile_matrix({"big": text})
    assert program.can_contain_all([f"m{i}b" for i in range(60)])
    assert not program.can_contain_all(["m0a", "m0b"])


def test_repr() -> None:
    assert repr(compile_matrix({"s": "a"})) == "<MatrixProgram sets=['s']>"
