"""The swap-matrix DSL: tokens and parser, text in, syntax tree with positions out.

Grammar (``&`` binds tighter than ``|``)::

    expr := and ('|' and)*
    and  := atom ('&' atom)*
    atom := IDENT | '+' SETNAME | '(' expr ')'

Identifiers and set names are runs of ASCII letters, digits, ``_``, ``-`` and
``.``; ``+`` must be followed directly by a set name. ASCII whitespace (space,
tab, CR, LF, FF, VT) between tokens is ignored; any other character, including
non-ASCII letters and whitespace, is an unexpected character. The parser is
iterative, so nesting depth is bounded by memory, never by the recursion limit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TypeAlias

import attrs

from swapcore.errors import MatrixSyntaxError

__all__ = ["And", "Expr", "Expression", "Ident", "Or", "Ref", "parse_dsl"]

#: The characters of identifiers and set names, as a regular expression class.
IDENT_CHARS = r"A-Za-z0-9_.\-"
WHITESPACE = " \t\r\n\f\v"

_IDENT_RE = re.compile(f"[{IDENT_CHARS}]+")
_SPACE_RE = re.compile(r"[ \t\r\n\f\v]+")

_IDENT, _REF, _AND, _OR, _LPAREN, _RPAREN, _END = range(7)
_PUNCT = {"&": _AND, "|": _OR, "(": _LPAREN, ")": _RPAREN}


@attrs.frozen
class Ident:
    """A leaf: a var or model identifier at ``position`` (0-based offset)."""

    name: str
    position: int


@attrs.frozen
class Ref:
    """``+name``: another set's expression inlined; ``position`` is that of the ``+``."""

    name: str
    position: int


@attrs.frozen
class Or:
    """``a | b | ...``: a choice of exactly one child (two or more children)."""

    children: tuple[Expr, ...]


@attrs.frozen
class And:
    """``a & b & ...``: the union of one choice from each child (two or more children)."""

    children: tuple[Expr, ...]


Expr: TypeAlias = Ident | Ref | Or | And


@attrs.frozen
class Expression:
    """A parsed expression: its ``text``, syntax tree ``root``, and ``atoms``.

    ``atoms`` lists every identifier and set reference in text order, so
    resolution errors can be reported at the first offending position.
    """

    text: str
    root: Expr
    atoms: tuple[Ident | Ref, ...]


def _error(set_name: str, problem: str, position: int | None) -> MatrixSyntaxError:
    return MatrixSyntaxError(f"set {set_name!r}: {problem}", set_name=set_name, position=position)


def _tokens(text: str, set_name: str) -> Iterator[tuple[int, str, int]]:
    """Yield ``(kind, value, position)`` lazily, ending with an end token.

    Lazy, so that the parser reports whichever problem comes first in the text.
    """
    i, n = 0, len(text)
    while True:
        space = _SPACE_RE.match(text, i)
        if space:
            i = space.end()
        if i >= n:
            yield _END, "", n
            return
        ch = text[i]
        kind = _PUNCT.get(ch)
        if kind is not None:
            yield kind, ch, i
            i += 1
            continue
        if ch == "+":
            name = _IDENT_RE.match(text, i + 1)
            if name is None:
                raise _error(set_name, f"'+' without a set name at position {i}", i)
            yield _REF, name.group(), i
            i = name.end()
            continue
        ident = _IDENT_RE.match(text, i)
        if ident is None:
            raise _error(set_name, f"unexpected character {ch!r} at position {i}", i)
        yield _IDENT, ident.group(), i
        i = ident.end()


class _Frame:
    """One open parenthesis (or the whole expression): alternatives so far."""

    __slots__ = ("alternatives", "group", "opened_at")

    def __init__(self, opened_at: int) -> None:
        self.opened_at = opened_at
        self.alternatives: list[Expr] = []
        self.group: list[Expr] = []

    def close_group(self) -> None:
        group = self.group
        self.alternatives.append(group[0] if len(group) == 1 else And(tuple(group)))
        self.group = []

    def finish(self) -> Expr:
        self.close_group()
        alternatives = self.alternatives
        return alternatives[0] if len(alternatives) == 1 else Or(tuple(alternatives))


def _shown(kind: int, value: str) -> str:
    return repr("+" + value if kind == _REF else value)


def parse_dsl(text: str, *, set_name: str = "") -> Expression:
    """Parse one DSL expression; ``set_name`` is only used in error messages.

    Raises MatrixSyntaxError (with ``.set_name`` and ``.position``) for an
    empty expression, an unexpected character, ``+`` without a name, a
    missing ``)`` (at the unclosed ``(``), an unexpected token, or an
    unexpected end. Never raises anything else for a ``str`` input.
    Identifiers are not resolved here: see ``compile_matrix``.
    """
    if not text.strip(WHITESPACE):
        raise _error(set_name, "empty expression", None)
    frames = [_Frame(-1)]
    atoms: list[Ident | Ref] = []
    expect_atom = True
    for kind, value, pos in _tokens(text, set_name):
        frame = frames[-1]
        if expect_atom:
            if kind in (_IDENT, _REF):
                atom: Ident | Ref = Ident(value, pos) if kind == _IDENT else Ref(value, pos)
                atoms.append(atom)
                frame.group.append(atom)
                expect_atom = False
            elif kind == _LPAREN:
                frames.append(_Frame(pos))
            elif kind == _END:
                raise _error(set_name, f"unexpected end of expression at position {pos}", pos)
            else:
                raise _error(
                    set_name, f"unexpected token {_shown(kind, value)} at position {pos}", pos
                )
        elif kind == _AND:
            expect_atom = True
        elif kind == _OR:
            frame.close_group()
            expect_atom = True
        elif kind == _RPAREN and len(frames) > 1:
            frames.pop()
            frames[-1].group.append(frame.finish())
        elif kind == _END:
            if len(frames) > 1:
                opened = frame.opened_at
                raise _error(set_name, f"missing ')' for '(' at position {opened}", opened)
            return Expression(text, frame.finish(), tuple(atoms))
        else:
            raise _error(set_name, f"unexpected token {_shown(kind, value)} at position {pos}", pos)
    raise AssertionError("the token stream always ends with an end token")  # pragma: no cover
