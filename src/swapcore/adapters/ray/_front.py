"""The cluster's OpenAI-compatible front: reads the model a request names, sends it to a host.

The front is a Ray Serve ingress deployment. For each HTTP request it
finds the model (the body's ``model``, the multipart ``model`` field,
``?model=``, or ``/upstream/<model>/...``), resolves aliases with the same
configuration the hosts read, and calls the hosts' deployment with that
model as Ray's ``multiplexed_model_id``: the
:class:`~swapcore.adapters.ray.SwapcoreRequestRouter` picks the host. The
host answers with the gateway's own response, which the front streams back
unchanged (status, headers, every byte, including loading progress).

A host lost before the client has seen a byte of its answer is replaced:
the request goes to another host (up to ``attempts`` hosts). Answers that
are not event streams are gathered whole before they are sent (up to 16
MiB), so for them this covers the whole request. An event stream already
under way cannot be taken back: it ends with a last ``error`` event
(``host_lost``), so the client knows it was cut short.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from swapcore.adapters._body import declared_length, too_large
from swapcore.adapters._catalog import split_upstream_path
from swapcore.adapters._errors import GatewayHTTPError, error_json
from swapcore.adapters._requests import parse_body
from swapcore.adapters.ray._registry import note_report, routers, track, untrack
from swapcore.adapters.ray._wire import Head, request_message

__all__ = ["SwapcoreFront"]

logger = logging.getLogger("swapcore.adapters.ray")

DEFAULT_ATTEMPTS = 3
"""How many hosts a request is tried on when the one chosen dies before answering."""

# Non-streaming answers up to this size are gathered before the client sees them.
_GATHER_LIMIT = 16 * 1024 * 1024

DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024
"""The largest request body the front reads (bytes; 413 beyond), as the gateway's default."""


def _lost_host_errors() -> tuple[type[BaseException], ...]:
    from ray import exceptions

    names = ("ActorDiedError", "ActorUnavailableError", "RayActorError", "ActorUnschedulableError")
    return tuple(getattr(exceptions, n) for n in names if hasattr(exceptions, n))


