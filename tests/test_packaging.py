"""Pins the dependency rules: what `import swapcore` and the pure core may pull in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "swapcore"

_PROBE = """
import json, sys
before = set(sys.modules)
import {module}
loaded = sorted(set(sys.modules) - before)
print(json.dumps(loaded))
"""


def _modules_loaded_by(module: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {name.split(".")[0] for name in json.loads(out)}


def _third_party(top_level: set[str]) -> set[str]:
    stdlib = set(sys.stdlib_module_names)
    return {name for name in top_level if name not in stdlib and not name.startswith("_")}


def test_import_swapcore_pulls_only_attrs_and_typing_extensions() -> None:
    third = _third_party(_modules_loaded_by("swapcore")) - {"swapcore"}
    assert third <= {"attrs", "attr", "typing_extensions"}, third


@pytest.mark.parametrize(
    "module",
    ["swapcore.matrix", "swapcore.planners", "swapcore.scheduling", "swapcore.scheduling.fifo"],
)
def test_pure_core_does_not_import_asyncio(module: str) -> None:
    assert "asyncio" not in _modules_loaded_by(module)


def test_py_typed_marker_is_shipped() -> None:
    assert (SRC / "py.typed").is_file()
