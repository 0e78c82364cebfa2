"""Schedulers: the sans-IO state machines that own the queue and the decision tree."""

from swapcore.scheduling.arrival import ArrivalOrderScheduler
from swapcore.scheduling.costaware import CostAwareScheduler
from swapcore.scheduling.effects import Effects, Scheduler, SchedulerFactory
from swapcore.scheduling.fifo import FIFOScheduler
from swapcore.scheduling.requests import Request

__all__ = [
    "ArrivalOrderScheduler",
    "CostAwareScheduler",
    "Effects",
    "FIFOScheduler",
    "Request",
    "Scheduler",
    "SchedulerFactory",
]
