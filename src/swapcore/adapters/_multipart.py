"""Find (and replace) one text field of a ``multipart/form-data`` body.

Internal to :mod:`swapcore.adapters.asgi`, which needs only the ``model``
field of uploads such as ``/v1/audio/transcriptions`` and forwards the body
otherwise byte for byte. The parser follows RFC 7578 / RFC 2046: parts are
separated by ``--boundary`` lines, each has headers, a blank line and its
content; a field is a part whose ``Content-Disposition`` is ``form-data``
with that ``name`` and no ``filename``.
"""

from __future__ import annotations

import re

__all__ = ["MultipartError", "boundary_of", "find_field"]

# token=value or token="quoted value" parameters of a header value.
_PARAM = re.compile(rb';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


class MultipartError(ValueError):
    """The body is not valid ``multipart/form-data``."""


def boundary_of(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/form-data`` content type, or None if it is not one."""
    media, _, rest = content_type.partition(";")
    if media.strip().lower() != "multipart/form-data":
        return None
    params = _params(b";" + rest.encode("latin-1"))
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise MultipartError("multipart/form-data without a valid boundary")
    return boundary


def find_field(body: bytes | bytearray, boundary: bytes, name: str) -> tuple[int, int] | None:
    """The ``(start, end)`` byte span of text field ``name``'s value, or None if absent.

    The first field of that name wins. Raises :class:`MultipartError` when the
    body does not parse before the field is found (no opening boundary, a
    part without a blank line after its headers, no closing boundary).
    """
    wanted = name.encode()
    delimiter = b"--" + boundary
    # The first delimiter may open the body; every other one follows a CRLF.
    if body.startswith(delimiter):
        position = len(delimiter)
    else:
        found = body.find(b"\r\n" + delimiter)
        if found < 0:
            raise MultipartError("no opening boundary")
        position = found + 2 + len(delimiter)
    separator = b"\r\n" + delimiter
    while True:
        if body.startswith(b"--", position):
            return None  # the closing delimiter: no such field
        line_end = body.find(b"\r\n", position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise MultipartError("malformed boundary line")
        headers_end = body.find(b"\r\n\r\n", line_end)
        if headers_end < 0:
            raise MultipartError("part without a blank line after its headers")
        # headers_end is the CRLF ending the last header (or line_end when there are none).
        headers = body[line_end + 2 : headers_end]
        content_start = headers_end + 4
        content_end = body.find(separator, content_start)
        if content_end < 0:
            raise MultipartError("no closing boundary")
        if _is_field(headers, wanted):
            return content_start, content_end
        position = content_end + len(separator)


def _is_field(headers: bytes | bytearray, wanted: bytes) -> bool:
    for line in headers.split(b"\r\n"):
        key, colon, value = line.partition(b":")
        if not colon or key.strip().lower() != b"content-disposition":
            continue
        kind, _, rest = value.partition(b";")
        if kind.strip().lower() != b"form-data":
            return False
        params = _params(b";" + rest)
        return params.get(b"name") == wanted and b"filename" not in params
    return False


def _params(text: bytes) -> dict[bytes, bytes]:
    params: dict[bytes, bytes] = {}
    for match in _PARAM.finditer(text):
        key, value = match.group(1).lower(), match.group(2).strip()
        if value.startswith(b'"') and value.endswith(b'"') and len(value) >= 2:
            value = re.sub(rb"\\(.)", rb"\1", value[1:-1])
        params.setdefault(key, value)
    return params
