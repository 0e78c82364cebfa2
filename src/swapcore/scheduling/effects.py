"""The protocols between a scheduler and the driver that embeds it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol

from swapcore.errors import RoutingError
from swapcore.planners.base import SwapPlanner
from swapcore.process import ProcessState
from swapcore.scheduling.requests import Request

__all__ = ["Effects", "Scheduler", "SchedulerFactory"]


class Effects(Protocol):
    """What a scheduler may read from and ask of its driver.

    The asyncio ``BaseRouter`` and the simulator implement it. Every call is
    synchronous and returns at once; ``start_swap`` only schedules the swap,
    whose completion comes back as ``Scheduler.on_swap_done``.
    """

    def model_state(self, model: str) -> ProcessState | None:
        """The model's process state, or None when the driver does not handle the model."""
        ...

    def running_models(self) -> Mapping[str, ProcessState]:
        """Every handled model whose process is not stopped or shut down."""
        ...

    def start_swap(self, model: str, evict: Sequence[str]) -> None:
        """Stop ``evict`` (in parallel), then make ``model`` ready; fire and forget."""
        ...

    def grant_serve(self, request: Request, model: str) -> bool:
        """Hand ``model`` to the request's caller; False when the caller is gone."""
        ...

    def grant_error(self, request: Request, error: RoutingError) -> None:
        """Fail the request with ``error``."""
        ...

    def report_position(self, request: Request, position: int) -> None:
        """Tell a queued request its 1-based queue position."""
        ...


class Scheduler(Protocol):
    """A sans-IO scheduler: owns the queue, in-flight counts and the decision tree.

    The driver calls these methods one at a time, from one task; the
    scheduler answers through its ``Effects``.
    """

    def on_request(self, request: Request) -> None:
        """A new request arrived."""
        ...

    def on_cancel(self, request: Request) -> None:
        """The request's caller left before being granted."""
        ...

    def on_swap_done(self, model: str, error: BaseException | None) -> None:
        """The swap to ``model`` finished, with the process error when it failed."""
        ...

    def on_serve_done(self, model: str) -> None:
        """One granted request for ``model`` finished."""
        ...

    def on_unload(self, models: Collection[str]) -> None:
        """The models are about to be unloaded: release their waiters and queued requests."""
        ...

    def on_unload_done(self, models: Collection[str]) -> None:
        """The unloaded models' processes have stopped: re-examine the queue."""
        ...

    def on_shutdown(self, error: RoutingError) -> None:
        """The driver shuts down: fail every waiter and queued request with ``error``."""
        ...


SchedulerFactory = Callable[[SwapPlanner, Effects], Scheduler]
"""Builds a scheduler for a planner and a driver's effects."""
