"""The front's reading of a request's model, without a cluster: the gateway's own rules."""

from __future__ import annotations

import json
import os

import pytest

if os.environ.get("SWAPCORE_REQUIRE_RAY") != "1":
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (the ray extra)")

from swapcore.adapters.ray import SwapcoreFront

CONFIG = """\
models:
  org:
    cmd: "x --port ${PORT}"
    proxy: "http://127.0.0.1:${PORT}"
    aliases: [chat]
  org/big:
    cmd: "x --port ${PORT}"
    proxy: "http://127.0.0.1:${PORT}"
"""


@pytest.fixture
def front() -> SwapcoreFront:
    return SwapcoreFront(object(), CONFIG)


def test_the_body_query_and_aliases_name_the_model(front: SwapcoreFront) -> None:
    body = json.dumps({"model": "chat", "messages": []}).encode()
    assert front.model_of("POST", "/v1/chat/completions", b"", "application/json", body) == "org"
    assert front.model_of("GET", "/props", b"model=org%2Fbig", "", b"") == "org/big"
    assert front.model_of("POST", "/v1/chat/completions", b"", "application/json", b"{x") == ""
    assert front.model_of("GET", "/v1/models", b"", "", b"") == ""


def test_upstream_paths_follow_the_gateways_rule(front: SwapcoreFront) -> None:
    # The shortest leading run of segments that names a model wins, as in the gateway.
    assert front.model_of("GET", "/upstream/org/big/health", b"", "", b"") == "org"
    assert front.model_of("GET", "/upstream/chat/health", b"", "", b"") == "org"
    assert front.model_of("GET", "/upstream/nothing/health", b"", "", b"") == ""
