"""The operator API's streams: ``/logs``, ``/logs/stream[/{source}]`` and ``/api/events``.

Internal to :mod:`swapcore.adapters.asgi`, which checks API keys first (these
endpoints need one whenever ``/running`` does). The paths, methods and
payloads follow llama-swap's; see docs/gateway.md.

**Slow clients.** Every stream has its own backlog of at most ``backlog``
characters not yet written to its client (:mod:`~swapcore.adapters._streams`).
A client that lets it fill up (it reads too slowly, or not at all) is
dropped: its connection is closed, a warning is logged, and
:attr:`OperatorAPI.dropped` counts it. Nothing that feeds a stream (the
router, the loggers, the model servers' output) ever waits for a client.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from swapcore.adapters._calls import DISCONNECT, SHUTDOWN, Call
from swapcore.adapters._errors import bad_request, check_method, shutting_down
from swapcore.adapters._http import (
    NO_BUFFERING,
    SSE_HEADERS,
    Headers,
    Receive,
    Scope,
    header,
)
from swapcore.adapters._logs import COMBINED, PROXY, UPSTREAM, GatewayLogs
from swapcore.adapters._opsevents import EVENT_TAG, OperatorEvents, frame
from swapcore.adapters._streams import Subscriber
from swapcore.adapters._ui import redirect_to_ui

if TYPE_CHECKING:
    from swapcore.adapters._catalog import Catalog
    from swapcore.config.schema import GatewayConfig, PeerConfig
    from swapcore.router import BaseRouter

__all__ = ["OperatorAPI"]

logger = logging.getLogger(__name__)

_TEXT_STREAM: Headers = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
    NO_BUFFERING,
]
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_KEEPALIVE = b": keep-alive\n\n"


class OperatorAPI:
    """The gateway's log rings, its event feed, and the handlers that stream them.

    ``log_lines``: entries kept per log source; ``backlog``: characters a
    stream may fall behind before its client is dropped; ``keepalive``:
    seconds of silence after which ``/api/events`` sends a comment line.
    """

    def __init__(
        self,
        router: BaseRouter,
        config: GatewayConfig | None,
        peers: Mapping[str, PeerConfig],
        catalog: Catalog,
        *,
        log_lines: int,
        backlog: int,
        keepalive: float,
    ) -> None:
        secrets: set[str] = set()
        if config is not None:
            from swapcore.adapters.redact import config_secrets

            secrets = config_secrets(config)
        self.logs = GatewayLogs(router.models, lines=log_lines, secrets=secrets)
        self.events = OperatorEvents(router, config, peers)
        self._catalog = catalog
        self.backlog = backlog
        self.keepalive = keepalive
        self.dropped = 0
        """Streams dropped so far because their client fell ``backlog`` behind."""
        self.closed = False

    def reconfigure(
        self,
        router: BaseRouter,
        config: GatewayConfig | None,
        peers: Mapping[str, PeerConfig],
        catalog: Catalog,
    ) -> None:
        """Serve this configuration's models, peers and secrets from now on."""
        secrets: set[str] = set()
        if config is not None:
            from swapcore.adapters.redact import config_secrets

            secrets = config_secrets(config)
        self.logs.add_models(router.models, secrets)
        self.events.reconfigure(config, peers)
        self._catalog = catalog

    def start(self) -> None:
        """Begin keeping logs (on the gateway's event loop)."""
        self.logs.attach()

    def close(self) -> None:
        """Stop keeping logs, end every stream and refuse new ones (at shutdown)."""
        self.closed = True
        self.logs.detach()
        self.events.close()

    async def route(
        self, scope: Scope, receive: Receive, call: Call, method: str, path: str
    ) -> bool:
        """Serve ``path`` if it is one of these endpoints; False if it is not."""
        if path == "/logs":
            check_method(method, "GET", "HEAD")
            if "text/html" in (header(scope, b"accept") or "").lower():  # a browser: the UI
                await redirect_to_ui(call.exchange)
                return True
            ring = self.logs.ring(COMBINED)
            assert ring is not None
            await call.exchange.text(200, ring.history())
            return True
        if path == "/logs/stream" or path.startswith("/logs/stream/"):
            check_method(method, "GET")
            if self.closed:
                raise shutting_down()
            await self._log_stream(scope, receive, call, path[len("/logs/stream/") :])
            return True
        if path == "/api/events":
            check_method(method, "GET")
            if self.closed:
                raise shutting_down()
            await self._event_stream(receive, call)
            return True
        return False

    # ------------------------------------------------------------- streams

    async def _log_stream(self, scope: Scope, receive: Receive, call: Call, name: str) -> None:
        name = urllib.parse.unquote(name).strip("/")
        source = name if name in (PROXY, UPSTREAM, COMBINED) else self._catalog.resolve_local(name)
        if source is None or self.logs.ring(source) is None:
            raise bad_request(
                f"no log named {name!r}: use 'proxy', 'upstream' or a model's id", "unknown_log"
            )
        query = urllib.parse.parse_qs(
            scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
        )
        subscriber = self._subscriber(call, "/logs/stream" + (f"/{name}" if name else ""))
        unsubscribe = self.logs.subscribe(source, subscriber)
        try:
            ring = self.logs.ring(source)
            assert ring is not None
            history = "" if "no-history" in query else ring.history()
            await call.exchange.start(200, _TEXT_STREAM)
            if history:
                await call.exchange.body(history.encode())
            await self._pump(receive, call, subscriber, None)
        finally:
            unsubscribe()

    async def _event_stream(self, receive: Receive, call: Call) -> None:
        subscriber = self._subscriber(call, "/api/events")
        unsubscribes = [
            self.events.add(subscriber),
            self.logs.subscribe(PROXY, subscriber),
            self.logs.subscribe(UPSTREAM, subscriber),
        ]
        try:
            greeting = self.events.greeting()
            for source in (PROXY, UPSTREAM):
                ring = self.logs.ring(source)
                assert ring is not None
                history = ring.history()
                if history:
                    greeting.append(frame("logData", {"source": source, "data": history}))
            exchange = call.exchange
            exchange.sse = True
            await exchange.start(200, [*SSE_HEADERS, _NOSNIFF])
            await exchange.body("".join(greeting).encode())
            await self._pump(receive, call, subscriber, self.keepalive)
        finally:
            for unsubscribe in unsubscribes:
                unsubscribe()

    def _subscriber(self, call: Call, what: str) -> Subscriber:
        loop = asyncio.get_running_loop()

        def dropped() -> None:
            # Later, not inside the publish that overflowed (this warning is logged too).
            loop.call_soon(self._drop, call, what)

        return Subscriber(self.backlog, on_drop=dropped)

    def _drop(self, call: Call, what: str) -> None:
        self.dropped += 1
        logger.warning(
            "%s: dropped a client more than %d characters behind (it reads too slowly)",
            what,
            self.backlog,
        )
        call.end(DISCONNECT)  # its connection is abandoned: the server closes it

    async def _pump(
        self, receive: Receive, call: Call, subscriber: Subscriber, keepalive: float | None
    ) -> None:
        """Write what ``subscriber`` receives until the client leaves or the gateway stops."""
        exchange = call.exchange
        call.watch_disconnect(receive)
        try:
            while True:
                items = await subscriber.take(keepalive)
                if subscriber.dropped:
                    await asyncio.Event().wait()  # the drop ends this call on the next turn
                if items:
                    text = _render(items) if exchange.sse else "".join(t for _, t in items)
                    await exchange.body(text.encode())
                elif subscriber.closed:
                    await exchange.finish()
                    return
                else:
                    await exchange.body(_KEEPALIVE)
        except asyncio.CancelledError:
            # At shutdown a text stream ends properly (an event stream gets an error event).
            if call.reason == SHUTDOWN and not exchange.sending and not exchange.sse:
                await exchange.finish()
            raise


def _render(items: list[tuple[str, str]]) -> str:
    """Text for a log stream; SSE messages (log lines as ``logData``) for the event stream."""
    parts: list[str] = []
    pending_tag = ""
    pending: list[str] = []
    for tag, text in items:
        if tag == EVENT_TAG:
            if pending:
                parts.append(frame("logData", {"source": pending_tag, "data": "".join(pending)}))
                pending = []
            parts.append(text)
        elif tag == pending_tag or not pending:
            pending_tag = tag
            pending.append(text)
        else:
            parts.append(frame("logData", {"source": pending_tag, "data": "".join(pending)}))
            pending_tag, pending = tag, [text]
    if pending:
        parts.append(frame("logData", {"source": pending_tag, "data": "".join(pending)}))
    return "".join(parts)
