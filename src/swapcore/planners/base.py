"""The eviction-policy seam: which running models must stop for a target."""

from __future__ import annotations

import abc
from collections.abc import Sequence

__all__ = ["SwapPlanner"]


class SwapPlanner(abc.ABC):
    """An eviction policy: which running models must stop before a target loads.

    Subclass it and implement :meth:`eviction_for`. The scheduler asks it
    speculatively, once per queued request on every queue drain, so
    ``eviction_for`` must be pure (same answer for the same arguments and
    planner state) and must not log. :meth:`on_swap_start` is called exactly
    once per swap that really starts; it is the place to log or record.
    """

    @abc.abstractmethod
    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        """Return the models of ``running`` that must stop before ``target`` loads.

        The result is a subset of ``running`` and never contains ``target``.
        """

    def on_swap_start(self, target: str, running: Sequence[str]) -> None:  # noqa: B027
        """Hook called once when a swap to ``target`` really starts; does nothing by default."""

    def on_serve(self, model: str, now: float) -> None:  # noqa: B027
        """Hook called just before ``model`` is handed to a request, at clock value ``now``.

        Recency-aware planners (least recently used) record it; the default
        does nothing. ``eviction_for`` stays pure given the recorded state.
        If it raises, that request fails with :class:`~swapcore.PolicyError`
        and the scheduler goes on serving the others.
        """
