"""What is sent upstream: the URL and the headers of a forwarded request.

Internal to :mod:`swapcore.adapters.asgi`.
"""

from __future__ import annotations

import re
import urllib.parse

from swapcore.adapters._errors import bad_request
from swapcore.adapters._http import Scope, forwardable_request_headers, header

__all__ = ["upstream_headers", "upstream_url"]

# What may not appear in a header forwarded upstream: controls other than tab, and DEL
# (HTTP forbids them; a CR or LF would let a client inject headers of its own).
_FORBIDDEN = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


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
    bearer and ``x-api-key``. A header that is not valid HTTP (a control
    character, a name that is no token) is a 400 ``invalid_header``.
    """
    headers = []
    for key, value in forwardable_request_headers(
        scope.get("headers", ()), strip_auth=strip_auth or bool(api_key)
    ):
        if _FORBIDDEN.search(value) or not _TOKEN.fullmatch(key):
            name = key.decode("latin-1")[:40]
            raise bad_request(f"request header {name!r} is not valid HTTP", "invalid_header")
        headers.append((key.decode("latin-1"), value.decode("latin-1")))
    headers.append(("accept-encoding", header(scope, b"accept-encoding") or "identity"))
    if api_key:
        headers += [("authorization", "Bearer " + api_key), ("x-api-key", api_key)]
    return headers
