"""The DSL parser: syntax trees, positions and every syntax error."""

from __future__ import annotations

import pytest

from swapcore import ConfigError, MatrixSyntaxError
from swapcore.matrix import And, Ident, Or, Ref, parse_dsl


def test_single_identifier() -> None:
    expr = parse_dsl("model-1.q4_K")
    assert expr.root == Ident("model-1.q4_K", 0)
    assert expr.atoms == (Ident("model-1.q4_K", 0),)
    assert expr.text == "model-1.q4_K"


def test_and_binds_tighter_than_or() -> None:
    assert parse_dsl("a | b & c").root == Or((Ident("a", 0), And((Ident("b", 4), Ident("c", 8)))))
    assert parse_dsl("a & b | c").root == Or((And((Ident("a", 0), Ident("b", 4))), Ident("c", 8)))


def test_chains_are_n_ary() -> None:
    assert parse_dsl("a|b|c").root == Or((Ident("a", 0), Ident("b", 2), Ident("c", 4)))
    assert parse_dsl("a&b&c").root == And((Ident("a", 0), Ident("b", 2), Ident("c", 4)))


def test_parentheses_group_and_leave_no_node() -> None:
    root = parse_dsl("(a | b) & (c | d)").root
    assert root == And(
        (
            Or((Ident("a", 1), Ident("b", 5))),
            Or((Ident("c", 11), Ident("d", 15))),
        )
    )
    assert parse_dsl("((a))").root == Ident("a", 2)


def test_reference_position_is_the_plus() -> None:
    expr = parse_dsl("x & +other.set")
    assert expr.root == And((Ident("x", 0), Ref("other.set", 4)))
    assert expr.atoms == (Ident("x", 0), Ref("other.set", 4))


def test_atoms_in_text_order() -> None:
    expr = parse_dsl("(b | +s) & a")
    assert [a.position for a in expr.atoms] == [1, 5, 11]


@pytest.mark.parametrize("space", [" ", "\t", "\n", "\r\n", "\f", "\v"])
def test_ascii_whitespace_is_ignored(space: str) -> None:
    text = f"{space}a{space}&{space}({space}b{space}|{space}c{space}){space}"
    expr = parse_dsl(text)
    assert isinstance(expr.root, And)
    assert [a.name for a in expr.atoms] == ["a", "b", "c"]


def _syntax_error(text: str) -> MatrixSyntaxError:
    with pytest.raises(MatrixSyntaxError) as info:
        parse_dsl(text, set_name="creative")
    error = info.value
    assert isinstance(error, ConfigError)
    assert error.set_name == "creative"
    return error


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_expression(text: str) -> None:
    error = _syntax_error(text)
    assert str(error) == "set 'creative': empty expression"
    assert error.position is None


@pytest.mark.parametrize(
    ("text", "char", "position"),
    [
        ("a & b @", "@", 6),
        ("a,b", ",", 1),
        ("é", "é", 0),
        ("a |\u00a0b", "\u00a0", 3),
        ("a & мodel", "м", 4),
        ("a\x00", "\x00", 1),
        ("a / b", "/", 2),
    ],
)
def test_unexpected_character(text: str, char: str, position: int) -> None:
    error = _syntax_error(text)
    assert str(error) == f"set 'creative': unexpected character {char!r} at position {position}"
    assert error.position == position


@pytest.mark.parametrize(
    ("text", "position"), [("+", 0), ("a & +", 4), ("+ a", 0), ("a | +(b)", 4)]
)
def test_plus_without_a_name(text: str, position: int) -> None:
    error = _syntax_error(text)
    assert str(error) == f"set 'creative': '+' without a set name at position {position}"
    assert error.position == position


@pytest.mark.parametrize(
    ("text", "position"), [("(a", 0), ("a & (b | c", 4), ("((a)", 0), ("(a & (b", 5)]
)
def test_missing_close_paren_points_at_the_open_one(text: str, position: int) -> None:
    error = _syntax_error(text)
    assert str(error) == f"set 'creative': missing ')' for '(' at position {position}"
    assert error.position == position


@pytest.mark.parametrize(
    ("text", "token", "position"),
    [
        ("a)", "')'", 1),
        ("()", "')'", 1),
        ("a b", "'b'", 2),
        ("a +s", "'+s'", 2),
        ("a (b)", "'('", 2),
        ("| a", "'|'", 0),
        ("a & | b", "'|'", 4),
        ("& a", "'&'", 0),
        ("a || b", "'|'", 3),
    ],
)
def test_unexpected_token(text: str, token: str, position: int) -> None:
    error = _syntax_error(text)
    assert str(error) == f"set 'creative': unexpected token {token} at position {position}"
    assert error.position == position


@pytest.mark.parametrize(("text", "position"), [("a |", 3), ("a & ", 4), ("(", 1), ("a & (", 5)])
def test_unexpected_end(text: str, position: int) -> None:
    error = _syntax_error(text)
    assert str(error) == f"set 'creative': unexpected end of expression at position {position}"
    assert error.position == position


def test_first_problem_in_the_text_wins() -> None:
    # The unexpected token comes before the bad character, so it is reported.
    assert _syntax_error("a) @").position == 1
    assert _syntax_error("@ a)").position == 0


def test_deep_nesting_is_iterative() -> None:
    depth = 10_000
    assert parse_dsl("(" * depth + "a" + ")" * depth).root == Ident("a", depth)
    assert _syntax_error("(" * depth).position == depth
    assert _syntax_error("(" * depth + "a").position == depth - 1
