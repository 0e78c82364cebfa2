"""Filters applied to a body's bytes agree with the rule on the parsed body (apply_filters)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swapcore.adapters._bodyfilter import BodyFilterError, filter_json_body, filter_request
from swapcore.adapters._errors import GatewayHTTPError
from swapcore.adapters._requests import PARSE_LIMIT
from swapcore.config import Filters, apply_filters

NAMES = ["temperature", "top_p", "top_k", "seed", "stream", "provider", "é", 'q"uote']
REQUESTED = ["m", "m:high", "m:low"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
params = st.dictionaries(st.sampled_from(NAMES), json_values, max_size=4)
filters_st = st.builds(
    Filters,
    strip_params=st.lists(st.sampled_from(NAMES), max_size=4),
    set_params=params,
    set_params_by_id=st.dictionaries(st.sampled_from(REQUESTED), params, max_size=3),
)
bodies = st.dictionaries(st.sampled_from([*NAMES, "messages", "x"]), json_values, max_size=6)


@st.composite
def encoded(draw: st.DrawFn, body: dict[str, Any]) -> bytes:
    """``body`` as JSON text, in one of several layouts."""
    layout = draw(st.sampled_from(["compact", "spaced", "indented", "ascii"]))
    if layout == "compact":
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    elif layout == "spaced":
        text = json.dumps(body, separators=(" , ", " : "), ensure_ascii=False)
    elif layout == "indented":
        text = json.dumps(body, indent=2, ensure_ascii=False)
    else:
        text = json.dumps(body)
    return (
        draw(st.sampled_from(["", " ", "\n"])) + text + draw(st.sampled_from(["", "\n"]))
    ).encode()


@settings(max_examples=300, deadline=None)
@given(data=st.data(), filters=filters_st, requested=st.sampled_from(REQUESTED))
def test_bytes_agree_with_the_rule(data: st.DataObject, filters: Filters, requested: str) -> None:
    body = {"model": requested, **data.draw(bodies)}
    raw = data.draw(encoded(body))
    out = filter_json_body(raw, filters, requested)
    got = json.loads(out)
    expected = apply_filters(body, filters, requested)
    assert got == expected
    assert list(got) == list(expected)  # kept members keep their place; added ones go last
    assert got["model"] == requested  # never changed
    assignments = filters.assignments(requested)
    for name in filters.strip_params:
        assert name not in got or name in assignments  # stripped keys never reach upstream
    for name, value in assignments.items():
        assert got[name] == value  # set keys always do; setParamsByID wins over setParams


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.sampled_from(NAMES), json_values), max_size=8),
    filters=filters_st,
    requested=st.sampled_from(REQUESTED),
)
def test_duplicate_keys_cannot_slip_past(
    pairs: list[tuple[str, Any]], filters: Filters, requested: str
) -> None:
    members = [json.dumps("model") + ":" + json.dumps(requested)]
    members += [json.dumps(key) + ":" + json.dumps(value) for key, value in pairs]
    raw = ("{" + ",".join(members) + "}").encode()
    out = filter_json_body(raw, filters, requested)
    keys = [key for key, _ in json.loads(out, object_pairs_hook=list)]
    parsed = json.loads(out)
    assignments = filters.assignments(requested)
    for name in filters.strip_params:
        assert name in assignments or name not in keys
    for name, value in assignments.items():
        assert keys.count(name) == 1
        assert parsed[name] == value


def test_untouched_members_are_forwarded_byte_for_byte() -> None:
    raw = (
        b'{ "model" : "m",\n  "messages": [ {"role":"user", "content":"a ] } \\" b"} ],'
        b'"top_k" :1e3}'
    )
    out = filter_json_body(raw, Filters(strip_params=["seed"], set_params={"top_k": 5}), "m")
    assert (
        out
        == b'{"model" : "m","messages": [ {"role":"user", "content":"a ] } \\" b"} ],"top_k" :5}'
    )


def test_documented_example() -> None:
    filters = Filters(
        strip_params=["temperature", "top_p", "top_k"],
        set_params={"temperature": 0.7, "top_p": 0.9},
        set_params_by_id={"m:high": {"chat_template_kwargs": {"reasoning_effort": "high"}}},
    )
    raw = b'{"model":"m:high","temperature":0.2,"top_k":3,"messages":[]}'
    assert json.loads(filter_json_body(raw, filters, "m:high")) == {
        "model": "m:high",
        "messages": [],
        "temperature": 0.7,
        "top_p": 0.9,
        "chat_template_kwargs": {"reasoning_effort": "high"},
    }


def test_empty_object_and_escaped_keys() -> None:
    filters = Filters(strip_params=["seed"], set_params={"n": 1})
    assert filter_json_body(b" {} ", filters, "m") == b' {"n":1} '
    # A key spelt with escapes is still the same key.
    assert json.loads(filter_json_body(b'{"s\\u0065ed": 1}', filters, "m")) == {"n": 1}


@pytest.mark.parametrize(
    "raw",
    [b"[]", b'{"a" 1}', b'{"a": 1', b'{"a": 1 "b": 2}', b'{"a": [1, 2}', b"{1: 2}", b'{"a":}'],
)
def test_bodies_that_are_not_objects(raw: bytes) -> None:
    with pytest.raises(BodyFilterError):
        filter_json_body(raw, Filters(strip_params=["a"]), "m")


async def test_filter_request_leaves_unfiltered_bodies_alone() -> None:
    body = bytearray(b'{"model":"m","temperature":1}')
    assert await filter_request(body, "json", None, "m") is body
    assert await filter_request(body, "json", Filters(), "m") is body
    by_id = Filters(set_params_by_id={"other": {"x": 1}})
    assert await filter_request(body, "json", by_id, "m") is body  # nothing for "m"
    form = bytearray(b"--b\r\nwhatever")
    assert await filter_request(form, "form", Filters(strip_params=["x"]), "m") is form
    assert body == b'{"model":"m","temperature":1}'


async def test_filter_request_rewrites_in_place_and_in_a_thread_when_large() -> None:
    body = bytearray(b'{"model":"m","temperature":1,"top_p":1}')
    out = await filter_request(body, "json", Filters(strip_params=["temperature"]), "m")
    assert out is body and body == b'{"model":"m","top_p":1}'
    big = bytearray(json.dumps({"model": "m", "temperature": 1, "pad": "x" * PARSE_LIMIT}).encode())
    out = await filter_request(big, "json", Filters(strip_params=["temperature"]), "m")
    assert out is big and json.loads(out).keys() == {"model", "pad"}


async def test_filter_request_invalid_body_is_400() -> None:
    with pytest.raises(GatewayHTTPError) as info:
        await filter_request(bytearray(b'{"a": 1 "b"}'), "json", Filters(strip_params=["a"]), "m")
    assert info.value.status == 400
