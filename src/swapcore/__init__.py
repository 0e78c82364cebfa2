"""swapcore: which model servers to keep loaded, which to stop, and who is served next.

The pure core (matrix compiler and solver, planners, the sans-IO scheduler)
needs only ``attrs`` and ``typing-extensions``. The asyncio router
(:class:`BaseRouter` and its records) is imported on first use, so importing
the pure core never loads asyncio. Adapters live behind extras.
"""

from typing import TYPE_CHECKING

from swapcore.cluster import AffinityPolicy, ClusterPolicy, ReplicaReport
from swapcore.costs import SwapCosts
from swapcore.errors import (
    ConcurrencyLimitExceeded,
    ConfigError,
    LeaseExpired,
    MatrixSyntaxError,
    ModelNotFound,
    ModelUnloaded,
    PolicyError,
    RouterNotRunning,
    RouterShutdown,
    RoutingError,
    SwapcoreError,
    SwapFailed,
)
from swapcore.events import (
    CostMeasured,
    ModelsUnloaded,
    ProcessStateChanged,
    RequestCancelled,
    RequestExpired,
    RequestGranted,
    RequestQueued,
    RequestRejected,
    RequestReleased,
    RouterEvent,
    SwapFinished,
    SwapRetried,
    SwapStarted,
)
from swapcore.matrix import MatrixProgram, MatrixSolver, SolveResult, compile_matrix
from swapcore.planners.base import SwapPlanner
from swapcore.planners.groups import Group, GroupPlanner
from swapcore.planners.lru import MaxLoadedPlanner
from swapcore.planners.matrix import MatrixPlanner
from swapcore.planners.memory import MemoryBudgetPlanner
from swapcore.planners.residency import Eviction, SleepRules
from swapcore.process import Process, ProcessState, SleepingProcess
from swapcore.scheduling.arrival import ArrivalOrderScheduler
from swapcore.scheduling.costaware import CostAwareScheduler
from swapcore.scheduling.effects import Effects, Scheduler, SchedulerFactory
from swapcore.scheduling.fifo import FIFOScheduler
from swapcore.scheduling.requests import Request

if TYPE_CHECKING:
    from swapcore.router import BaseRouter, Lease, ModelSnapshot, RouterSnapshot

__version__ = "0.1.0.dev0"

_ROUTER_NAMES = frozenset({"BaseRouter", "Lease", "ModelSnapshot", "RouterSnapshot"})


def __getattr__(name: str) -> object:
    """Import the asyncio router on first use: the pure core never loads asyncio."""
    if name in _ROUTER_NAMES:
        from swapcore import router

        value = getattr(router, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'swapcore' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, including the router names not imported yet."""
    return sorted(set(globals()) | _ROUTER_NAMES)


__all__ = [
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
