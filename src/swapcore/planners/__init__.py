"""Eviction policies: the ``SwapPlanner`` seam and the planners swapcore ships."""

from swapcore.planners.base import SwapPlanner

# <groups-imports>
# <matrix-planner-imports>

__all__ = [
    "SwapPlanner",
    # <groups-all>
    # <matrix-planner-all>
]
