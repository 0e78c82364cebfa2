"""``RecordingEffects``: a fake scheduler driver that records every effect call.

Use it to drive a :class:`~swapcore.scheduling.Scheduler` (``FIFOScheduler``
or your own) as a pure state machine in tests: set process states, feed
events to the scheduler, and assert on the calls it made. Pure Python; no
hypothesis needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

import attrs

from swapcore.errors import RoutingError
from swapcore.process import ProcessState
from swapcore.scheduling.requests import Request

__all__ = [
    "EffectCall",
    "GrantErrorCall",
    "GrantServeCall",
    "RecordingEffects",
    "ReportPositionCall",
    "StartSwapCall",
]


@attrs.frozen
class StartSwapCall:
    """The scheduler asked to stop ``evict`` and bring ``model`` up."""

    model: str
    evict: tuple[str, ...]


@attrs.frozen
class GrantServeCall:
    """The scheduler granted ``model`` to ``request``; ``taken`` is what grant_serve returned."""

    request: Request
    model: str
    taken: bool


@attrs.frozen
class GrantErrorCall:
    """The scheduler failed ``request`` with ``error``."""

    request: Request
    error: RoutingError


@attrs.frozen
class ReportPositionCall:
    """The scheduler told ``request`` its 1-based queue ``position``."""

    request: Request
    position: int


EffectCall: TypeAlias = StartSwapCall | GrantServeCall | GrantErrorCall | ReportPositionCall
"""Any one recorded effect call."""


class RecordingEffects:
    """An :class:`~swapcore.scheduling.Effects` that records calls instead of acting.

    ``states`` (model -> :class:`~swapcore.ProcessState`) is a plain dict the
    test sets; models absent from it are not handled (``model_state`` returns
    None) and ``running_models`` lists those whose state is running
    (starting, ready, stopping). Nothing changes state on its own: call
    :meth:`apply_swap` (or set ``states``) when the test's driver finishes a
    swap. Every call is appended to ``calls`` in order. ``grant_serve``
    returns True unless the request was marked gone with :meth:`mark_gone`.
    """

    def __init__(self, states: Mapping[str, ProcessState] | None = None) -> None:
        self.states: dict[str, ProcessState] = dict(states or {})
        self.calls: list[EffectCall] = []
        self._gone: set[Request] = set()

    @classmethod
    def for_models(cls, models: Iterable[str], *, ready: Iterable[str] = ()) -> RecordingEffects:
        """Handle ``models``, all stopped except ``ready`` (which are added if missing)."""
        states = dict.fromkeys(models, ProcessState.STOPPED)
        states.update(dict.fromkeys(ready, ProcessState.READY))
        return cls(states)

    # -- the Effects protocol ---------------------------------------------------

    def model_state(self, model: str) -> ProcessState | None:
        """The state set in ``states``, or None when the model is not there."""
        return self.states.get(model)

    def running_models(self) -> dict[str, ProcessState]:
        """The models of ``states`` whose state is starting, ready or stopping."""
        return {model: state for model, state in self.states.items() if state.is_running}

    def start_swap(self, model: str, evict: Sequence[str]) -> None:
        """Record a :class:`StartSwapCall`; states are left as they are."""
        self.calls.append(StartSwapCall(model, tuple(evict)))

    def grant_serve(self, request: Request, model: str) -> bool:
        """Record a :class:`GrantServeCall`; False when the request was marked gone."""
        taken = request not in self._gone
        self.calls.append(GrantServeCall(request, model, taken))
        return taken

    def grant_error(self, request: Request, error: RoutingError) -> None:
        """Record a :class:`GrantErrorCall`."""
        self.calls.append(GrantErrorCall(request, error))

    def report_position(self, request: Request, position: int) -> None:
        """Record a :class:`ReportPositionCall`."""
        self.calls.append(ReportPositionCall(request, position))

    # -- test helpers -----------------------------------------------------------

    def mark_gone(self, request: Request) -> None:
        """Make later ``grant_serve`` calls for ``request`` return False (its caller left)."""
        self._gone.add(request)

    def apply_swap(self, model: str, *, ok: bool = True) -> None:
        """Play the end of the latest swap to ``model`` on ``states``.

        Its evicted models become stopped; ``model`` becomes ready, or stopped
        when ``ok`` is false. Raises ``LookupError`` if no swap to ``model``
        was started.
        """
        for call in reversed(self.calls):
            if isinstance(call, StartSwapCall) and call.model == model:
                for victim in call.evict:
                    self.states[victim] = ProcessState.STOPPED
                self.states[model] = ProcessState.READY if ok else ProcessState.STOPPED
                return
        raise LookupError(f"no swap to {model!r} was started")

    def take_calls(self) -> list[EffectCall]:
        """Return the calls recorded so far and forget them."""
        calls, self.calls = self.calls, []
        return calls

    @property
    def starts(self) -> list[StartSwapCall]:
        """Every recorded ``start_swap``, in order."""
        return [call for call in self.calls if isinstance(call, StartSwapCall)]

    @property
    def grants(self) -> list[GrantServeCall]:
        """Every recorded ``grant_serve`` (taken or not), in order."""
        return [call for call in self.calls if isinstance(call, GrantServeCall)]

    @property
    def errors(self) -> list[GrantErrorCall]:
        """Every recorded ``grant_error``, in order."""
        return [call for call in self.calls if isinstance(call, GrantErrorCall)]

    @property
    def reports(self) -> list[ReportPositionCall]:
        """Every recorded ``report_position``, in order."""
        return [call for call in self.calls if isinstance(call, ReportPositionCall)]

    def served(self) -> list[Request]:
        """The requests granted and taken, in grant order."""
        return [
            call.request for call in self.calls if isinstance(call, GrantServeCall) and call.taken
        ]

    def positions(self, request: Request) -> list[int]:
        """Every position reported to ``request``, in order."""
        return [
            call.position
            for call in self.calls
            if isinstance(call, ReportPositionCall) and call.request is request
        ]

    def position(self, request: Request) -> int | None:
        """The latest position reported to ``request``, or None if none was."""
        for call in reversed(self.calls):
            if isinstance(call, ReportPositionCall) and call.request is request:
                return call.position
        return None

    def outcomes(self, request: Request) -> list[GrantServeCall | GrantErrorCall]:
        """Every grant or error recorded for ``request`` (exactly one once it is resolved)."""
        return [
            call
            for call in self.calls
            if isinstance(call, (GrantServeCall, GrantErrorCall)) and call.request is request
        ]

    def error(self, request: Request) -> RoutingError | None:
        """The error ``request`` was failed with, or None."""
        for call in self.calls:
            if isinstance(call, GrantErrorCall) and call.request is request:
                return call.error
        return None
