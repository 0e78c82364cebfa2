"""The swap-matrix DSL compiler and solver.

``compile_matrix`` turns named DSL expressions into a ``MatrixProgram``;
``MatrixSolver`` answers "what must stop so this model can load" on it
without expanding Cartesian products. See docs/matrix.md.
"""

from swapcore.matrix.dsl import And, Expr, Expression, Ident, Or, Ref, parse_dsl
from swapcore.matrix.program import MAX_DEPTH, MatrixProgram, compile_matrix
from swapcore.matrix.solver import MatrixSolver, SolveResult, resolve_evict_costs

__all__ = [
    "MAX_DEPTH",
    "And",
    "Expr",
    "Expression",
    "Ident",
    "MatrixProgram",
    "MatrixSolver",
    "Or",
    "Ref",
    "SolveResult",
    "compile_matrix",
    "parse_dsl",
    "resolve_evict_costs",
]
