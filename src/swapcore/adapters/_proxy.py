"""Relaying one request upstream and its response back, and watching for disconnects.

Internal to :mod:`swapcore.adapters.asgi`.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Coroutine
from typing import Any

import httpx

from swapcore.adapters._errors import GatewayHTTPError, describe, upstream_status_error
from swapcore.adapters._http import (
    NO_BUFFERING,
    Exchange,
    Headers,
    Receive,
    Scope,
    forwardable_request_headers,
    forwardable_response_headers,
    header,
    wait_for_disconnect,
)

__all__ = ["relay", "until_disconnect", "upstream_headers", "upstream_url"]

logger = logging.getLogger("swapcore.adapters.asgi")

_ERROR_PREVIEW = 64 * 1024  # bytes of an upstream error body quoted in an SSE error event


async def until_disconnect(
    receive: Receive, exchange: Exchange, work: Coroutine[Any, Any, None]
) -> None:
    """Run ``work``; cancel it if the client disconnects before the response is complete.

    Call once the request body has been read: from then on the only message
    ``receive`` can bring is ``http.disconnect``. Servers also send it once
    the response is complete; ``exchange.finished`` tells the two apart, so
    ``work``'s own cleanup is never cut short. Re-raises what ``work``
    raised; returns quietly when it was cancelled for a disconnect.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and not exchange.finished:
            task.cancel()  # the client left: withdraw its request or close the upstream
        await asyncio.wait((task,))
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.wait((task,))
        raise
    finally:
        watcher.cancel()
        await asyncio.wait((watcher,))
        if not watcher.cancelled():
            watcher.exception()  # a server whose receive() fails after a disconnect
    if not task.cancelled():
        task.result()


def upstream_url(base: str, path: str, query: bytes) -> str:
    """``base`` + the (re-quoted) ``path`` + ``?query``."""
    url = base.rstrip("/") + urllib.parse.quote(path, safe="/:@!$&'()*+,;=~")
    if query:
        url += "?" + query.decode("latin-1")
    return url


def upstream_headers(scope: Scope, *, strip_auth: bool, api_key: str = "") -> Headers:
    """The request headers to send upstream.

    The client's headers without hop-by-hop ones (and without its
    ``Authorization``/``x-api-key`` when ``strip_auth``); its
    ``Accept-Encoding``, or ``identity`` when it sent none (else httpx would
    ask for gzip on its behalf); ``api_key`` as bearer and ``x-api-key``.
    """
    headers = forwardable_request_headers(
        scope.get("headers", ()), strip_auth=strip_auth or bool(api_key)
    )
    accept = header(scope, b"accept-encoding") or "identity"
    headers.append((b"accept-encoding", accept.encode("latin-1")))
    if api_key:
        key = api_key.encode()
        headers += [(b"authorization", b"Bearer " + key), (b"x-api-key", key)]
    return headers


async def relay(
    client: httpx.AsyncClient,
    exchange: Exchange,
    *,
    method: str,
    url: str,
    headers: Headers,
    content: bytes,
    label: str,
) -> None:
    """Send the request upstream and stream the response back, one chunk per message.

    A connection failure before any response raises a 502
    ``upstream_unreachable``. When ``exchange`` has already started (the
    loading progress opened a 200 event stream), the upstream's status and
    headers are not forwarded, and a non-200 answer becomes an SSE error
    event. A failure mid-body is reported with :meth:`Exchange.error`
    (an error event in an event stream; otherwise the response is left
    unfinished). The upstream response is always closed, also on
    cancellation (a client disconnect).
    """
    request = client.build_request(method, url, headers=headers, content=content)
    try:
        upstream = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        logger.warning("upstream of %s unreachable: %s", label, describe(exc))
        raise GatewayHTTPError(
            502,
            f"upstream of {label} unreachable: {describe(exc)}",
            kind="upstream_error",
            code="upstream_unreachable",
        ) from None
    try:
        if exchange.started:
            if upstream.status_code != 200:
                detail = await _read_some(upstream, _ERROR_PREVIEW)
                await exchange.error(upstream_status_error(upstream.status_code, detail))
                return
        else:
            response_headers = forwardable_response_headers(upstream.headers.raw)
            exchange.sse = _is_event_stream(upstream.headers.get("content-type"))
            if exchange.sse:
                response_headers.append(NO_BUFFERING)
            await exchange.start(upstream.status_code, response_headers)
        async for chunk in upstream.aiter_raw():
            if chunk:
                await exchange.body(chunk)
        await exchange.finish()
    except httpx.HTTPError as exc:
        logger.warning("upstream of %s failed mid-response: %s", label, describe(exc))
        await exchange.error(
            GatewayHTTPError(
                502,
                f"upstream of {label} failed mid-response: {describe(exc)}",
                kind="upstream_error",
                code="upstream_failed",
            )
        )
    finally:
        await upstream.aclose()


def _is_event_stream(content_type: str | None) -> bool:
    return content_type is not None and content_type.lower().startswith("text/event-stream")


async def _read_some(response: httpx.Response, limit: int) -> bytes:
    data = b""
    async for chunk in response.aiter_raw():
        data += chunk
        if len(data) >= limit:
            break
    return data[:limit]
