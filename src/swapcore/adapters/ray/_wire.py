"""What travels between the front and a host: one HTTP request, then its response in parts.

Plain dicts and bytes, so Ray pickles nothing of ours. A request is
:func:`request_message`; the host's answer is a stream whose first item is
the response head (:func:`head_message`: status, headers, and the host's
report, fresh) and whose other items are body bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

__all__ = ["Head", "Request", "head_message", "request_message"]


class Request(TypedDict):
    """One HTTP request, as the front received it."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client: tuple[str, int] | None


class Head(TypedDict):
    """The start of a response, with the replica's report as it was then."""

    status: int
    headers: list[tuple[bytes, bytes]]
    report: dict[str, Any] | None


def request_message(
    method: str,
    path: str,
    query: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
    client: tuple[str, int] | None = None,
) -> Request:
    """The request as the front sends it to a host."""
    return {
        "method": method,
        "path": path,
        "query": query,
        "headers": [(bytes(k), bytes(v)) for k, v in headers],
        "body": body,
        "client": client,
    }


def head_message(message: Mapping[str, Any], report: dict[str, Any] | None) -> Head:
    """The head of a response from an ASGI ``http.response.start`` message."""
    return {
        "status": int(message["status"]),
        "headers": [(bytes(k), bytes(v)) for k, v in message.get("headers", ())],
        "report": report,
    }
