"""The gateway's pure helpers: multipart field search, API keys, paths and headers."""

from __future__ import annotations

import base64
from typing import Any

import pytest

pytest.importorskip("httpx")

import httpx

from swapcore import ConfigError
from swapcore.adapters._auth import KeyChecker
from swapcore.adapters._http import (
    forwardable_request_headers,
    forwardable_response_headers,
    route_path,
)
from swapcore.adapters._multipart import MultipartError, boundary_of, find_field

# ---------------------------------------------------------------- multipart


def encode_form(data: dict[str, str], files: dict[str, Any] | None = None) -> tuple[str, bytes]:
    """A multipart body as httpx (and so the openai package) encodes it."""
    request = httpx.Request("POST", "http://x/", data=data, files=files)
    return request.headers["content-type"], request.read()


def field(body: bytes, content_type: str, name: str = "model") -> bytes | None:
    boundary = boundary_of(content_type)
    assert boundary is not None
    span = find_field(body, boundary, name)
    return None if span is None else body[span[0] : span[1]]


def test_finds_the_model_field_among_files() -> None:
    content_type, body = encode_form(
        {"language": "en", "model": "whisper-1"},
        files={"file": ("a.wav", b"RIFF\r\n--not-a-boundary\r\n" * 50, "audio/wav")},
    )
    assert field(body, content_type) == b"whisper-1"
    assert field(body, content_type, "language") == b"en"
    assert field(body, content_type, "absent") is None


def test_a_file_named_model_is_not_the_field() -> None:
    content_type, body = encode_form({}, files={"model": ("model.bin", b"weights")})
    assert field(body, content_type) is None


def test_replacing_the_span_keeps_the_rest_byte_for_byte() -> None:
    content_type, body = encode_form(
        {"model": "alias"}, files={"file": ("a.bin", bytes(range(256)), "application/x")}
    )
    boundary = boundary_of(content_type)
    assert boundary is not None
    span = find_field(body, boundary, "model")
    assert span is not None
    renamed = body[: span[0]] + b"real-name" + body[span[1] :]
    assert field(renamed, content_type) == b"real-name"
    assert renamed.replace(b"real-name", b"alias") == body


def test_hand_written_bodies() -> None:
    boundary = b"XyZ"
    body = (
        b"preamble to ignore\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="empty"\r\n'
        b"\r\n"
        b"\r\n"
        b"--XyZ  \r\n"  # transport padding after the delimiter is allowed
        b'content-disposition: FORM-DATA; name = "mo\\"del"\r\n'
        b"\r\n"
        b"quoted\r\n"
        b"--XyZ\r\n"
        b"Content-Disposition: form-data; name=model\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"bare-token\r\n"
        b"--XyZ--\r\n"
    )
    assert find_field(body, boundary, "empty") is not None
    span = find_field(body, boundary, "empty")
    assert span is not None and span[0] == span[1]
    span = find_field(body, boundary, 'mo"del')
    assert span is not None and body[span[0] : span[1]] == b"quoted"
    span = find_field(body, boundary, "model")
    assert span is not None and body[span[0] : span[1]] == b"bare-token"


@pytest.mark.parametrize(
    "body",
    [
        b"no boundary at all",
        b"--XyZ\r\nContent-Disposition: form-data; name=a\r\nno blank line",
        b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\nnever closed',
        b"--XyZjunk\r\n\r\n\r\n--XyZ--",
    ],
)
def test_malformed_bodies_raise(body: bytes) -> None:
    with pytest.raises(MultipartError):
        find_field(body, b"XyZ", "model")


def test_boundary_of() -> None:
    assert boundary_of("application/json") is None
    assert boundary_of("multipart/form-data; boundary=abc") == b"abc"
    assert boundary_of('Multipart/Form-Data; charset=utf-8; boundary="a b"') == b"a b"
    with pytest.raises(MultipartError):
        boundary_of("multipart/form-data")


# --------------------------------------------------------------------- keys


def scope_with(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "headers": list(headers)}


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def test_keys_accept_bearer_basic_and_x_api_key() -> None:
    keys = KeyChecker(["k-one", "k-two"])
    assert keys.enabled
    assert keys.allows(scope_with((b"authorization", b"Bearer k-two")))
    assert keys.allows(scope_with((b"authorization", b"bearer   k-one ")))
    assert keys.allows(scope_with((b"authorization", basic("anyone", "k-one"))))
    assert keys.allows(scope_with((b"x-api-key", b"k-two")))
    # A wrong Authorization does not hide a right x-api-key.
    assert keys.allows(scope_with((b"authorization", b"Bearer nope"), (b"x-api-key", b"k-one")))


@pytest.mark.parametrize(
    "headers",
    [
        (),
        ((b"authorization", b"Bearer k-on"),),
        ((b"authorization", b"Bearer k-one-and-more"),),
        ((b"authorization", b"k-one"),),
        ((b"authorization", b"Basic !!!not-base64"),),
        ((b"authorization", basic("k-one", "")),),
        ((b"x-api-key", b""),),
    ],
)
def test_keys_refuse(headers: tuple[tuple[bytes, bytes], ...]) -> None:
    assert not KeyChecker(["k-one"]).allows(scope_with(*headers))


def test_no_keys_allow_everything_and_keys_stay_hidden() -> None:
    assert KeyChecker([]).allows(scope_with())
    assert not KeyChecker([]).enabled
    checker = KeyChecker(["secret-value"])
    assert "secret-value" not in repr(checker)
    with pytest.raises(ConfigError, match=r"api_keys\[1\]"):
        KeyChecker(["ok", ""])


# -------------------------------------------------------------- path, headers


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/v1/models", "", "/v1/models"),
        ("/llm/v1/models", "/llm", "/v1/models"),  # Starlette Mount, uvicorn --root-path
        ("/v1/models", "/llm", "/v1/models"),  # servers that strip root_path themselves
        ("/llm", "/llm", "/"),
        ("/llmx/v1/models", "/llm", "/llmx/v1/models"),  # not a path prefix
    ],
)
def test_route_path(path: str, root: str, expected: str) -> None:
    assert route_path({"path": path, "root_path": root}) == expected


def test_request_headers_drop_hop_by_hop_and_optionally_auth() -> None:
    incoming = [
        (b"host", b"gw"),
        (b"content-type", b"application/json"),
        (b"content-length", b"12"),
        (b"connection", b"keep-alive, X-Private"),
        (b"x-private", b"hop"),
        (b"transfer-encoding", b"chunked"),
        (b"authorization", b"Bearer k"),
        (b"x-api-key", b"k"),
        (b"accept-encoding", b"gzip"),
        (b"user-agent", b"test"),
    ]
    kept = forwardable_request_headers(incoming, strip_auth=False)
    assert [k for k, _ in kept] == [b"content-type", b"authorization", b"x-api-key", b"user-agent"]
    kept = forwardable_request_headers(incoming, strip_auth=True)
    assert [k for k, _ in kept] == [b"content-type", b"user-agent"]


def test_response_headers_drop_hop_by_hop_and_server_owned() -> None:
    upstream = [
        (b"Content-Type", b"text/event-stream"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Server", b"uvicorn"),
        (b"Date", b"today"),
        (b"Keep-Alive", b"timeout=5"),
        (b"X-Request-Id", b"7"),
    ]
    assert forwardable_response_headers(upstream) == [
        (b"content-type", b"text/event-stream"),
        (b"x-request-id", b"7"),
    ]
