"""The gateway as a plain ASGI app: OpenAI-style requests in, swapped models out.

``GatewayApp`` serves a :class:`~swapcore.router.BaseRouter` over HTTP with no
web framework, so it runs under any ASGI server and mounts inside Starlette
or FastAPI (``app.mount("/llm", gateway)``). See ``docs/gateway.md``.

Guarantees:

- **The lease spans the response.** A request holds its model (in flight,
  never evicted by a swap) from the grant until the last byte of the
  upstream's body has been handed to the server.
- **No buffering of responses.** Each chunk the upstream sends is passed on
  as one ASGI body message as soon as it arrives (request bodies are read
  whole: the model name is inside them).
- **Bounded upstream time.** Connecting, waiting for response headers and
  any silence mid-response are bounded per model (``timeouts``); when a bound
  is hit the client gets a 504 (or an error event in a stream already
  begun) and the model is released, so its swap group can swap.
- **Bounded memory.** Request bodies count against a gateway-wide budget
  (``max_buffered_bytes``); past it a request gets 503 with ``Retry-After``.
  Bodies are never parsed into Python objects beyond the fields needed.
- **A shutdown contract.** Once :meth:`GatewayApp.shutdown` starts, every
  request still open ends with ``503 shutting_down`` (or an error event in
  its stream); the ASGI server never sees an exception from the app.
- **Disconnects cancel.** A client that disconnects while waiting withdraws
  its request (it never triggers a load); one that disconnects while being
  served closes the upstream request. Either way the lease is released.
- **Errors are OpenAI-shaped.** ``{"error": {"message", "type", "param",
  "code"}}`` with the statuses of the table in ``docs/gateway.md``; once an
  event stream has begun, an error is sent as a last ``data: {"error": ...}``
  event.
- **Keys stay secret.** API keys are compared in constant time, never
  logged, and never forwarded upstream (a peer gets its own key).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp

from swapcore.adapters._auth import KeyChecker
from swapcore.adapters._body import BodyBudget, read_body
from swapcore.adapters._bodyfilter import filter_request
from swapcore.adapters._calls import DISCONNECT, HEADER_TIMEOUT, READ_TIMEOUT, Call, Calls
from swapcore.adapters._catalog import Catalog, Upstreams, split_upstream_path
from swapcore.adapters._cors import allow_origin, preflight
from swapcore.adapters._errors import (
    GatewayHTTPError,
    first_line,
    model_not_found,
    routing_error,
    shutting_down,
)
from swapcore.adapters._http import (
    ClientDisconnected,
    Exchange,
    Receive,
    Scope,
    Send,
    header,
    route_path,
)
from swapcore.adapters._metrics_route import MetricsRoute
from swapcore.adapters._ops import OperatorAPI
from swapcore.adapters._proxy import upstream_headers, upstream_url
from swapcore.adapters._requests import needs_scan, parse_body, reject_encoding
from swapcore.adapters._routes import INFERENCE_PATHS, MODEL_GET_PATHS, Endpoint, match_route
from swapcore.adapters._sse import LoadingReporter
from swapcore.adapters._ui import redirect_to_ui, serve_ui
from swapcore.adapters._upstream import ModelDown, UpstreamClient, relay
from swapcore.config.schema import DEFAULT_MODEL_TIMEOUTS, UpstreamTimeouts
from swapcore.errors import ConfigError, RouterNotRunning, RoutingError
from swapcore.process import Process, ProcessState

if TYPE_CHECKING:
    from swapcore.adapters._requests import RequestBody
    from swapcore.adapters.metrics import RouterMetrics
    from swapcore.config.schema import GatewayConfig, PeerConfig
    from swapcore.router import BaseRouter

__all__ = [
    "DEFAULT_KEEPALIVE",
    "DEFAULT_LOADING_TICK",
    "DEFAULT_LOG_LINES",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_BUFFERED_BYTES",
    "DEFAULT_STREAM_BACKLOG",
    "INFERENCE_PATHS",
    "MODEL_GET_PATHS",
    "GatewayApp",
    "Upstreams",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024
"""Largest request body accepted (bytes); larger ones get HTTP 413."""
DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024
"""Most request-body bytes held at once by one app; past it requests get 503."""
DEFAULT_LOADING_TICK = 1.0
"""Seconds between keep-alive dots of the loading progress stream."""
DEFAULT_LOG_LINES = 1000
"""Entries each log source (``/logs/stream/...``) keeps for clients that connect later."""
DEFAULT_STREAM_BACKLOG = 1024 * 1024
"""Characters a log or event stream may fall behind before its client is dropped."""
DEFAULT_KEEPALIVE = 15.0
"""Seconds of silence after which ``/api/events`` sends a keep-alive comment."""
_SHUTDOWN_GRACE = 5.0  # how long ended requests get to send their last words at shutdown
_REROUTES = 1  # times a request is routed again when its model went down before reaching it
_NEW, _STARTED, _CLOSED = "new", "started", "closed"


class GatewayApp:
    """An ASGI app that routes OpenAI-style requests through a router to upstream servers.

    ``router`` decides which model serves each request. Everything else is
    optional:

    - ``config``: a loaded :class:`~swapcore.config.GatewayConfig`; supplies
      aliases, ``useModelName``, the ``/v1/models`` listing (``unlisted``,
      ``name``, ``description``, ``metadata``, ``includeAliasesInList``),
      ``ttl`` for ``/running``, each model's and peer's ``timeouts``, and
      the defaults of ``api_keys``, ``peers``, ``send_loading_state`` (per
      model) and ``preload``.
    - ``upstreams``: each model's base URL, as a mapping or a function of
      the model id. Models it does not cover use their process' ``url``
      attribute (as :class:`~swapcore.adapters.subprocess.SubprocessProcess`
      has), then the config's ``proxy``.
    - ``timeouts``: how long to wait on upstreams
      (:class:`~swapcore.config.UpstreamTimeouts`): one value for every
      local model, or a mapping of model id to value. Models it does not
      cover use their config's ``timeouts``, else the defaults. Peers use
      their own config's.
    - ``api_keys``: when non-empty, every endpoint except ``/health``
      requires one of them (None: the config's ``apiKeys``).
    - ``peers``: other gateways, name -> :class:`~swapcore.config.PeerConfig`
      of that name (None: the config's). Their models are addressed as
      ``peer/model`` (or bare, when exactly one peer serves the name and no
      local model or alias claims it) and forwarded without a local swap.
    - ``send_loading_state``: stream loading progress to streaming chat
      requests that wait (None: per model from the config, else off).
    - ``preload``: models to load in the background once started (None: the
      config's ``hooks.on_startup.preload``).
    - ``http_client``: an ``aiohttp.ClientSession`` for every upstream call;
      the app then never closes it, and per-model connection settings
      (``idle_conn``, ``keepalive``) are the session's own. By default the
      app creates its sessions at startup (no proxy from the environment, no
      pool limit, no decompression) and closes them at shutdown.
    - ``manage_router``: the app's startup enters the router
      (``async with router``) and its shutdown shuts it down. Pass False when
      the host application runs the router itself.
    - ``max_body_size``: the largest request body (bytes; 413 beyond).
    - ``max_buffered_bytes``: the most request-body bytes held at once,
      over all requests (None: no limit); a request that would pass it gets
      503 with ``Retry-After``.
    - ``loading_tick``: see :data:`DEFAULT_LOADING_TICK`.
    - ``metrics``: serve Prometheus metrics at ``GET /metrics`` (a
      :class:`~swapcore.adapters.metrics.RouterMetrics` added to the
      router's listeners, see :attr:`metrics`). Needs ``prometheus-client``
      (the ``metrics`` extra); without it ``/metrics`` answers 501.
    - ``log_lines``, ``stream_backlog``, ``keepalive``: see
      :data:`DEFAULT_LOG_LINES`, :data:`DEFAULT_STREAM_BACKLOG` and
      :data:`DEFAULT_KEEPALIVE`.

    Invalid values raise :class:`~swapcore.ConfigError` naming the argument.
    The app runs its own lifespan when the server sends lifespan events
    (uvicorn does for the top-level app); mounted apps do not get them, so
    the host calls :meth:`startup`/:meth:`shutdown` or uses
    ``async with gateway:`` in its own lifespan.
    """

    def __init__(
        self,
        router: BaseRouter,
        *,
        config: GatewayConfig | None = None,
        upstreams: Upstreams | None = None,
        timeouts: UpstreamTimeouts | Mapping[str, UpstreamTimeouts] | None = None,
        api_keys: Iterable[str] | None = None,
        peers: Mapping[str, PeerConfig] | None = None,
        send_loading_state: bool | None = None,
        preload: Sequence[str] | None = None,
        http_client: aiohttp.ClientSession | None = None,
        manage_router: bool = True,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_buffered_bytes: int | None = DEFAULT_MAX_BUFFERED_BYTES,
        loading_tick: float = DEFAULT_LOADING_TICK,
        metrics: bool = True,
        log_lines: int = DEFAULT_LOG_LINES,
        stream_backlog: int = DEFAULT_STREAM_BACKLOG,
        keepalive: float = DEFAULT_KEEPALIVE,
    ) -> None:
        # What the caller fixed, kept across reconfigure(); None: from the config.
        self._given = (upstreams, timeouts, api_keys, peers, send_loading_state)
        if api_keys is None:
            api_keys = config.api_keys if config is not None else ()
        if isinstance(api_keys, str):
            raise ConfigError("api_keys: must be a sequence of keys, not one string")
        if peers is None:
            peers = config.peers if config is not None else {}
        if preload is None:
            preload = config.preload if config is not None else ()
        if isinstance(preload, str) or not all(isinstance(m, str) for m in preload):
            raise ConfigError("preload: must be a sequence of model ids")
        if http_client is not None and not isinstance(http_client, aiohttp.ClientSession):
            raise ConfigError("http_client: must be an aiohttp.ClientSession")
        self._max_body = _positive_int("max_body_size", max_body_size)
        if max_buffered_bytes is not None:
            max_buffered_bytes = _positive_int("max_buffered_bytes", max_buffered_bytes)
        self._router = router
        self._config = config
        self._catalog = Catalog(
            router,
            config,
            upstreams=upstreams,
            peers=peers,
            send_loading_state=send_loading_state,
        )
        self._timeouts = _model_timeouts(router, config, timeouts)
        self._keys = KeyChecker(api_keys)
        self._preload = tuple(preload)
        self._given_client = http_client
        self._client: UpstreamClient | None = None
        self._manage_router = bool(manage_router)
        self._budget = BodyBudget(max_buffered_bytes)
        self._tick = _positive("loading_tick", loading_tick)
        self._state = _NEW
        self._preload_task: asyncio.Task[None] | None = None
        self._calls: Calls | None = None
        self._closing: asyncio.Task[None] | None = None
        self._metrics = MetricsRoute(router, bool(metrics))
        self._ops = OperatorAPI(
            router,
            config,
            peers,
            self._catalog,
            log_lines=_positive_int("log_lines", log_lines),
            backlog=_positive_int("stream_backlog", stream_backlog),
            keepalive=_positive("keepalive", keepalive),
        )

    @classmethod
    def from_config(
        cls, config: GatewayConfig, router: BaseRouter | None = None, **options: Any
    ) -> GatewayApp:
        """Build the gateway a llama-swap ``config.yaml`` describes.

        ``router`` defaults to :func:`swapcore.config.build_router(config)
        <swapcore.config.build_router>` (subprocess models, the configured
        planner and scheduler). ``options`` are the other keyword arguments
        of the constructor. The app enters and shuts down that router in its
        lifespan and preloads ``config.preload`` in the background.
        """
        if router is None:
            from swapcore.config.build import build_router

            router = build_router(config)
        return cls(router, config=config, **options)

    def reconfigure(self, config: GatewayConfig) -> None:
        """Serve ``config`` from the next request on; requests already routed are unaffected.

        Aliases, names, the ``/v1/models`` listing, filters,
        ``useModelName``, ``sendLoadingState``, upstream timeouts, API keys
        and peers come from ``config`` from now on, except those the
        constructor was given explicitly. The router is not touched: call
        its :meth:`~swapcore.router.BaseRouter.reconfigure` first (the
        models are the router's). Everything new is built before anything
        is replaced, so an invalid value raises
        :class:`~swapcore.ConfigError` and leaves the app as it was.
        ``preload`` and the app's own options are not changed; the
        metrics count the requests of added models too.
        """
        upstreams, timeouts, api_keys, peers, send_loading_state = self._given
        if api_keys is None:
            api_keys = config.api_keys
        if peers is None:
            peers = config.peers
        catalog = Catalog(
            self._router,
            config,
            upstreams=upstreams,
            peers=peers,
            send_loading_state=send_loading_state,
        )
        model_timeouts = _model_timeouts(self._router, config, timeouts)
        keys = KeyChecker(api_keys)
        self._config, self._catalog, self._timeouts, self._keys = (
            config,
            catalog,
            model_timeouts,
            keys,
        )
        self._ops.reconfigure(self._router, config, peers, catalog)
        metrics = self._metrics.metrics
        if metrics is not None:
            metrics.add_models(self._router.models)

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` has begun: the app serves nothing more."""
        return self._state == _CLOSED

    @property
    def router(self) -> BaseRouter:
        """The router the app routes through."""
        return self._router

    @property
    def config(self) -> GatewayConfig | None:
        """The configuration given, if any."""
        return self._config

    @property
    def requires_api_key(self) -> bool:
        """True when every endpoint but ``/health`` needs an API key."""
        return self._keys.enabled

    @property
    def http_client(self) -> aiohttp.ClientSession | None:
        """The ``aiohttp.ClientSession`` given to the constructor, if any."""
        return self._given_client

    @property
    def metrics(self) -> RouterMetrics | None:
        """The metrics ``/metrics`` serves; None when off or ``prometheus-client`` is missing."""
        return self._metrics.metrics

    @property
    def dropped_streams(self) -> int:
        """Log and event streams dropped so far because their client read too slowly."""
        return self._ops.dropped

    @property
    def preload(self) -> tuple[str, ...]:
        """The models :meth:`startup` loads in the background."""
        return self._preload

    @property
    def preload_task(self) -> asyncio.Task[None] | None:
        """The background preload started by :meth:`startup`, or None."""
        return self._preload_task

    @property
    def buffered_bytes(self) -> int:
        """Request-body bytes the app holds right now."""
        return self._budget.held

    @property
    def open_requests(self) -> int:
        """HTTP requests the app is handling right now."""
        return 0 if self._calls is None else len(self._calls)

    def timeouts_for(self, model: str) -> UpstreamTimeouts:
        """The upstream timeouts that apply to local ``model``."""
        return self._timeouts.get(model, DEFAULT_MODEL_TIMEOUTS)

    # ------------------------------------------------------------- lifespan

    async def startup(self) -> None:
        """Enter the router (if managed) and start the preload.

        Idempotent. Preload failures are logged as warnings; they never fail
        the startup. If entering the router fails, the error propagates.
        """
        if self._state != _NEW:
            return
        self._state = _STARTED
        self._client = UpstreamClient(self._given_client)
        self._ops.start()
        if self._manage_router:
            try:
                await self._router.__aenter__()
            except BaseException:
                self._state = _CLOSED
                self._ops.close()
                await self._client.close()
                raise
        if self._preload:
            self._preload_task = asyncio.get_running_loop().create_task(
                self._run_preload(), name="swapcore-gateway-preload"
            )

    async def shutdown(self) -> None:
        """End every open request, shut the router down (if managed), close the client.

        Idempotent; concurrent calls wait for the first. Requests still open
        end at once: those not yet answered get ``503 shutting_down``, event
        streams get a last ``shutting_down`` error event. Returns once every
        model process has stopped (the router's shutdown), so nothing the app
        started outlives it. Cancelling the caller does not stop the shutdown.
        """
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        if self._state == _CLOSED:
            return
        was_started = self._state == _STARTED
        self._state = _CLOSED
        task = self._preload_task
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        calls = list(self._calls or ())
        for call in calls:
            call.end("shutdown")
        self._ops.close()
        tasks = {call.task for call in calls if not call.task.done()}
        if tasks:
            await asyncio.wait(tasks, timeout=_SHUTDOWN_GRACE)
        if self._calls is not None:
            self._calls.stop()
        try:
            if self._manage_router and was_started:
                await self._router.shutdown()
        finally:
            self._metrics.close()
            if self._client is not None:
                await self._client.close()

    def close_streams(self) -> None:
        """End every open log and event stream now, and refuse new ones (503).

        For a graceful shutdown: an ASGI server waits for open responses
        before it lets the app shut down, and these never end on their own.
        """
        self._ops.close()

    async def __aenter__(self) -> GatewayApp:
        """:meth:`startup`, for use in a host application's lifespan."""
        await self.startup()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """:meth:`shutdown`."""
        await self.shutdown()

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point: ``http`` and ``lifespan`` scopes (websockets are refused)."""
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("gateway startup failed")
                    failure = f"{type(exc).__name__}: {exc}"
                    await send({"type": "lifespan.startup.failed", "message": failure})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    logger.exception("gateway shutdown failed")
                    failure = f"{type(exc).__name__}: {exc}"
                    await send({"type": "lifespan.shutdown.failed", "message": failure})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = Exchange(send)
        task = asyncio.current_task()
        assert task is not None
        calls = self._calls
        if calls is None:
            calls = self._calls = Calls(task.get_loop())
        call = calls.open(task, exchange)
        method: str = scope["method"]
        path = route_path(scope)
        began = time.perf_counter()
        try:
            try:
                await self._route(scope, receive, call, method, path)
            except asyncio.CancelledError:
                await self._ended(call, call.absorb())
            except GatewayHTTPError as error:
                await exchange.error(error)
            except ClientDisconnected:
                pass
            except Exception as exc:
                logger.exception("%s %s: internal error", method, path)
                internal = GatewayHTTPError(
                    500,
                    f"internal gateway error: {type(exc).__name__}",
                    kind="server_error",
                    code="internal_error",
                )
                await exchange.error(internal)
        except asyncio.CancelledError:
            call.absorb()  # cancelled again while answering: the server is going down
        finally:
            calls.close(call)
            if logger.isEnabledFor(logging.DEBUG):
                # The path only: a query string may carry credentials.
                logger.debug(
                    "%s %s -> %s model=%s %.1f ms%s",
                    method,
                    path,
                    exchange.status or "-",
                    call.label or "-",
                    (time.perf_counter() - began) * 1000,
                    f" ({call.reason})" if call.reason else "",
                )

    def _load_hint(self, model: str) -> str:
        """What bringing ``model`` in will cost, for the loading progress' first line."""
        state = self._router.model_state(model)
        costs = self._router.costs
        if state is ProcessState.SLEEPING or state is ProcessState.STOPPED:
            waking = state is ProcessState.SLEEPING
            what = "waking it from sleep" if waking else "a cold start"
            seconds = costs.estimate(model, "wake" if waking else "load")
            if seconds is None:
                return f" ({what})"
            return f" ({what}, usually about {seconds:.1f} s)"
        return ""

    async def _ended(self, call: Call, reason: str) -> None:
        """Answer a request ended early, as its reason requires."""
        exchange = call.exchange
        label = call.label or "the model"
        if reason == DISCONNECT:
            return
        if reason == HEADER_TIMEOUT:
            logger.warning(
                "upstream of %r sent no response headers within %g s; request ended",
                label,
                call.limit,
            )
            await exchange.error(
                GatewayHTTPError(
                    504,
                    f"the upstream of {label!r} sent no response within {call.limit:g} s",
                    kind="upstream_error",
                    code="upstream_timeout",
                )
            )
        elif reason == READ_TIMEOUT:
            if exchange.sending:
                logger.warning(
                    "client of %r read nothing for %g s; response abandoned", label, call.limit
                )
                return  # the client does not read: another send would block as well
            logger.warning(
                "upstream of %r sent nothing for %g s mid-response; request ended",
                label,
                call.limit,
            )
            await exchange.error(
                GatewayHTTPError(
                    504,
                    f"the upstream of {label!r} sent nothing for {call.limit:g} s",
                    kind="upstream_error",
                    code="upstream_timeout",
                )
            )
        elif not exchange.sending:
            await exchange.error(shutting_down())

    async def _route(
        self, scope: Scope, receive: Receive, call: Call, method: str, path: str
    ) -> None:
        """Dispatch one request."""
        exchange = call.exchange
        if method == "OPTIONS":
            await preflight(scope, exchange)  # before the key check: preflights carry none
            return
        endpoint = match_route(method, path)
        if endpoint is Endpoint.HEALTH:
            await exchange.text(200, "OK")
            return
        if endpoint is Endpoint.UI:
            if not self._keys.allows(scope):
                # A Basic challenge: the browser asks for the key (the password) once and
                # sends it with the page's own fetches and event stream, as llama-swap's UI.
                raise _missing_key("Basic", " (give it as the password)")
            await serve_ui(exchange, head=method == "HEAD")
            return
        if endpoint is Endpoint.ROOT:
            await redirect_to_ui(exchange)
            return
        if not self._keys.allows(scope):
            raise _missing_key("Bearer")
        if endpoint is Endpoint.MODELS:
            listing = {"object": "list", "data": self._catalog.model_list()}
            await exchange.json(200, listing, allow_origin(scope))
        elif endpoint is Endpoint.MODEL:
            await self._retrieve_model(call, path[len("/v1/models/") :])
        elif endpoint is Endpoint.RUNNING:
            catalog = self._catalog
            await exchange.json(
                200, {"running": catalog.running(), "evictions": catalog.evictions()}
            )
        elif endpoint is Endpoint.METRICS:
            await self._metrics.answer(exchange)
        elif endpoint is Endpoint.UNLOAD:
            await self._unload(call, None)
        elif endpoint is Endpoint.UNLOAD_MODEL:
            await self._unload(call, urllib.parse.unquote(path[len("/unload/") :]))
        elif endpoint is Endpoint.API_UNLOAD:
            await self._unload(call, None, {"msg": "ok"})
        elif endpoint is Endpoint.API_UNLOAD_MODEL:
            name = urllib.parse.unquote(path[len("/api/models/unload/") :])
            await self._unload(call, name, {"msg": "ok"})
        elif endpoint is Endpoint.API_LOAD_MODEL:
            await self._load(call, urllib.parse.unquote(path[len("/api/models/load/") :]))
        elif endpoint is Endpoint.OPERATOR:
            await self._ops.route(scope, receive, call, method, path)
        elif endpoint is Endpoint.MODEL_GET:
            await self._model_get(scope, receive, call, method, path)
        elif endpoint is Endpoint.UPSTREAM:
            await self._passthrough(scope, receive, call, method, path)
        elif endpoint is Endpoint.INFERENCE:
            await self._inference(scope, receive, call, path)
        else:  # Endpoint.VERSIONLESS: llama-swap's /v/chat/completions, sent without /v
            await self._inference(scope, receive, call, path[len("/v") :])

    # ------------------------------------------------------------ inference

    async def _inference(self, scope: Scope, receive: Receive, call: Call, path: str) -> None:
        if self._state == _CLOSED:
            raise shutting_down()
        reject_encoding(header(scope, b"content-encoding"))
        read = await read_body(receive, scope, self._max_body, self._budget)
        try:
            body = await self._parse(header(scope, b"content-type") or "", read.data)
            del read.data  # the body lives on as body.raw only
            catalog = self._catalog
            requested = body.model  # before a rename: setParamsByID is keyed by it
            local = catalog.resolve_local(requested)
            if local is not None:
                call.label = local
                use = catalog.use_model_name(local)
                content = body.renamed(use) if use else body.raw
                content = await filter_request(
                    content, body.kind, catalog.filters(local), requested
                )
                loading = (
                    body.stream and path == "/v1/chat/completions" and catalog.loads_visibly(local)
                )
                call.watch_disconnect(receive)
                await self._serve_local(scope, call, local, "POST", path, content, loading=loading)
                return
            found = catalog.resolve_peer(body.model)
            if found is None:
                self._metrics.rejected("", "model_not_found")
                raise model_not_found(body.model)
            peer, model = found
            call.label = f"{peer.name}/{model}"
            call.watch_disconnect(receive)
            content = await filter_request(body.renamed(model), body.kind, peer.filters, requested)
            await self._serve_peer(scope, call, peer, path, content)
        finally:
            self._budget.give(read.held)

    async def _parse(self, content_type: str, raw: bytearray) -> RequestBody:
        """Parse the body; large JSON bodies are scanned in a worker thread."""
        if needs_scan(content_type, raw):
            return await asyncio.to_thread(parse_body, content_type, raw)
        return parse_body(content_type, raw)

    async def _passthrough(
        self, scope: Scope, receive: Receive, call: Call, method: str, path: str
    ) -> None:
        """``/upstream/<model>/<rest>``: acquire the model, forward any method to ``/<rest>``."""
        found = split_upstream_path(path, self._catalog.resolve_local)
        if found is None:
            raise GatewayHTTPError(
                404,
                "no local model named in the path: use /upstream/<model>/<path>",
                kind="invalid_request_error",
                code="model_not_found",
            )
        model, segments, count = found
        rest = "/" + "/".join(segments[count:])
        call.label = model
        exchange = call.exchange
        if count == len(segments):
            # /upstream/<model> -> /upstream/<model>/, so relative links in pages resolve.
            location = segments[-1] + "/"
            query = scope.get("query_string", b"")
            if query:
                location += "?" + query.decode("latin-1")
            await exchange.start(
                301 if method in ("GET", "HEAD") else 308,
                [(b"location", location.encode()), (b"content-length", b"0")],
            )
            await exchange.finish()
            return
        if self._state == _CLOSED:
            raise shutting_down()
        reject_encoding(header(scope, b"content-encoding"))
        read = await read_body(receive, scope, self._max_body, self._budget)
        try:
            call.watch_disconnect(receive)
            await self._serve_local(scope, call, model, method, rest, read.data, loading=False)
        finally:
            self._budget.give(read.held)

    async def _serve_local(
        self,
        scope: Scope,
        call: Call,
        model: str,
        method: str,
        path: str,
        content: bytes | bytearray,
        *,
        loading: bool,
    ) -> None:
        """Acquire ``model``, relay the request upstream, release once the body is sent."""
        exchange = call.exchange
        reporter: LoadingReporter | None = None
        on_position = None
        if loading:
            reporter = LoadingReporter(
                exchange, model=model, tick=self._tick, hint=lambda: self._load_hint(model)
            )
            on_position = reporter.position
            # Advisory read: it only decides whether to show progress.
            if self._router.model_state(model) is not ProcessState.READY:
                reporter.begin()
        headers = upstream_headers(scope, strip_auth=self._keys.enabled)
        url_path = path, scope.get("query_string", b"")
        try:
            for attempt in range(_REROUTES + 1):
                try:
                    async with self._router.acquire(model, on_position=on_position) as lease:
                        if reporter is not None:
                            await reporter.finish()
                        process = lease.process
                        base = self._catalog.upstream_base(model, process)
                        await relay(
                            self._upstream_client(),
                            call,
                            method=method,
                            url=upstream_url(base, *url_path),
                            headers=headers,
                            content=content,
                            label=repr(model),
                            timeouts=self._timeouts.get(model, DEFAULT_MODEL_TIMEOUTS),
                            ready=functools.partial(_is_ready, process),
                        )
                    return
                except ModelDown as down:
                    # It stopped (a crash) before the request reached it: route it again,
                    # which starts the model anew.
                    if attempt == _REROUTES:
                        raise down.error from None
                    logger.info(
                        "model %r went down before the request reached it; rerouting", model
                    )
                except (RoutingError, RouterNotRunning) as exc:
                    if reporter is not None:
                        await reporter.stop()
                    await exchange.error(routing_error(exc))
                    return
        finally:
            if reporter is not None:
                await reporter.close()

    async def _serve_peer(
        self, scope: Scope, call: Call, peer: PeerConfig, path: str, content: bytes | bytearray
    ) -> None:
        """Forward to a peer gateway: no local swap, the peer's key instead of the client's."""
        await relay(
            self._upstream_client(),
            call,
            method="POST",
            url=upstream_url(peer.proxy, path, scope.get("query_string", b"")),
            headers=upstream_headers(scope, strip_auth=self._keys.enabled, api_key=peer.api_key),
            content=content,
            label=f"peer {peer.name!r}",
            timeouts=peer.timeouts,
        )

    async def _model_get(
        self, scope: Scope, receive: Receive, call: Call, method: str, path: str
    ) -> None:
        """``GET /props?model=...`` and the like: acquire the model, forward the request."""
        if self._state == _CLOSED:
            raise shutting_down()
        query = urllib.parse.parse_qsl(
            scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
        )
        names = [value for key, value in query if key == "model" and value]
        if not names:
            raise GatewayHTTPError(
                404,
                f"no model named: use {path}?model=<model>",
                kind="invalid_request_error",
                code="model_not_found",
            )
        catalog = self._catalog
        model = catalog.resolve_local(names[0])
        if model is None:
            raise model_not_found(names[0])
        call.label = model
        use = catalog.use_model_name(model)
        if use:
            query = [(k, use if k == "model" else v) for k, v in query]
            scope = {**scope, "query_string": urllib.parse.urlencode(query).encode()}
        call.watch_disconnect(receive)
        await self._serve_local(scope, call, model, method, path, b"", loading=False)

    # ---------------------------------------------------------- management

    async def _retrieve_model(self, call: Call, model_id: str) -> None:
        model_id = urllib.parse.unquote(model_id)
        for record in self._catalog.model_list():
            if record["id"] == model_id:
                await call.exchange.json(200, record)
                return
        raise model_not_found(model_id)

    async def _unload(
        self, call: Call, name: str | None, extra: Mapping[str, object] | None = None
    ) -> None:
        router = self._router
        if name is None:
            targets: tuple[str, ...] = ()
            unloaded = list(router.running_models())
        else:
            model = self._catalog.resolve_local(name)
            if model is None:
                raise model_not_found(name)
            call.label = model
            targets = (model,)
            unloaded = [model]
        try:
            await router.unload(*targets)
        except (RoutingError, RouterNotRunning) as exc:
            raise routing_error(exc) from None
        except Exception as exc:
            logger.warning("unload of %s failed: %s", name or "all models", first_line(str(exc)))
            raise GatewayHTTPError(
                500,
                f"unload failed: {first_line(str(exc)) or type(exc).__name__}",
                kind="server_error",
                code="unload_failed",
            ) from None
        await call.exchange.json(200, {**(extra or {}), "unloaded": unloaded})

    async def _load(self, call: Call, name: str) -> None:
        """Load one model (the UI's Load button): a swap to it, as a preload."""
        model = self._catalog.resolve_local(name)
        if model is None:
            raise model_not_found(name)
        call.label = model
        try:
            await self._router.preload(model)
        except (RoutingError, RouterNotRunning) as exc:
            raise routing_error(exc) from None
        await call.exchange.json(200, {"msg": "ok", "loaded": [model]})

    # ------------------------------------------------------------- helpers

    def _upstream_client(self) -> UpstreamClient:
        if self._client is None:
            # Mounted without a lifespan: create it on first use (closed by shutdown()).
            self._client = UpstreamClient(self._given_client)
        return self._client

    async def _run_preload(self) -> None:
        for model in self._preload:
            try:
                with self._metrics.preloading(model):
                    await self._router.preload(model)
            except (RoutingError, RouterNotRunning) as exc:
                logger.warning("preload of %r failed: %s", model, first_line(str(exc)))
            else:
                logger.debug("preloaded %r", model)


def _missing_key(scheme: str, hint: str = "") -> GatewayHTTPError:
    """401 for a request without a valid API key, challenging with ``scheme``."""
    return GatewayHTTPError(
        401,
        f"invalid or missing API key{hint}",
        kind="authentication_error",
        code="invalid_api_key",
        headers=[(b"www-authenticate", f'{scheme} realm="swapcore"'.encode())],
    )


def _is_ready(process: Process) -> bool:
    return process.state is ProcessState.READY


def _model_timeouts(
    router: BaseRouter,
    config: GatewayConfig | None,
    given: UpstreamTimeouts | Mapping[str, UpstreamTimeouts] | None,
) -> dict[str, UpstreamTimeouts]:
    """Each local model's timeouts: the argument's, else the config's, else the defaults."""
    result: dict[str, UpstreamTimeouts] = {}
    if config is not None:
        for entry in config.models.values():
            result[entry.id] = entry.timeouts
    if isinstance(given, UpstreamTimeouts):
        return {model: given for model in router.models}
    if given is not None:
        if not isinstance(given, Mapping):
            raise ConfigError("timeouts: must be an UpstreamTimeouts or a mapping of them")
        for model, value in given.items():
            if not isinstance(value, UpstreamTimeouts):
                raise ConfigError(f"timeouts[{model!r}]: must be an UpstreamTimeouts")
            if not router.handles(model):
                raise ConfigError(f"timeouts: {model!r} is not a handled model")
            result[model] = value
    return result


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(f"{name}: must be a positive number of seconds, got {value!r}")
    return float(value)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: must be a positive int, got {value!r}")
    return value
