"""Record a running router's traffic as a trace, to replay it in the simulator.

:class:`TraceRecorder` is an ``on_event`` callback for
:class:`~swapcore.BaseRouter` (``swapcore serve --record-trace PATH`` installs
one): each request that was granted and then released (or whose lease
expired) becomes an :class:`~swapcore.sim.traces.Arrival` whose ``at`` is its
arrival time, in seconds since the recorder was built, and whose ``service``
is how long its caller held the model. Replaying the file with ``swapcore simulate`` then shows
what other configs or schedulers would have done with the same demand.

A recording also keeps what the swaps cost: each ``CostMeasured`` event
becomes a ``{"cost": {"model", "kind", "seconds"}}`` line, and each swap a
``{"swap": {"at", "model", "wake", "asleep"}}`` line. :func:`read_trace`
skips them; :func:`read_recorded` reads them back, so ``swapcore simulate``
can give each model the load, wake, stop and sleep times it really had,
and a replay can be checked against the real run's cold loads and wakes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import IO

from swapcore.costs import COST_KINDS, SwapCosts
from swapcore.errors import ConfigError
from swapcore.events import (
    CostMeasured,
    RequestCancelled,
    RequestExpired,
    RequestGranted,
    RequestRejected,
    RequestReleased,
    RouterEvent,
    SwapStarted,
)
from swapcore.sim.traces import Arrival, read_trace, write_trace

__all__ = ["Recorded", "TraceRecorder", "read_recorded"]


class TraceRecorder:
    """An ``on_event`` callback that turns served requests into trace arrivals.

    ``TraceRecorder(out=None, *, clock=time.monotonic)``. ``out`` is a path
    (created or replaced, UTF-8), an open text stream, or None to keep the
    arrivals in memory only. With ``out``, each arrival is written as one
    JSON Lines record (the :func:`~swapcore.sim.traces.write_trace` format)
    and flushed as soon as its request is released, so a gateway stopped
    abruptly loses at most the requests still in flight. Records are written
    in release order; :func:`~swapcore.sim.traces.read_trace` sorts them.

    ``clock`` must be the router's clock (``time.monotonic``, which the
    router stamps events with); times are recorded relative to the moment the
    recorder is built. A request's ``at`` is its arrival (the grant time minus
    its wait) and ``service`` the seconds from its grant to its release (or
    to the expiry of its lease: the router took the model back then); the
    model recorded is the model granted. Requests that were rejected or whose
    caller left before the grant are not recorded (their service time is
    unknown); :attr:`not_served` counts them. Events of other kinds are
    ignored, so the recorder can share a router with other listeners (call
    it from your own ``on_event``).
    """

    def __init__(
        self,
        out: str | os.PathLike[str] | IO[str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._origin = clock()
        self._granted: dict[int, tuple[str, float]] = {}  # request id -> (model, arrived)
        self._arrivals: list[Arrival] = []
        self.not_served = 0
        """Requests rejected or cancelled before their grant (not recorded)."""
        self.costs = SwapCosts()
        """The swap costs measured while recording."""
        self.wakes: dict[str, int] = {}
        """Swaps that woke a sleeping model, per model."""
        self._owned = False
        self._stream: IO[str] | None = None
        if isinstance(out, (str, os.PathLike)):
            try:
                self._stream = open(out, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
            except OSError as exc:
                raise ConfigError(
                    f"cannot write the trace to {os.fspath(out)!r}: {exc.strerror}"
                ) from None
            self._owned = True
        elif out is not None:
            self._stream = out

    @property
    def arrivals(self) -> list[Arrival]:
        """The arrivals recorded so far, sorted by time (a fresh list)."""
        return sorted(self._arrivals, key=lambda arrival: arrival.at)

    @property
    def recorded(self) -> int:
        """How many arrivals were recorded so far."""
        return len(self._arrivals)

    @property
    def in_flight(self) -> int:
        """Requests granted and not yet released (not recorded yet)."""
        return len(self._granted)

    def __call__(self, event: RouterEvent) -> None:
        """Take one router event; a release (or a lease expiry) completes an arrival."""
        if isinstance(event, RequestGranted):
            self._granted[event.request_id] = (event.model, event.at - event.waited)
        elif isinstance(event, (RequestReleased, RequestExpired)):
            granted = self._granted.pop(event.request_id, None)
            if granted is None:
                return  # granted before the recorder was attached
            model, arrived = granted
            arrival = Arrival(max(0.0, arrived - self._origin), model, max(0.0, event.held))
            self._arrivals.append(arrival)
            if self._stream is not None:
                write_trace([arrival], self._stream)
                self._stream.flush()
        elif isinstance(event, (RequestRejected, RequestCancelled)):
            self.not_served += 1
        elif isinstance(event, CostMeasured):
            self.costs.record(event.model, event.kind, event.seconds)  # type: ignore[arg-type]
            self._write(
                {"cost": {"model": event.model, "kind": event.kind, "seconds": event.seconds}}
            )
        elif isinstance(event, SwapStarted):
            if event.wake:
                self.wakes[event.model] = self.wakes.get(event.model, 0) + 1
            self._write(
                {
                    "swap": {
                        "at": max(0.0, event.at - self._origin),
                        "model": event.model,
                        "wake": event.wake,
                        "asleep": list(event.asleep),
                    }
                }
            )

    def _write(self, record: dict[str, object]) -> None:
        if self._stream is not None:
            self._stream.write(json.dumps(record) + "\n")
            self._stream.flush()

    def close(self) -> None:
        """Close the file the recorder opened (a stream passed in is left open)."""
        if self._owned and self._stream is not None:
            self._stream.close()
            self._stream = None

    def __enter__(self) -> TraceRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Recorded:
    """What a recorded trace says beyond its arrivals.

    ``costs``: the measured swap costs (a :class:`~swapcore.costs.SwapCosts`);
    ``cold_loads`` and ``wakes``: per model, the measured cold loads and the
    swaps that woke it (what a replay should reproduce); ``swaps``: each swap
    as ``(at, model, wake)``.
    """

    def __init__(self) -> None:
        self.costs = SwapCosts()
        self.cold_loads: dict[str, int] = {}
        self.wakes: dict[str, int] = {}
        self.swaps: list[tuple[float, str, bool]] = []

    def profile_fields(self, model: str) -> dict[str, float]:
        """``ModelProfile`` fields measured for ``model``: load, stop, wake, sleep."""
        fields: dict[str, float] = {}
        for kind in COST_KINDS:
            seconds = self.costs.estimate(model, kind)
            if seconds is not None:
                fields[kind] = seconds
        return fields


def read_recorded(path: str | os.PathLike[str]) -> Recorded:
    """Read the cost and swap records of a recorded trace (arrivals are :func:`read_trace`'s).

    Malformed records raise :class:`~swapcore.ConfigError` naming the file and line.
    """
    read_trace(path)  # the file as a whole is valid (and its arrivals)
    recorded = Recorded()
    name = os.fspath(path)
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text.startswith('{"cost"') and not text.startswith('{"swap"'):
                continue
            raw = json.loads(text)
            try:
                if "cost" in raw:
                    cost = raw["cost"]
                    model, kind, seconds = cost["model"], cost["kind"], cost["seconds"]
                    if kind not in COST_KINDS or not isinstance(seconds, (int, float)):
                        raise ValueError(f"bad cost record {cost!r}")
                    recorded.costs.record(model, kind, float(seconds))
                    if kind == "load":
                        recorded.cold_loads[model] = recorded.cold_loads.get(model, 0) + 1
                else:
                    swap = raw["swap"]
                    model, wake = str(swap["model"]), bool(swap["wake"])
                    recorded.swaps.append((float(swap["at"]), model, wake))
                    if wake:
                        recorded.wakes[model] = recorded.wakes.get(model, 0) + 1
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{name}:{number}: malformed record: {exc}") from None
    return recorded
