"""API-key checks for the gateway: constant-time, and keys never leave this object.

Internal to :mod:`swapcore.adapters.asgi`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable

from swapcore.adapters._http import Scope
from swapcore.errors import ConfigError

__all__ = ["KeyChecker"]


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


class KeyChecker:
    """Accepts a request when it presents one of ``keys``.

    A key may be presented as ``Authorization: Bearer <key>``, as the
    password of ``Authorization: Basic`` (the user name is ignored, as in
    llama-swap), or as ``x-api-key: <key>``. Every presented key is compared
    with every configured key, without stopping at the first match, with
    :func:`hmac.compare_digest` on SHA-256 digests (equal lengths, so not
    even a key's length leaks through timing). The keys are kept only as
    digests and appear in no ``repr`` and no log.
    """

    __slots__ = ("_digests",)

    def __init__(self, keys: Iterable[str]) -> None:
        digests = []
        for index, key in enumerate(keys):
            if not isinstance(key, str) or not key:
                raise ConfigError(f"api_keys[{index}]: must be a non-empty string")
            digests.append(_digest(key.encode()))
        self._digests = tuple(digests)

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured (requests must present one)."""
        return bool(self._digests)

    def __repr__(self) -> str:
        return f"<KeyChecker with {len(self._digests)} key(s)>"

    def allows(self, scope: Scope) -> bool:
        """True when no key is configured, or the request presents a valid one."""
        if not self._digests:
            return True
        presented = _presented_keys(scope)
        valid = False
        for candidate in presented:
            digest = _digest(candidate)
            for key in self._digests:
                valid |= hmac.compare_digest(digest, key)
        return valid


def _presented_keys(scope: Scope) -> list[bytes]:
    keys: list[bytes] = []
    for name, raw in scope.get("headers", ()):
        name = name.lower()
        value = bytes(raw).strip()
        if name == b"x-api-key" and value:
            keys.append(value)
        elif name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            credentials = credentials.strip()
            scheme = scheme.lower()
            if scheme == b"bearer" and credentials:
                keys.append(credentials)
            elif scheme == b"basic" and credentials:
                try:
                    decoded = base64.b64decode(credentials, validate=True)
                except (binascii.Error, ValueError):
                    continue
                _, colon, password = decoded.partition(b":")
                if colon and password:
                    keys.append(password)
    return keys
