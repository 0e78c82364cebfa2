"""The swap-matrix DSL compiler and solver."""
