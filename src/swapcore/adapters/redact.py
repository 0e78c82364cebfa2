"""Keeping secrets out of log lines: a logging filter for the gateway's handlers.

Upstream URLs may carry credentials in their query strings, a model's
command line may carry ``--api-key``, its environment ``HF_TOKEN``. swapcore's
own log lines never include a query string, an argv or an environment value,
but third-party loggers (uvicorn's access log, aiohttp) and the model
servers' own output can. :class:`RedactingFilter`, attached to a handler,
rewrites every record that handler emits:

- the query string of any URL or path (``/v1/x?key=abc`` becomes
  ``/v1/x?<redacted>``);
- every occurrence of a known secret (``***``);
- the same in the text of an attached exception.

``swapcore serve`` installs one on its log handler with
:func:`config_secrets` of its configuration. Mount the gateway in your own
application and you can do the same::

    handler.addFilter(RedactingFilter(config_secrets(config)))
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swapcore.config.schema import GatewayConfig

__all__ = ["REDACTED", "RedactingFilter", "config_secrets", "redact_text", "secret_name"]

REDACTED = "***"
"""What a secret is replaced with."""

# A URL or an absolute path, then a query string (up to whitespace or a quote).
_QUERY = re.compile(r"((?:\b[a-zA-Z][a-zA-Z0-9+.-]*://|(?<![\w/])/)[^\s?#\"'<>]*)\?[^\s#\"'<>]+")
# userinfo in a URL: scheme://user:password@host
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@\"'<>]*:)[^\s/@\"'<>]+@")
_SECRET_NAME = re.compile(r"(api[-_]?key|token|secret|passw(or)?d|auth|credential)", re.I)
_MIN_SECRET = 4  # shorter values would redact ordinary words


def secret_name(name: str) -> bool:
    """True when an option or variable named ``name`` probably holds a secret."""
    return bool(_SECRET_NAME.search(name))


def config_secrets(config: GatewayConfig) -> set[str]:
    """The secrets a gateway configuration holds, to redact from logs.

    The gateway's ``apiKeys``, each peer's ``apiKey``, the values of
    environment variables whose names look secret (``HF_TOKEN``,
    ``OPENAI_API_KEY``, ...) and the values of command-line options whose
    names do (``--api-key X``, ``--api-key=X``, ``--hf-token X``).
    """
    found: set[str] = set(config.api_keys)
    for peer in config.peers.values():
        if peer.api_key:
            found.add(peer.api_key)
    for model in config.models.values():
        for name, value in model.env.items():
            if secret_name(name):
                found.add(value)
        for command in (model.cmd, model.cmd_stop):
            found.update(_argv_secrets(command))
    return {value for value in found if len(value) >= _MIN_SECRET}


def _argv_secrets(command: str) -> set[str]:
    try:
        argv = shlex.split(command)
    except ValueError:
        argv = command.split()
    found = set()
    for index, arg in enumerate(argv):
        if not arg.startswith("-"):
            continue
        name, equals, value = arg.partition("=")
        if not secret_name(name):
            continue
        if equals:
            found.add(value)
        elif index + 1 < len(argv) and not argv[index + 1].startswith("-"):
            found.add(argv[index + 1])
    return found


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without query strings, URL passwords and the given secrets."""
    if "?" in text:
        text = _QUERY.sub(r"\1?<redacted>", text)
    if "@" in text:
        text = _USERINFO.sub(r"\1" + REDACTED + "@", text)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts query strings and ``secrets`` from each record.

    Attach it to a handler (``handler.addFilter``): it then sees every
    record the handler emits, from any logger. It never drops a record.
    Secrets shorter than four characters are ignored (they would redact
    ordinary words).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        ordered = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
        self._secrets = tuple(ordered)  # longest first: a secret may contain another

    def add(self, secrets: Iterable[str]) -> None:
        """Redact these secrets too."""
        merged = {*self._secrets, *(s for s in secrets if len(s) >= _MIN_SECRET)}
        self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place; always keep it."""
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = redact_text(message, self._secrets)
        if clean != message:
            record.msg = clean
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, self._secrets)
        return True
