"""The body scanner agrees with ``json.loads`` on what the gateway needs, and bounds the rest."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swapcore.adapters._jsonscan import JSONScanError, scan_object

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_KEYS = st.sampled_from(["model", "stream", "messages", "a", 'q"uote', "\\", "é"]) | st.text()
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20,
)
_OBJECTS = st.dictionaries(_KEYS, _VALUES, max_size=6)
_STYLES = st.sampled_from(
    [
        {},
        {"ensure_ascii": False},
        {"indent": 2},
        {"separators": (",", ":")},
        {"separators": (" , ", " : "), "ensure_ascii": False},
    ]
)


@given(_OBJECTS, _STYLES, st.sampled_from(["", " ", "\n\t", "\ufeff"]))
def test_scan_agrees_with_json_loads(obj: dict[str, Any], style: dict[str, Any], pad: str) -> None:
    body = (pad + json.dumps(obj, **style) + pad.replace("\ufeff", "")).encode()
    found = scan_object(body)
    model = obj.get("model")
    assert found.model == (model if isinstance(model, str) else None)
    assert found.stream is (obj.get("stream") is True)
    if isinstance(model, str):
        assert found.span is not None
        start, end = found.span
        assert json.loads(body[start:end]) == model


@given(_OBJECTS.filter(bool), _STYLES, st.data())
def test_every_proper_prefix_is_refused(
    obj: dict[str, Any], style: dict[str, Any], data: st.DataObject
) -> None:
    body = json.dumps(obj, **style).encode()
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(JSONScanError):
        scan_object(body[:cut])


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"[1, 2]", "invalid_json"),
        (b'"model"', "invalid_json"),
        (b"", "invalid_json"),
        (b'{"model": "a"} {}', "invalid_json"),
        (b'{"model": "a"]', "invalid_json"),
        (b'{"model": "a", "x": "unterminated}', "invalid_json"),
        (b'{"model": "a", "model": "b"}', "missing_model"),
        (b'{"x": ' + b"[" * 200 + b"]" * 200 + b"}", "too_deep"),
    ],
)
def test_malformed_bodies_are_refused_with_a_code(body: bytes, code: str) -> None:
    with pytest.raises(JSONScanError) as raised:
        scan_object(body)
    assert raised.value.code == code


def test_depth_and_token_bounds_are_configurable() -> None:
    nested = b'{"model": "m", "x": [[[[1]]]]}'
    assert scan_object(nested, max_depth=5).model == "m"
    with pytest.raises(JSONScanError, match="deeper than 4"):
        scan_object(nested, max_depth=4)
    many = b'{"model": "m", "x": [' + b",".join([b'"s"'] * 50) + b"]}"
    with pytest.raises(JSONScanError) as raised:
        scan_object(many, max_tokens=40)
    assert raised.value.code == "too_complex"


def test_nested_model_and_stream_keys_are_not_the_top_level() -> None:
    found = scan_object(b'{"x": {"model": "inner", "stream": true}, "model": "outer"}')
    assert (found.model, found.stream) == ("outer", False)


def test_stream_must_be_the_literal_true() -> None:
    assert scan_object(b'{"stream": "true"}').stream is False
    assert scan_object(b'{"stream": truex}').stream is False
    assert scan_object(b'{"stream":true}').stream is True
