"""Calling upstreams: aiohttp sessions, bounded waits, retried refusals, streamed answers.

Internal to :mod:`swapcore.adapters.asgi`. aiohttp was chosen by
measurement over httpx and httpcore (docs/gateway.md has the figures): it
costs the gateway the least CPU per request and per streamed chunk.

Every upstream call is bounded by the model's (or peer's)
:class:`~swapcore.config.UpstreamTimeouts`: ``connect`` (aiohttp's socket
connect timeout; ``tls_handshake`` is added for https), ``response_header``
and ``read`` (the request's :class:`~swapcore.adapters._calls.Call` timer).
A connection refused by a model that is ready (just started, say, with
``checkEndpoint: none``) never reached the upstream, so it is retried until
``connect`` runs out.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import aiohttp

from swapcore.adapters._calls import Call
from swapcore.adapters._errors import GatewayHTTPError, upstream_status_error
from swapcore.adapters._http import NO_BUFFERING, forwardable_response_headers

if TYPE_CHECKING:
    from swapcore.config.schema import UpstreamTimeouts

__all__ = ["ModelDown", "UpstreamClient", "relay"]

logger = logging.getLogger("swapcore.adapters.asgi")

_SLICE = 256 * 1024  # larger bodies go out in slices of this size, never copied whole
_ERROR_PREVIEW = 64 * 1024  # bytes of an upstream error body quoted in an SSE error event
_RETRY_FIRST, _RETRY_MAX = 0.05, 0.5  # backoff between retries of a refused connection
_RETRY_BUDGET = 30.0  # how long refusals are retried when connect has no limit
# aiohttp would add these on its own; the gateway forwards only the client's.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class ModelDown(Exception):
    """The model stopped before the request reached it: it may be routed again."""

    def __init__(self, error: GatewayHTTPError) -> None:
        super().__init__(error.message)
        self.error = error  # the answer if it cannot be routed again


def _keepalive_socket(idle: float | None) -> Callable[[object], socket.socket]:
    """A socket factory that turns on TCP keep-alive probes after ``idle`` seconds."""

    def make(addr_info: object) -> socket.socket:
        family, kind, proto = addr_info[0], addr_info[1], addr_info[2]  # type: ignore[index]
        sock = socket.socket(family=family, type=kind, proto=proto)
        if idle is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_KEEPIDLE"):
                seconds = max(1, round(idle))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, seconds)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, seconds)
        return sock

    return make


class UpstreamClient:
    """The aiohttp sessions the gateway calls upstreams with.

    One session (and so one connection pool) per distinct ``idle_conn`` and
    ``keepalive`` setting; usually that is a single one. ``session``, when
    given, is used for every call and never closed here.
    """

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._given = session
        self._sessions: dict[tuple[float | None, float | None], aiohttp.ClientSession] = {}

    def session(self, timeouts: UpstreamTimeouts) -> aiohttp.ClientSession:
        """The session for an upstream with these timeouts (created on first use)."""
        if self._given is not None:
            return self._given
        key = (timeouts.idle_conn, timeouts.keepalive)
        session = self._sessions.get(key)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=0,
                keepalive_timeout=timeouts.idle_conn,
                socket_factory=_keepalive_socket(timeouts.keepalive),
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                # A gateway must never carry one client's cookies to another's request.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                trust_env=False,
            )
            self._sessions[key] = session
        return session

    async def close(self) -> None:
        """Close the sessions this client created."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


@functools.lru_cache(maxsize=64)
def _timeout(timeouts: UpstreamTimeouts, tls: bool) -> aiohttp.ClientTimeout:
    connect = timeouts.connect
    if connect is not None and tls and timeouts.tls_handshake is not None:
        connect += timeouts.tls_handshake
    return aiohttp.ClientTimeout(total=None, sock_connect=connect)


def _is_event_stream(content_type: str | None) -> bool:
    return content_type is not None and content_type.lower().startswith("text/event-stream")


