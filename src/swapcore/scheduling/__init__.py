"""Schedulers: the sans-IO state machines that own the queue and the decision tree."""

from swapcore.scheduling.effects import Effects, Scheduler, SchedulerFactory
from swapcore.scheduling.fifo import FIFOScheduler
from swapcore.scheduling.requests import Request

__all__ = [
    "Effects",
    "FIFOScheduler",
    "Request",
    "Scheduler",
    "SchedulerFactory",
]