class SwapcoreFront:
    """A Ray Serve deployment class: the HTTP entry of a swapcore cluster.

    ``hosts``: the handle of the :class:`~swapcore.adapters.ray.SwapcoreHost`
    deployment (Ray passes it when the application is built); ``config``
    and ``source``: the configuration's YAML text and name, read for model
    names and aliases only. ``attempts``: hosts tried per request when the
    chosen one dies before answering. ``GET /health`` is answered here, and
    ``GET /cluster`` (every host's latest report, see :meth:`hosts`);
    everything else goes to a host.
    """

    def __init__(
        self,
        hosts: Any,
        config: str,
        *,
        source: str = "<config>",
        attempts: int = DEFAULT_ATTEMPTS,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        allow_unsupported: bool = False,
    ) -> None:
        """Keep the hosts' handle and read the configuration's model names."""
        from swapcore.adapters.ray._config import host_config

        self._hosts = hosts
        self._config = host_config(config, source=source, allow_unsupported=allow_unsupported)
        self._attempts = max(1, int(attempts))
        self._max_body = int(max_body_size)
        self._lost = _lost_host_errors()

    def hosts(self) -> list[dict[str, Any]]:
        """Each host's latest report as this front's request router last saw it."""
        out: list[dict[str, Any]] = []
        for router in routers():
            out.extend(router.snapshot())
        return out

    def model_of(self, method: str, path: str, query: bytes, content_type: str, body: bytes) -> str:
        """The local model a request is for, or "" (no model, or one a host will refuse)."""
        resolve = self._config.resolve_model
        if path.startswith("/upstream/"):
            found = split_upstream_path(path, resolve)  # the gateway's own rule
            return found[0] if found else ""
        name = ""
        if query and b"model=" in query:
            values = parse_qs(query.decode("latin-1")).get("model")
            name = values[0] if values else ""
        elif method == "POST" and body:
            try:
                name = parse_body(content_type, bytearray(body)).model
            except GatewayHTTPError:
                return ""  # the host answers with the gateway's own error
        return (resolve(name) or "") if name else ""

    async def __call__(self, request: HTTPRequest) -> Response:
        """Serve one HTTP request through a host."""
        path = request.url.path
        if path == "/health" and request.method in ("GET", "HEAD"):
            return PlainTextResponse("OK")
        if path == "/cluster" and request.method == "GET":
            return JSONResponse({"hosts": self.hosts()})
        declared = declared_length(request.scope)
        if declared is not None and declared > self._max_body:
            return _error(too_large(self._max_body))
        body = await request.body()
        if len(body) > self._max_body:
            return _error(too_large(self._max_body))
        query = request.scope.get("query_string", b"")
        model = self.model_of(
            request.method, path, query, request.headers.get("content-type", ""), body
        )
        client = request.client
        message = request_message(
            request.method,
            path,
            query,
            request.scope.get("headers", []),
            body,
            (client.host, client.port) if client else None,
        )
        handle = self._hosts.options(stream=True, multiplexed_model_id=model)
        failure: BaseException | None = None
        for _ in range(self._attempts):
            stream = handle.call.remote(message)
            internal_id = _internal_id(stream)
            track(internal_id)  # the router holds its decision until the answer begins
            try:
                try:
                    head = await stream.__anext__()
                    if head.get("report"):
                        note_report(head["report"] or {})
                finally:
                    untrack(internal_id)
                if _is_event_stream(head):
                    return _respond(head, [], stream, self._lost)
                # Anything else is gathered before the client sees a byte, so a host
                # lost meanwhile costs a retry elsewhere, not a truncated body.
                gathered: list[bytes] = []
                size = 0
                async for chunk in stream:
                    gathered.append(chunk)
                    size += len(chunk)
                    if size > _GATHER_LIMIT:  # too big to hold: stream the rest
                        return _respond(head, gathered, stream, self._lost)
                response = Response(b"".join(gathered), status_code=head["status"])
                response.raw_headers = list(head["headers"])
                return response
            except self._lost as exc:
                failure = exc
                logger.warning("a host was lost before the answer was sent (%s); retrying", exc)
                continue
            except StopAsyncIteration:
                return _error(
                    GatewayHTTPError(
                        502,
                        "the host sent no response",
                        kind="server_error",
                        code="host_no_response",
                    )
                )
        logger.error("no host answered %s %s: %s", request.method, path, failure)
        return _error(
            GatewayHTTPError(
                503,
                f"no host could serve the request: {failure}",
                kind="server_error",
                code="no_host",
            )
        )


def _error(error: GatewayHTTPError) -> Response:
    """The gateway's JSON answer for ``error``."""
    response = JSONResponse(error.body(), status_code=error.status)
    response.raw_headers.extend(error.headers)
    return response


def _internal_id(response: Any) -> str:
    """Ray Serve's internal id of the request behind ``response`` ("" if this Ray hides it)."""
    metadata = getattr(response, "_request_metadata", None)
    return str(getattr(metadata, "internal_request_id", "") or "")


def _is_event_stream(head: Head) -> bool:
    return any(
        k.lower() == b"content-type" and v.startswith(b"text/event-stream")
        for k, v in head["headers"]
    )


def _respond(
    head: Head, first: list[bytes], stream: Any, lost: tuple[type[BaseException], ...]
) -> Response:
    """Stream the response: ``first`` (already read), then the rest of ``stream``."""
    event_stream = _is_event_stream(head)

    async def body() -> AsyncIterator[bytes]:
        try:
            for chunk in first:
                yield chunk
            async for chunk in stream:
                yield chunk
        except lost as exc:
            logger.error("the host was lost while answering: %s", exc)
            if event_stream:
                message = f"the host serving this request was lost: {exc}"
                error = error_json(message, "server_error", "host_lost")
                yield b"data: " + json.dumps(error).encode() + b"\n\n"
        finally:
            stream.cancel()

    response = StreamingResponse(body(), status_code=head["status"])
    response.raw_headers = list(head["headers"])
    return response
