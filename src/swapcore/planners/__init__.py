"""Eviction policies: the ``SwapPlanner`` seam and the planners swapcore ships."""

from swapcore.planners.base import SwapPlanner
from swapcore.planners.groups import DEFAULT_GROUP, Group, GroupPlanner
from swapcore.planners.lru import MaxLoadedPlanner
from swapcore.planners.matrix import MatrixPlanner
from swapcore.planners.memory import MemoryBudgetPlanner

__all__ = [
    "DEFAULT_GROUP",
    "Group",
    "GroupPlanner",
    "MatrixPlanner",
    "MaxLoadedPlanner",
    "MemoryBudgetPlanner",
    "SwapPlanner",
]
