"""Measuring each model server's GPU memory once it is ready, and learning from it.

:class:`MemoryWatcher` is an ``on_event`` listener for a
:class:`~swapcore.BaseRouter`: when a swap finishes with its model ready, it
asks a :class:`~swapcore.memory.GPUProbe` what the model's server (its whole
process tree) uses on each device, records the total as a ``memory``
measurement in the router's learned costs (the same store as load times:
the median of the recent measurements replaces the estimate, the prior),
and logs a warning when the measurement exceeds the estimate by more than
``margin``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from swapcore.costs import SwapCosts
from swapcore.events import RouterEvent, SwapFinished
from swapcore.memory._probe import GPUProbe, process_tree

__all__ = ["MemoryWatcher"]

log = logging.getLogger("swapcore.memory")


class MemoryWatcher:
    """Measure a model's GPU memory after each swap to it; warn when it exceeds the estimate.

    ``pid_of(model)`` gives the server's process id (None: not running);
    ``estimates`` the estimated bytes per model (also set as the ``memory``
    prior in ``costs``); ``margin`` the fraction above the estimate that is
    tolerated before a warning (0.1: 10%). ``measured`` keeps the last
    measurement per model: ``{model: {device: bytes}}``.
    """

    def __init__(
        self,
        probe: GPUProbe,
        costs: SwapCosts,
        pid_of: Callable[[str], int | None],
        *,
        estimates: Mapping[str, int] | None = None,
        margin: float = 0.1,
    ) -> None:
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, got {margin!r}")
        self._probe = probe
        self._costs = costs
        self._pid_of = pid_of
        self._estimates = dict(estimates or {})
        self._margin = margin
        self.measured: dict[str, dict[int, int]] = {}
        for model, size in self._estimates.items():
            costs.set_prior(model, "memory", size)

    def __call__(self, event: RouterEvent) -> None:
        """Take a router event: a successful :class:`SwapFinished` triggers a measurement."""
        if isinstance(event, SwapFinished) and event.error is None:
            self.measure(event.model)

    def measure(self, model: str) -> int | None:
        """Measure ``model`` now; return its total bytes (None when it has no process)."""
        pid = self._pid_of(model)
        if pid is None:
            return None
        try:
            per_device = dict(self._probe.process_memory(process_tree(pid)))
        except Exception as exc:  # a driver hiccup must not disturb serving
            log.warning("could not measure the GPU memory of %r: %s", model, exc)
            return None
        total = sum(per_device.values())
        self.measured[model] = per_device
        if total:
            self._costs.record(model, "memory", total)
        estimate = self._estimates.get(model)
        if estimate and total > estimate * (1 + self._margin):
            log.warning(
                "model %r uses %.2f GiB of GPU memory, %.0f%% over its estimate of %.2f GiB",
                model,
                total / 2**30,
                (total / estimate - 1) * 100,
                estimate / 2**30,
            )
        return total
