"""What is sent upstream: the URL and the headers of a forwarded request.

Internal to :mod:`swapcore.adapters.asgi`.
"""

from __future__ import annotations

import urllib.parse

from swapcore.adapters._http import Scope, forwardable_request_headers, header

__all__ = ["upstream_headers", "upstream_url"]


def upstream_url(base: str, path: str, query: bytes) -> str:
    """``base`` + the (re-quoted) ``path`` + ``?query``."""
    url = base.rstrip("/") + urllib.parse.quote(path, safe="/:@!$&'()*+,;=~")
    if query:
        url += "?" + query.decode("latin-1")
    return url


def upstream_headers(scope: Scope, *, strip_auth: bool, api_key: str = "") -> list[tuple[str, str]]:
    """The request headers to send upstream, as text.

    The client's headers without hop-by-hop ones (and without its
    ``Authorization``/``x-api-key`` when ``strip_auth``); its
    ``Accept-Encoding``, or ``identity`` when it sent none (so the upstream
    never compresses a body for a client that did not ask); ``api_key`` as
    bearer and ``x-api-key``.
    """
    headers = [
        (key.decode("latin-1"), value.decode("latin-1"))
        for key, value in forwardable_request_headers(
            scope.get("headers", ()), strip_auth=strip_auth or bool(api_key)
        )
    ]
    headers.append(("accept-encoding", header(scope, b"accept-encoding") or "identity"))
    if api_key:
        headers += [("authorization", "Bearer " + api_key), ("x-api-key", api_key)]
    return headers
