"""swapcore: which model servers to keep loaded, which to stop, and who is served next.

The pure core (matrix compiler and solver, planners, the sans-IO scheduler)
needs only ``attrs`` and ``typing-extensions``; the asyncio router is in the
standard library; adapters live behind extras.
"""

from swapcore.errors import (
    ConcurrencyLimitExceeded,
    ConfigError,
    MatrixSyntaxError,
    ModelNotFound,
    ModelUnloaded,
    RouterShutdown,
    RoutingError,
    SwapcoreError,
    SwapFailed,
)
from swapcore.planners.base import SwapPlanner
from swapcore.process import Process, ProcessState
from swapcore.scheduling.effects import Effects, Scheduler, SchedulerFactory
from swapcore.scheduling.requests import Request

# <matrix-imports>
# <groups-imports>
# <scheduler-imports>
# <router-imports>

__version__ = "0.1.0.dev0"

__all__ = [
    "ConcurrencyLimitExceeded",
    "ConfigError",
    "Effects",
    "MatrixSyntaxError",
    "ModelNotFound",
    "ModelUnloaded",
    "Process",
    "ProcessState",
    "Request",
    "RouterShutdown",
    "RoutingError",
    "Scheduler",
    "SchedulerFactory",
    "SwapFailed",
    "SwapPlanner",
    "SwapcoreError",
    # <matrix-all>
    # <groups-all>
    # <scheduler-all>
    # <router-all>
]
