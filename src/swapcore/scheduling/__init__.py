"""Schedulers: the sans-IO state machines that own the queue and the decision tree."""

from swapcore.scheduling.effects import Effects, Scheduler, SchedulerFactory
from swapcore.scheduling.requests import Request

# <scheduler-imports>

__all__ = [
    "Effects",
    "Request",
    "Scheduler",
    "SchedulerFactory",
    # <scheduler-all>
]
