"""``/api/events``: router events as server-sent events, in llama-swap's envelope.

Internal to :mod:`swapcore.adapters.asgi`. Every message is one SSE event
named ``message`` whose data is ``{"type": ..., "data": "<JSON text>"}``, as
llama-swap sends them (``data`` is a JSON document encoded as a string).
Types, and the document each carries (``at``: wall-clock seconds):

- ``modelStatus`` (llama-swap's): a list of ``{"id", "name", "description",
  "state", "unlisted", "peerID", "aliases"}``, every local model then every
  peer model; sent on connect and whenever a model's state changed. A model
  a swap is bringing in reads ``starting`` from the swap's start.
- ``logData`` (llama-swap's): ``{"source": "proxy" | "upstream", "data": text}``;
  the recent history on connect, then new lines.
- ``snapshot``: on connect, ``{"models": {id: {"state", "queued", "waiting",
  "in_flight", "swapping"}}, "queue": [{"request_id", "model"}], "at"}``.
- ``queue``: ``{"depth", "models": {id: {"queued", "waiting", "in_flight"}},
  "at"}`` whenever those counts changed (``depth``: requests waiting in all).
- ``swapStarted`` ``{"model", "evict", "asleep", "wake", "reason", "at"}``,
  ``swapRetried`` ``{"model", "attempt", "error", "at"}``, ``swapFinished``
  ``{"model", "evict", "duration", "error", "at"}``, ``modelsUnloaded``
  ``{"models", "reason", "at"}``, ``processState`` ``{"model", "old", "new",
  "at"}``, ``costMeasured`` ``{"model", "kind", "seconds", "at"}``;
- ``request``: ``{"event": "queued" | "granted" | "released" | "expired" |
  "rejected" | "cancelled", "model", "request_id", "at"}`` plus
  ``position``, ``waited``, ``held`` or ``error`` as the event has them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any

import attrs

from swapcore.adapters._errors import describe
from swapcore.adapters._streams import Fanout, Subscriber
from swapcore.events import (
    RequestCancelled,
    RequestExpired,
    RequestGranted,
    RequestQueued,
    RequestRejected,
    RequestReleased,
    RouterEvent,
)
from swapcore.process import ProcessState

if TYPE_CHECKING:
    from swapcore.config.schema import GatewayConfig, PeerConfig
    from swapcore.router import BaseRouter

__all__ = ["OperatorEvents", "frame"]

EVENT_TAG = "event"
_LOADABLE = frozenset({ProcessState.STOPPED, ProcessState.SLEEPING})
_REQUESTS: Mapping[type[RouterEvent], str] = {
    RequestQueued: "queued",
    RequestGranted: "granted",
    RequestReleased: "released",
    RequestExpired: "expired",
    RequestRejected: "rejected",
    RequestCancelled: "cancelled",
}


def frame(kind: str, data: object) -> str:
    """One SSE message in llama-swap's envelope."""
    envelope = {"type": kind, "data": json.dumps(data)}
    return f"event: message\ndata: {json.dumps(envelope)}\n\n"


def _wall(monotonic: float) -> float:
    return round(time.time() - (time.monotonic() - monotonic), 3)


