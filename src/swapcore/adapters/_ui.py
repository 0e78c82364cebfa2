"""``/ui``: the web UI page, and ``/`` redirecting to it.

Internal to :mod:`swapcore.adapters.asgi`. The page is package data
(:mod:`swapcore.adapters.ui`), read once. With API keys, the page answers
a missing key with a Basic challenge, so the browser asks for it once and
sends it with the page's own requests.
"""

from __future__ import annotations

import functools
import importlib.resources

from swapcore.adapters._http import Exchange

__all__ = ["redirect_to_ui", "serve_ui"]

# The page's own inline script and styles, and connections to this origin only.
_POLICY = (
    b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    b"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
)


@functools.lru_cache(maxsize=1)
def page() -> bytes:
    """The UI page's bytes."""
    return importlib.resources.files("swapcore.adapters.ui").joinpath("index.html").read_bytes()


async def serve_ui(exchange: Exchange, head: bool = False) -> None:
    """Send the page (headers only for HEAD)."""
    data = page()
    await exchange.start(
        200,
        [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(data)).encode()),
            (b"cache-control", b"no-cache"),
            (b"content-security-policy", _POLICY),
            (b"x-content-type-options", b"nosniff"),
        ],
    )
    await exchange.finish(b"" if head else data)


async def redirect_to_ui(exchange: Exchange) -> None:
    """``/`` -> ``/ui`` (a temporary redirect, as llama-swap's root sends its UI)."""
    await exchange.start(302, [(b"location", b"/ui"), (b"content-length", b"0")])
    await exchange.finish()