async def relay(
    client: UpstreamClient,
    call: Call,
    *,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    content: bytes | bytearray,
    label: str,
    timeouts: UpstreamTimeouts,
    ready: Callable[[], bool] | None = None,
) -> None:
    """Send the request upstream and stream the response back, chunk by chunk.

    A connection failure before any response is a 502 ``upstream_unreachable``
    (504 ``upstream_timeout`` when connecting timed out); a refused
    connection is retried first while ``ready()`` says the model is up and
    ``connect`` has not run out, and raises :class:`ModelDown` once
    ``ready()`` says it is not (the request never reached it). Once the
    request is sent, ``call`` bounds the wait for headers (``response_header``) and then any silence
    (``read``); when one fires, the request's task is cancelled and the
    caller answers. When the response has already started (the loading
    progress opened a 200 event stream), the upstream's status and headers
    are not forwarded, and a non-200 answer becomes an SSE error event. A
    failure mid-body is reported with :meth:`Exchange.error`. The upstream
    response is always closed, also on cancellation.
    """
    exchange = call.exchange
    session = client.session(timeouts)
    timeout = _timeout(timeouts, url.startswith("https:"))
    loop = asyncio.get_running_loop()
    retry_until = loop.time() + (timeouts.connect or _RETRY_BUDGET)
    pause = _RETRY_FIRST
    sent_length = False
    while True:
        call.expect_headers(timeouts.response_header)
        try:
            data: object = content
            if len(content) > _SLICE:
                data = _slices(content)
                if not sent_length:
                    headers = [*headers, ("content-length", str(len(content)))]
                    sent_length = True
            response = await session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                compress=None,
            )
            break
        except aiohttp.ClientConnectorError as exc:
            if ready is not None and not ready():
                raise ModelDown(_unreachable(label, exc)) from None
            if ready is None or loop.time() + pause > retry_until:
                raise _unreachable(label, exc) from None
            logger.debug("upstream of %s refused the connection; retrying", label)
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError):
            limit = timeouts.connect or 0.0
            raise GatewayHTTPError(
                504,
                f"connecting to the upstream of {label} timed out after {limit:g} s",
                kind="upstream_error",
                code="upstream_timeout",
            ) from None
        except aiohttp.ClientError as exc:
            raise _unreachable(label, exc) from None
        finally:
            call.stop_timer()
        await asyncio.sleep(pause)
        pause = min(pause * 2, _RETRY_MAX)
    try:
        call.expect_progress(timeouts.read)
        if exchange.started:
            if response.status != 200:
                detail = await _read_some(response, _ERROR_PREVIEW)
                await exchange.error(upstream_status_error(response.status, detail))
                return
        else:
            response_headers = forwardable_response_headers(response.raw_headers)
            exchange.sse = _is_event_stream(response.headers.get("content-type"))
            if exchange.sse:
                response_headers.append(NO_BUFFERING)
            await exchange.start(response.status, response_headers)
        content_stream = response.content
        now = call.now
        while True:
            chunk = await content_stream.readany()
            if not chunk:
                break
            call.last = now()
            await exchange.body(chunk)
        call.stop_timer()
        await exchange.finish()
    except aiohttp.ClientError as exc:
        call.stop_timer()
        logger.warning("upstream of %s failed mid-response: %s", label, _describe(exc))
        await exchange.error(
            GatewayHTTPError(
                502,
                f"upstream of {label} failed mid-response: {_describe(exc)}",
                kind="upstream_error",
                code="upstream_failed",
            )
        )
    finally:
        call.stop_timer()
        response.close()


async def _slices(content: bytes | bytearray) -> AsyncIterator[memoryview]:
    """The body in slices: the transport buffers one slice at a time, not a copy of it all."""
    view = memoryview(content)
    for start in range(0, len(view), _SLICE):
        yield view[start : start + _SLICE]


def _unreachable(label: str, exc: BaseException) -> GatewayHTTPError:
    logger.warning("upstream of %s unreachable: %s", label, _describe(exc))
    return GatewayHTTPError(
        502,
        f"upstream of {label} unreachable: {_describe(exc)}",
        kind="upstream_error",
        code="upstream_unreachable",
    )


def _describe(exc: BaseException) -> str:
    """What went wrong, without URLs (they may carry credentials in their query)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return "connection refused"
        reason = os_error.strerror or type(os_error).__name__
        return f"cannot connect: {reason}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the response body was cut short"
    if isinstance(exc, aiohttp.ClientOSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


async def _read_some(response: aiohttp.ClientResponse, limit: int) -> bytes:
    data = b""
    while len(data) < limit:
        chunk = await response.content.readany()
        if not chunk:
            break
        data += chunk
    return data[:limit]
