"""Typed access to a raw configuration document, recording problems by key path.

Private to :mod:`swapcore.config`: every reader method returns a usable value
(the default when the input is absent or wrong) and records what was wrong,
so validation goes on and reports every independent problem at once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from swapcore.config.macros import join_path
from swapcore.errors import ConfigError

__all__ = ["MAX_PORT", "Reader", "kind", "require_mapping"]

MAX_PORT = 65535


def kind(value: object) -> str:
    """Name a YAML value's kind for messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def require_mapping(value: object, path: str) -> dict[str, Any]:
    """``value`` as a mapping with string keys, or a ConfigError naming ``path``.

    The strict form of :meth:`Reader.required_mapping`, for readers that stop
    at the first problem (the simulator's configurations): it raises that
    problem, with the same message the recording reader gives.
    """
    reader = Reader()
    result = reader.required_mapping(value, path)
    if reader.errors:
        raise reader.errors[0]
    assert result is not None
    return result


class Reader:
    """Typed access to the raw document that records errors and warnings by key path."""

    def __init__(self, *, allow_unsupported: bool = False) -> None:
        self.errors: list[ConfigError] = []
        self.warnings: list[str] = []
        self.allow_unsupported = allow_unsupported

    def error(self, path: str, message: str) -> None:
        self.errors.append(ConfigError(f"{path}: {message}"))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path}: {message}")

    def keys(
        self,
        mapping: Mapping[str, Any],
        path: str,
        supported: Collection[str],
        unsupported: Collection[str] = (),
        policy: Mapping[str, str] | None = None,
    ) -> None:
        """Warn about each key of ``mapping`` outside ``supported``.

        A key in ``policy`` (key -> what it does) changes what is sent
        upstream or who may call: ignoring it is an error (see
        :meth:`policy_key`). Other keys in ``unsupported`` are warned about
        as not supported, the rest as unknown.
        """
        for key in mapping:
            if key in supported:
                continue
            where = join_path(path, key)
            if policy is not None and key in policy:
                self.policy_key(where, f"not supported by swapcore ({policy[key]})")
            elif key in unsupported:
                self.warn(where, "not supported by swapcore, ignored")
            else:
                self.warn(where, "unknown key, ignored")

    def policy_key(self, path: str, message: str) -> None:
        """A key swapcore cannot honour that changes what is sent upstream or who may call.

        An error, since ignoring it would silently drop a policy; a warning
        when the reader allows unsupported keys (``allow_unsupported``).
        """
        if self.allow_unsupported:
            self.warn(path, f"{message}; ignored (allow_unsupported)")
        else:
            self.error(
                path,
                f"{message}; ignoring it would change what is sent upstream or who may call."
                " Remove it, or pass --allow-unsupported (allow_unsupported=True) to start"
                " without it",
            )

    def mapping(self, value: object, path: str) -> dict[str, Any] | None:
        """A mapping with string keys; None when absent or invalid (then an error)."""
        if value is None:
            return None
        return self.required_mapping(value, path)

    def required_mapping(self, value: object, path: str) -> dict[str, Any] | None:
        """Like :meth:`mapping`, but an absent value is an error too."""
        if not isinstance(value, Mapping):
            self.error(path, f"must be a mapping, got {kind(value)}")
            return None
        result: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str):
                result[key] = item
            else:
                self.error(path, f"keys must be strings, got {key!r}")
        return result

    def string(self, value: object, path: str, default: str) -> str:
        """A string; as Go's YAML decoder does, another scalar becomes its text."""
        if value is None:
            return default
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        self.error(path, f"must be a string, got {kind(value)}")
        return default

    def text(self, value: object, path: str, default: str) -> str:
        """A string, never coerced from another scalar: for commands and URLs.

        ``cmd: 123`` is far more likely a mistake than a command named ``123``.
        """
        if value is None:
            return default
        if isinstance(value, str):
            return value
        self.error(path, f"must be a string, got {kind(value)}")
        return default

    def boolean(self, value: object, path: str, default: bool) -> bool:
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        self.error(path, f"must be true or false, got {kind(value)}")
        return default

    def number(
        self, value: object, path: str, default: float, *, minimum: float | None = None
    ) -> float:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(path, f"must be a number, got {kind(value)}")
            return default
        if value != value:
            self.error(path, "must be a number, got NaN")
            return default
        if minimum is not None and value < minimum:
            self.error(path, f"must be >= {minimum:g}")
            return default
        return value

    def integer(
        self,
        value: object,
        path: str,
        default: int,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"must be an integer, got {kind(value)}")
            return default
        if minimum is not None and value < minimum:
            self.error(path, f"must be >= {minimum}")
            return default
        if maximum is not None and value > maximum:
            self.error(path, f"must be <= {maximum}")
            return default
        return value

    def string_list(self, value: object, path: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            self.error(path, f"must be a list of strings, got {kind(value)}")
            return []
        result = []
        for index, item in enumerate(value):
            if isinstance(item, (str, int, float)) and not isinstance(item, bool):
                result.append(str(item))
            else:
                self.error(f"{path}[{index}]", f"must be a string, got {kind(item)}")
        return result

    def url(self, value: str, path: str) -> None:
        try:
            parts = urlsplit(value)
            valid = parts.scheme in ("http", "https") and bool(parts.netloc)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            valid = False
        if not valid:
            self.error(path, f"must be an http:// or https:// URL, got {value!r}")
