"""The eviction-policy seam: which running models must leave for a target, and how."""

from __future__ import annotations

import abc
from collections.abc import Sequence

from swapcore.planners.residency import Eviction, SleepRules

__all__ = ["SwapPlanner"]


class SwapPlanner(abc.ABC):
    """An eviction policy: which running models must leave before a target loads, and how.

    Subclass it and implement :meth:`eviction_for`. The scheduler asks it
    speculatively, once per queued request on every queue drain, so
    ``eviction_for`` must be pure (same answer for the same arguments and
    planner state) and must not log. :meth:`on_swap_start` is called exactly
    once per swap that really starts; it is the place to log or record.

    **Sleep or stop.** When a swap starts, :meth:`residency_for` splits its
    evictions into models put to sleep and models stopped. The default
    follows ``sleep_rules``: a model that may sleep (its sleep level is set)
    sleeps while the host memory of all sleepers stays within the host
    budget; every other evicted model stops. ``sleep_rules`` is None by
    default: a router whose processes can sleep then fills it with their
    sleep levels and no host budget; ``build_router`` fills it from the
    configuration. A planner written before sleeping existed thus keeps
    working: its evictions stop, or sleep where the model is configured to.
    Override :meth:`residency_for` for another rule.
    """

    sleep_rules: SleepRules | None = None
    """Which models may sleep and the host budget sleepers share (None: all stop)."""

    @abc.abstractmethod
    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        """Return the models of ``running`` that must stop before ``target`` loads.

        The result is a subset of ``running`` and never contains ``target``.
        """

    def residency_for(self, target: str, evict: Sequence[str], sleeping: Sequence[str]) -> Eviction:
        """Split ``evict`` (for a swap to ``target``) into models to sleep and models to stop.

        ``sleeping`` lists the models asleep or falling asleep now. The result
        holds every model of ``evict`` once. Called once per swap that
        really starts, after :meth:`on_swap_start`; it must not raise (a
        model it cannot place is stopped). The default is
        ``sleep_rules.split(target, evict, sleeping)``.
        """
        rules = self.sleep_rules
        if rules is None:
            return Eviction(stop=tuple(evict))
        return rules.split(target, evict, sleeping)

    def on_swap_start(self, target: str, running: Sequence[str]) -> None:  # noqa: B027
        """Hook called once when a swap to ``target`` really starts; does nothing by default."""

    def swap_reason(self, target: str) -> str:
        """Why the last swap to ``target`` evicted what it did, in one line ("" if unknown).

        The router asks once per swap, after :meth:`on_swap_start`, and puts
        the answer in :class:`~swapcore.events.SwapStarted` and ``/running``.
        The default knows no reason; a planner that can say (say, "needs 14
        GiB on one device; GPU 1 has 6 GiB free after keeping embed")
        records it in :meth:`on_swap_start` and returns it here.
        """
        return ""

    def on_serve(self, model: str, now: float) -> None:  # noqa: B027
        """Hook called just before ``model`` is handed to a request, at clock value ``now``.

        Recency-aware planners (least recently used) record it; the default
        does nothing. ``eviction_for`` stays pure given the recorded state.
        If it raises, that request fails with :class:`~swapcore.PolicyError`
        and the scheduler goes on serving the others.
        """