def _plain(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, BaseException):
        return describe(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


def event_message(event: RouterEvent) -> str:
    """The SSE message for one router event."""
    fields = {
        name: _plain(value)
        for name, value in attrs.asdict(event, recurse=False).items()
        if name != "at"
    }
    fields["at"] = _wall(event.at)
    kind = type(event).__name__
    request = _REQUESTS.get(type(event))
    if request is not None:
        return frame("request", {"event": request, **fields})
    names = {"ProcessStateChanged": "processState"}
    return frame(names.get(kind, kind[:1].lower() + kind[1:]), fields)


class OperatorEvents:
    """Turns router events into ``/api/events`` messages for every subscriber.

    While at least one client listens (:meth:`add`), :meth:`on_event` is one
    of the router's listeners (:meth:`BaseRouter.add_listener
    <swapcore.router.BaseRouter.add_listener>`); with none, the router is
    not asked for events on its behalf. Messages derived from the router's records (``modelStatus``,
    ``queue``) are computed once per turn of the event loop, after the
    events of that turn, and sent only when they changed.
    """

    def __init__(
        self,
        router: BaseRouter,
        config: GatewayConfig | None,
        peers: Mapping[str, PeerConfig],
    ) -> None:
        self._router = router
        self._config = config
        self._peers = tuple(peers.values())
        self.fanout = Fanout(EVENT_TAG)
        self._remove: Callable[[], None] | None = None
        self._flushing = False
        self._status = ""
        self._queue = ""

    def reconfigure(self, config: GatewayConfig | None, peers: Mapping[str, PeerConfig]) -> None:
        """Describe models and peers from this configuration from now on."""
        self._config = config
        self._peers = tuple(peers.values())

    def add(self, subscriber: Subscriber) -> Callable[[], None]:
        """Send the events to ``subscriber`` from now on; return the function that stops it."""
        remove = self.fanout.add(subscriber)
        if self._remove is None:
            self._remove = self._router.add_listener(self.on_event)

        def stop() -> None:
            remove()
            if not self.fanout:
                self._stop_listening()

        return stop

    def close(self) -> None:
        """End every subscriber's stream and stop listening to the router."""
        self.fanout.close()
        self._stop_listening()

    def _stop_listening(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None

    def on_event(self, event: RouterEvent) -> None:
        """Publish ``event`` to the subscribers (the router calls it with every event)."""
        if not self.fanout:
            return
        self.fanout.publish(event_message(event))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        if not self.fanout:
            return
        status = json.dumps(self.model_status())
        if status != self._status:
            self._status = status
            self.fanout.publish(frame("modelStatus", json.loads(status)))
        queue = self.queue()
        counts = json.dumps(queue["models"])
        if counts != self._queue:
            self._queue = counts
            self.fanout.publish(frame("queue", queue))

    def greeting(self) -> list[str]:
        """The messages a new client gets first: ``modelStatus`` and ``snapshot``."""
        # The shared last-sent values stay as they are: older clients may not
        # have been sent the latest yet (this one may get a repeat; harmless).
        status = self.model_status()
        snap = self._router.snapshot()
        models = {
            model: {
                "state": m.state.value,
                "queued": m.queued,
                "waiting": m.waiting,
                "in_flight": m.in_flight,
                "swapping": m.swapping,
            }
            for model, m in snap.models.items()
        }
        queue = [{"request_id": rid, "model": model} for rid, model in snap.queue]
        return [
            frame("modelStatus", status),
            frame("snapshot", {"models": models, "queue": queue, "at": round(time.time(), 3)}),
        ]

    def model_status(self) -> list[dict[str, Any]]:
        """llama-swap's ``modelStatus`` list: every local model, then the peers' models."""
        config = self._config
        entries: list[dict[str, Any]] = []
        for model, snap in self._router.snapshot().models.items():
            entry = config.models.get(model) if config is not None else None
            state = snap.state
            if snap.swapping and state in _LOADABLE:
                state = ProcessState.STARTING  # the swap to it has begun
            record: dict[str, Any] = {
                "id": model,
                "name": entry.name if entry is not None else "",
                "description": entry.description if entry is not None else "",
                "state": state.value,
                "unlisted": entry.unlisted if entry is not None else False,
                "peerID": "",
            }
            if entry is not None and entry.aliases:
                record["aliases"] = list(entry.aliases)
            entries.append(record)
        for peer in self._peers:
            for model in peer.models:
                entries.append(
                    {
                        "id": f"{peer.name}/{model}",
                        "name": "",
                        "description": "",
                        "state": "",
                        "unlisted": False,
                        "peerID": peer.name,
                    }
                )
        return entries

    def queue(self) -> dict[str, Any]:
        """The ``queue`` message's document, from the router's snapshot."""
        snap = self._router.snapshot()
        models = {
            model: {"queued": m.queued, "waiting": m.waiting, "in_flight": m.in_flight}
            for model, m in snap.models.items()
        }
        depth = sum(m.queued + m.waiting for m in snap.models.values())
        return {"depth": depth, "models": models, "at": round(time.time(), 3)}
