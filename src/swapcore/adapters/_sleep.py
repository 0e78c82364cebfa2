"""Sleep and wake calls to a model server, their options and their error.

A server that supports sleep (vLLM started with ``--enable-sleep-mode``)
gives its accelerator memory back on ``POST /sleep?level=N`` and takes it
again on ``POST /wake_up``, while its process lives on. SGLang names the same
calls ``/release_memory_occupation`` and ``/resume_memory_occupation``, so
both paths are options. Reasons never quote the URL (its query may carry a
key) and errors never quote a command or an environment value.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from swapcore.errors import ConfigError, SwapcoreError

__all__ = [
    "DEFAULT_SLEEP_ENDPOINT",
    "DEFAULT_WAKE_ENDPOINT",
    "ProcessSleepError",
    "parse_endpoint",
    "parse_sleep_level",
    "post",
    "sleep_path",
]

DEFAULT_SLEEP_ENDPOINT = "/sleep?level={level}"
"""vLLM's sleep call; ``{level}`` becomes the sleep level."""
DEFAULT_WAKE_ENDPOINT = "/wake_up"
"""vLLM's wake call."""

# A 404 on these calls almost always means the server does not expose them.
_NOT_FOUND_HINT = (
    " (does the server expose it? vLLM needs --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1)"
)


class ProcessSleepError(SwapcoreError):
    """A model server could not be put to sleep; the caller stops it instead.

    ``model`` is the process name and ``reason`` says why (not ready, the
    server's answer, no answer in time, it exited). The message names the
    model, never the command or its environment.
    """

    def __init__(self, model: str, reason: str) -> None:
        self.model = model
        self.reason = reason
        super().__init__(f"model {model!r} could not sleep: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (ProcessSleepError, (self.model, self.reason))


def parse_sleep_level(name: str, value: object) -> int | None:
    """``sleep_level`` checked: 1, 2, or None (never sleeps)."""
    if value is None:
        return None
    if isinstance(value, bool) or value not in (1, 2):
        raise ConfigError(f"model {name!r}: sleep_level: must be 1, 2 or None, got {value!r}")
    assert isinstance(value, int)
    return value


def parse_endpoint(name: str, field: str, value: object) -> str:
    """A path on the server, starting with ``/`` (``{level}`` is allowed anywhere)."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(
            f"model {name!r}: {field}: must be a path starting with '/', got {value!r}"
        )
    if any(char.isspace() for char in value):
        raise ConfigError(f"model {name!r}: {field}: must not contain whitespace")
    return value


def sleep_path(template: str, level: int) -> str:
    """``template`` with ``{level}`` replaced by ``level`` (other braces are kept)."""
    return template.replace("{level}", str(level))


async def post(url: str, timeout: float, *, what: str) -> str | None:
    """POST an empty JSON object to ``url``: None on a 2xx answer, else what went wrong.

    ``what`` names the call in the reason (``"the sleep call"``). The whole
    call, connect to last byte, is bounded by ``timeout`` seconds. An empty
    JSON object suits both vLLM (which ignores the body) and SGLang (which
    wants one).
    """
    if timeout <= 0:
        return f"{what} had no time left"
    try:
        # trust_env=False: an HTTP(S)_PROXY in the environment must not capture local calls.
        async with (
            aiohttp.ClientSession(
                trust_env=False, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
            ) as client,
            client.post(
                url,
                data=b"{}",
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response,
        ):
            status = response.status
    except asyncio.TimeoutError:
        return f"{what} got no answer within {timeout:.3g} s"
    except aiohttp.ClientConnectorError as exc:
        error = exc.os_error
        if isinstance(error, ConnectionRefusedError):
            return f"{what} was refused a connection"
        return f"{what} could not connect: {error.strerror or type(error).__name__}"
    except aiohttp.ClientError as exc:
        return f"{what} failed: {type(exc).__name__}"
    if 200 <= status < 300:
        return None
    hint = _NOT_FOUND_HINT if status in (404, 405) else ""
    return f"{what} answered HTTP {status}{hint}"
