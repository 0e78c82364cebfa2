"""Validation of ``SubprocessProcess`` options: each error names the model and the field.

Errors never quote a command's arguments or an environment value: they may
hold secrets (``--api-key ...``), and these messages reach logs and clients.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Mapping, Sequence

from swapcore.errors import ConfigError

__all__ = [
    "check_timeout",
    "parse_command",
    "parse_env",
    "parse_proxy",
    "positive_seconds",
    "program_name",
]


def check_timeout(timeout: object) -> None:
    """Raise ValueError unless ``timeout`` is a positive, finite number of seconds."""
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < math.inf
    ):
        raise ValueError(f"timeout must be a positive, finite number of seconds, got {timeout!r}")


def positive_seconds(name: str, field: str, value: object) -> float:
    """``value`` as float seconds, or ConfigError unless positive and finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(
            f"model {name!r}: {field}: must be a positive number of seconds, got {value!r}"
        )
    return float(value)


def parse_command(name: str, field: str, cmd: object, port: int | None) -> tuple[str, ...]:
    """A command as argv: a string is split like a shell would; ``${PORT}`` is replaced."""
    if isinstance(cmd, str):
        try:
            # A backslash-newline continues the line, as in a shell script.
            argv = shlex.split(cmd.replace("\\\n", " "))
        except ValueError as exc:
            raise ConfigError(
                f"model {name!r}: {field}: cannot be split into arguments: {exc}"
            ) from None
    elif isinstance(cmd, Sequence) and all(isinstance(arg, str) for arg in cmd):
        argv = list(cmd)
    else:
        raise ConfigError(f"model {name!r}: {field}: must be a string or a list of strings")
    if not argv:
        raise ConfigError(f"model {name!r}: {field}: is empty")
    if any("\0" in arg for arg in argv):
        raise ConfigError(f"model {name!r}: {field}: contains a NUL character")
    if any("${PORT}" in arg for arg in argv):
        if port is None:
            raise ConfigError(f"model {name!r}: {field}: uses ${{PORT}} but no port is set")
        argv = [arg.replace("${PORT}", str(port)) for arg in argv]
    return tuple(argv)


def program_name(argv: Sequence[str]) -> str:
    """What messages call a command: the basename of its program, never its arguments."""
    return os.path.basename(argv[0]) or argv[0]


def parse_proxy(name: str, proxy: object, port: int | None) -> str:
    """The server's base URL without a trailing slash (default ``http://127.0.0.1:PORT``)."""
    if proxy is None:
        if port is None:
            raise ConfigError(f"model {name!r}: proxy: needed when no port is set")
        return f"http://127.0.0.1:{port}"
    if not isinstance(proxy, str):
        raise ConfigError(f"model {name!r}: proxy: must be a URL string, got {proxy!r}")
    if "${PORT}" in proxy:
        if port is None:
            raise ConfigError(f"model {name!r}: proxy: uses ${{PORT}} but no port is set")
        proxy = proxy.replace("${PORT}", str(port))
    if not proxy.startswith(("http://", "https://")):
        raise ConfigError(f"model {name!r}: proxy: must start with http:// or https://")
    return proxy.rstrip("/")


def parse_env(name: str, env: object) -> dict[str, str]:
    """Extra environment variables, checked to be strings with valid names."""
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise ConfigError(f"model {name!r}: env: must be a mapping of names to strings")
    parsed: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key:
            raise ConfigError(f"model {name!r}: env: invalid variable name {key!r}")
        if not isinstance(value, str):
            raise ConfigError(
                f"model {name!r}: env: {key}: must be a string, got {type(value).__name__}"
            )
        parsed[key] = value
    return parsed
