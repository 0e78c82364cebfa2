"""The ``swapcore`` command line: serve, check, explain, simulate, fake-model."""

from swapcore.cli.main import main

__all__ = ["main"]
