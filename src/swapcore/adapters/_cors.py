"""CORS, answered as llama-swap answers it.

Internal to :mod:`swapcore.adapters.asgi`. Every ``OPTIONS`` request, on any
path and before any API-key check (browsers send preflights without
credentials), gets ``204 No Content`` with:

- ``Access-Control-Allow-Origin: *``
- ``Access-Control-Allow-Methods: GET, POST, PUT, PATCH, DELETE, OPTIONS``
- ``Access-Control-Allow-Headers``: the names the browser asked for in
  ``Access-Control-Request-Headers`` (those that are not valid header names
  are left out), else ``Content-Type, Authorization, Accept, X-Requested-With``
- ``Access-Control-Max-Age: 86400``

Other responses carry no CORS headers of the gateway's own, except the model
listings (``/v1/models``, ``/models``), which echo the request's ``Origin``
in ``Access-Control-Allow-Origin``; proxied responses carry whatever the
upstream sends.
"""

from __future__ import annotations

import re

from swapcore.adapters._http import Exchange, Headers, Scope, header

__all__ = ["allow_origin", "preflight"]

_DEFAULT_HEADERS = b"Content-Type, Authorization, Accept, X-Requested-With"
_METHODS = b"GET, POST, PUT, PATCH, DELETE, OPTIONS"
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")  # an HTTP header name (RFC 9110 token)


def _requested_headers(value: str) -> bytes:
    names = [name.strip() for name in value.split(",")]
    return ", ".join(n for n in names if n and _TOKEN.fullmatch(n)).encode("latin-1")


async def preflight(scope: Scope, exchange: Exchange) -> None:
    """Answer an ``OPTIONS`` request."""
    requested = header(scope, b"access-control-request-headers")
    allowed = _requested_headers(requested) if requested else _DEFAULT_HEADERS
    await exchange.start(
        204,
        [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", _METHODS),
            (b"access-control-allow-headers", allowed),
            (b"access-control-max-age", b"86400"),
        ],
    )
    await exchange.finish()


def allow_origin(scope: Scope) -> Headers:
    """``Access-Control-Allow-Origin`` echoing the request's ``Origin``, if it has one."""
    origin = header(scope, b"origin")
    if not origin:
        return []
    return [(b"access-control-allow-origin", origin.encode("latin-1"))]
