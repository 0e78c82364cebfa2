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


PUBLIC = [
    "AffinityPolicy",
    "ArrivalOrderScheduler",
    "BaseRouter",
    "ClusterPolicy",
    "ConcurrencyLimitExceeded",
    "ConfigError",
    "CostAwareScheduler",
    "CostMeasured",
    "Effects",
    "Eviction",
    "FIFOScheduler",
    "Group",
    "GroupPlanner",
    "Lease",
    "LeaseExpired",
    "MatrixPlanner",
    "MatrixProgram",
    "MatrixSolver",
    "MatrixSyntaxError",
    "MaxLoadedPlanner",
    "MemoryBudgetPlanner",
    "ModelNotFound",
    "ModelSnapshot",
    "ModelUnloaded",
    "ModelsUnloaded",
    "PolicyError",
    "Process",
    "ProcessState",
    "ProcessStateChanged",
    "ReplicaReport",
    "Request",
    "RequestCancelled",
    "RequestExpired",
    "RequestGranted",
    "RequestQueued",
    "RequestRejected",
    "RequestReleased",
    "RouterEvent",
    "RouterNotRunning",
    "RouterShutdown",
    "RouterSnapshot",
    "RoutingError",
    "Scheduler",
    "SchedulerFactory",
    "SleepRules",
    "SleepingProcess",
    "SolveResult",
    "SwapCosts",
    "SwapFailed",
    "SwapPlanner",
    "SwapcoreError",
    "SwapFinished",
    "SwapRetried",
    "SwapStarted",
    "compile_matrix",
]


def test_public_names_are_pinned() -> None:
    import swapcore

    assert swapcore.__all__ == PUBLIC


def test_every_public_name_resolves_and_is_documented() -> None:
    import swapcore

    aliases = {"SchedulerFactory"}  # a typing alias: documented where it is defined
    for name in set(swapcore.__all__) - aliases:
        value = getattr(swapcore, name)
        assert getattr(value, "__doc__", None), f"swapcore.{name} has no docstring"


def test_error_tree_matches_the_contract() -> None:
    import swapcore as s

    assert issubclass(s.ConfigError, s.SwapcoreError) and issubclass(s.ConfigError, ValueError)
    assert issubclass(s.MatrixSyntaxError, s.ConfigError)
    assert issubclass(s.ModelNotFound, s.RoutingError) and issubclass(s.ModelNotFound, LookupError)
    for error in (
        s.ConcurrencyLimitExceeded,
        s.SwapFailed,
        s.ModelUnloaded,
        s.RouterShutdown,
        s.PolicyError,
        s.LeaseExpired,
    ):
        assert issubclass(error, s.RoutingError)
    assert issubclass(s.RoutingError, s.SwapcoreError)
