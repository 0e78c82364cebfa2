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
import logging
import math
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from swapcore.adapters._auth import KeyChecker
from swapcore.adapters._catalog import Catalog, Upstreams
from swapcore.adapters._errors import (
    GatewayHTTPError,
    check_method,
    first_line,
    model_not_found,
    routing_error,
)
from swapcore.adapters._http import (
    ClientDisconnected,
    Exchange,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    route_path,
)
from swapcore.adapters._proxy import relay, until_disconnect, upstream_headers, upstream_url
from swapcore.adapters._requests import parse_body
from swapcore.adapters._sse import LoadingReporter
from swapcore.errors import ConfigError, RouterNotRunning, RoutingError
from swapcore.process import ProcessState

if TYPE_CHECKING:
    from swapcore.config.schema import GatewayConfig, PeerConfig
    from swapcore.router import BaseRouter

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_LOADING_TICK",
    "DEFAULT_MAX_BODY_SIZE",
    "INFERENCE_PATHS",
    "GatewayApp",
    "Upstreams",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024
"""Largest request body accepted (bytes); larger ones get HTTP 413."""
DEFAULT_LOADING_TICK = 1.0
"""Seconds between keep-alive dots of the loading progress stream."""
DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds to connect to an upstream once its model is ready."""
INFERENCE_PATHS = frozenset({"/completion", "/infill", "/rerank", "/reranking"})
"""POST paths outside ``/v1/`` that are routed by their body's model (llama.cpp's own)."""

_NEW, _STARTED, _CLOSED = "new", "started", "closed"


class GatewayApp:
    """An ASGI app that routes OpenAI-style requests through a router to upstream servers.

    ``router`` decides which model serves each request. Everything else is
    optional:

    - ``config``: a loaded :class:`~swapcore.config.GatewayConfig`; supplies
      aliases, ``useModelName``, the ``/v1/models`` listing (``unlisted``,
      ``name``, ``description``, ``metadata``, ``includeAliasesInList``),
      ``ttl`` for ``/running``, and the defaults of ``api_keys``, ``peers``,
      ``send_loading_state`` (per model) and ``preload``.
    - ``upstreams``: each model's base URL, as a mapping or a function of
      the model id. Models it does not cover use their process' ``url``
      attribute (as :class:`~swapcore.adapters.subprocess.SubprocessProcess`
      has), then the config's ``proxy``.
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
    - ``http_client``: the ``httpx.AsyncClient`` for upstream calls; the app
      then never closes it. By default the app creates one at startup (no
      read timeout, ``connect_timeout`` to connect, no proxy from the
      environment, no pool limit) and closes it at shutdown.
    - ``manage_router``: the app's startup enters the router
      (``async with router``) and its shutdown shuts it down. Pass False when
      the host application runs the router itself.
    - ``max_body_size``, ``loading_tick``, ``connect_timeout``: see the
      module constants.

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
        api_keys: Iterable[str] | None = None,
        peers: Mapping[str, PeerConfig] | None = None,
        send_loading_state: bool | None = None,
        preload: Sequence[str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        manage_router: bool = True,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        loading_tick: float = DEFAULT_LOADING_TICK,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
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
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigError("http_client: must be an httpx.AsyncClient")
        if isinstance(max_body_size, bool) or not isinstance(max_body_size, int):
            raise ConfigError(f"max_body_size: must be a positive int, got {max_body_size!r}")
        if max_body_size < 1:
            raise ConfigError(f"max_body_size: must be a positive int, got {max_body_size!r}")
        self._router = router
        self._config = config
        self._catalog = Catalog(
            router,
            config,
            upstreams=upstreams,
            peers=peers,
            send_loading_state=send_loading_state,
        )
        self._keys = KeyChecker(api_keys)
        self._preload = tuple(preload)
        self._client = http_client
        self._owns_client = False
        self._manage_router = bool(manage_router)
        self._max_body = max_body_size
        self._tick = _positive("loading_tick", loading_tick)
        self._connect_timeout = _positive("connect_timeout", connect_timeout)
        self._state = _NEW
        self._preload_task: asyncio.Task[None] | None = None

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
    def http_client(self) -> httpx.AsyncClient | None:
        """The client for upstream calls: the one given, or the app's own once created."""
        return self._client

    @property
    def preload(self) -> tuple[str, ...]:
        """The models :meth:`startup` loads in the background."""
        return self._preload

    @property
    def preload_task(self) -> asyncio.Task[None] | None:
        """The background preload started by :meth:`startup`, or None."""
        return self._preload_task

    # ------------------------------------------------------------- lifespan

    async def startup(self) -> None:
        """Create the HTTP client, enter the router (if managed), start the preload.

        Idempotent. Preload failures are logged as warnings; they never fail
        the startup. If entering the router fails, the client is closed
        again and the error propagates.
        """
        if self._state != _NEW:
            return
        self._state = _STARTED
        created = self._ensure_client()
        if self._manage_router:
            try:
                await self._router.__aenter__()
            except BaseException:
                self._state = _CLOSED
                if created:
                    await self._close_client()
                raise
        if self._preload:
            self._preload_task = asyncio.get_running_loop().create_task(
                self._run_preload(), name="swapcore-gateway-preload"
            )

    async def shutdown(self) -> None:
        """Stop the preload, shut the router down (if managed), close the owned client.

        Idempotent. Returns once every model process has stopped (the
        router's shutdown), so nothing the app started outlives it. Requests
        still streaming see their upstream go away and end with an error.
        """
        if self._state == _CLOSED:
            return
        was_started = self._state == _STARTED
        self._state = _CLOSED
        task = self._preload_task
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        try:
            if self._manage_router and was_started:
                await self._router.shutdown()
        finally:
            await self._close_client()

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
        method: str = scope["method"]
        path = route_path(scope)
        began = time.perf_counter()
        label: str | None = None
        try:
            label = await self._route(scope, receive, exchange, method, path)
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
            if not exchange.started:
                await exchange.error(internal)
        finally:
            if logger.isEnabledFor(logging.DEBUG):
                # The path only: a query string may carry credentials.
                logger.debug(
                    "%s %s -> %s model=%s %.1f ms",
                    method,
                    path,
                    exchange.status or "-",
                    label or "-",
                    (time.perf_counter() - began) * 1000,
                )

    async def _route(
        self, scope: Scope, receive: Receive, exchange: Exchange, method: str, path: str
    ) -> str | None:
        """Dispatch one request; returns the model it concerned, for the log line."""
        if path == "/health":
            check_method(method, "GET", "HEAD")
            await exchange.text(200, "OK")
            return None
        if not self._keys.allows(scope):
            raise GatewayHTTPError(
                401,
                "invalid or missing API key",
                kind="authentication_error",
                code="invalid_api_key",
                headers=[(b"www-authenticate", b'Bearer realm="swapcore"')],
            )
        if path == "/v1/models":
            check_method(method, "GET", "HEAD")
            await exchange.json(200, {"object": "list", "data": self._catalog.model_list()})
            return None
        if path.startswith("/v1/models/"):
            check_method(method, "GET", "HEAD")
            return await self._retrieve_model(exchange, path[len("/v1/models/") :])
        if path == "/running":
            check_method(method, "GET", "HEAD")
            await exchange.json(200, {"running": self._catalog.running()})
            return None
        if path == "/unload":
            check_method(method, "POST", "GET")  # GET: llama-swap's own method for /unload
            return await self._unload(exchange, None)
        if path.startswith("/unload/"):
            check_method(method, "POST")
            return await self._unload(exchange, urllib.parse.unquote(path[len("/unload/") :]))
        if path == "/upstream" or path.startswith("/upstream/"):
            return await self._passthrough(scope, receive, exchange, method, path)
        if path.startswith("/v1/") or path in INFERENCE_PATHS:
            check_method(method, "POST")
            return await self._inference(scope, receive, exchange, path)
        raise GatewayHTTPError(
            404, f"no route for {path}", kind="invalid_request_error", code="not_found"
        )

    # ------------------------------------------------------------ inference

    async def _inference(
        self, scope: Scope, receive: Receive, exchange: Exchange, path: str
    ) -> str:
        raw = await read_body(receive, self._max_body)
        body = parse_body(header(scope, b"content-type") or "", raw)
        catalog = self._catalog
        local = catalog.resolve_local(body.model)
        if local is not None:
            use = catalog.use_model_name(local)
            content = body.renamed(use) if use else raw
            loading = (
                body.stream and path == "/v1/chat/completions" and catalog.loads_visibly(local)
            )
            work = self._serve_local(
                scope, exchange, local, "POST", path, content, loading=loading, shown=body.model
            )
            await until_disconnect(receive, exchange, work)
            return local
        found = catalog.resolve_peer(body.model)
        if found is None:
            raise model_not_found(body.model)
        peer, model = found
        work = self._serve_peer(scope, exchange, peer, path, body.renamed(model))
        await until_disconnect(receive, exchange, work)
        return f"{peer.name}/{model}"

    async def _passthrough(
        self, scope: Scope, receive: Receive, exchange: Exchange, method: str, path: str
    ) -> str:
        """``/upstream/<model>/<rest>``: acquire the model, forward any method to ``/<rest>``."""
        segments = path[len("/upstream/") :].split("/")
        for count in range(1, len(segments) + 1):
            name = "/".join(segments[:count])
            model = self._catalog.resolve_local(name) if name else None
            if model is not None:
                rest = "/" + "/".join(segments[count:])
                break
        else:
            raise GatewayHTTPError(
                404,
                "no local model named in the path: use /upstream/<model>/<path>",
                kind="invalid_request_error",
                code="model_not_found",
            )
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
            return model
        content = await read_body(receive, self._max_body)
        work = self._serve_local(scope, exchange, model, method, rest, content, loading=False)
        await until_disconnect(receive, exchange, work)
        return model

    async def _serve_local(
        self,
        scope: Scope,
        exchange: Exchange,
        model: str,
        method: str,
        path: str,
        content: bytes,
        *,
        loading: bool,
        shown: str = "",
    ) -> None:
        """Acquire ``model``, relay the request upstream, release once the body is sent."""
        reporter: LoadingReporter | None = None
        on_position = None
        if loading:
            reporter = LoadingReporter(exchange, model=shown or model, tick=self._tick)
            on_position = reporter.position
            # Advisory read (REFERENCE §2): it only decides whether to show progress.
            if self._router.model_state(model) is not ProcessState.READY:
                reporter.begin()
        try:
            try:
                async with self._router.acquire(model, on_position=on_position) as lease:
                    if reporter is not None:
                        await reporter.finish()
                    base = self._catalog.upstream_base(model, lease.process)
                    await relay(
                        self._client_for_request(),
                        exchange,
                        method=method,
                        url=upstream_url(base, path, scope.get("query_string", b"")),
                        headers=upstream_headers(scope, strip_auth=self._keys.enabled),
                        content=content,
                        label=repr(model),
                    )
            except (RoutingError, RouterNotRunning) as exc:
                if reporter is not None:
                    await reporter.stop()
                await exchange.error(routing_error(exc))
        finally:
            if reporter is not None:
                await reporter.close()

    async def _serve_peer(
        self, scope: Scope, exchange: Exchange, peer: PeerConfig, path: str, content: bytes
    ) -> None:
        """Forward to a peer gateway: no local swap, the peer's key instead of the client's."""
        await relay(
            self._client_for_request(),
            exchange,
            method="POST",
            url=upstream_url(peer.proxy, path, scope.get("query_string", b"")),
            headers=upstream_headers(scope, strip_auth=self._keys.enabled, api_key=peer.api_key),
            content=content,
            label=f"peer {peer.name!r}",
        )

    # ---------------------------------------------------------- management

    async def _retrieve_model(self, exchange: Exchange, model_id: str) -> str:
        model_id = urllib.parse.unquote(model_id)
        for record in self._catalog.model_list():
            if record["id"] == model_id:
                await exchange.json(200, record)
                return model_id
        raise model_not_found(model_id)

    async def _unload(self, exchange: Exchange, name: str | None) -> str | None:
        router = self._router
        if name is None:
            targets: tuple[str, ...] = ()
            unloaded = list(router.running_models())
        else:
            model = self._catalog.resolve_local(name)
            if model is None:
                raise model_not_found(name)
            targets = (model,)
            unloaded = [model]
        try:
            await router.unload(*targets)
        except (RoutingError, RouterNotRunning) as exc:
            raise routing_error(exc) from None
        except Exception as exc:
            logger.warning("unload of %s failed: %s", name or "all models", exc)
            raise GatewayHTTPError(
                500,
                f"unload failed: {first_line(str(exc)) or type(exc).__name__}",
                kind="server_error",
                code="unload_failed",
            ) from None
        await exchange.json(200, {"unloaded": unloaded})
        return name

    # ------------------------------------------------------------- helpers

    def _ensure_client(self) -> bool:
        """Create the owned client if there is none; True if created."""
        if self._client is not None:
            return False
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=self._connect_timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            trust_env=False,
            follow_redirects=False,
        )
        self._owns_client = True
        return True

    def _client_for_request(self) -> httpx.AsyncClient:
        if self._client is None:
            # Mounted without a lifespan: create it on first use (closed by shutdown()).
            self._ensure_client()
        assert self._client is not None
        return self._client

    async def _close_client(self) -> None:
        client = self._client
        if client is not None and self._owns_client:
            self._client = None
            self._owns_client = False
            await client.aclose()

    async def _run_preload(self) -> None:
        for model in self._preload:
            try:
                await self._router.preload(model)
            except (RoutingError, RouterNotRunning) as exc:
                logger.warning("preload of %r failed: %s", model, first_line(str(exc)))
            else:
                logger.debug("preloaded %r", model)


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(f"{name}: must be a positive number of seconds, got {value!r}")
    return float(value)
