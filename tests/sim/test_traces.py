"""Traces: the Arrival record, the JSON Lines format and the seeded generators."""

from __future__ import annotations

import io
import itertools
import math
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swapcore.errors import ConfigError
from swapcore.sim import (
    Arrival,
    bursts,
    dominant,
    poisson_mix,
    read_trace,
    round_robin,
    write_trace,
)

# --------------------------------------------------------------------------- Arrival


def test_arrival_normalises_numbers_to_floats() -> None:
    arrival = Arrival(1, "a", 2)
    assert arrival == Arrival(1.0, "a", 2.0, None)
    assert isinstance(arrival.at, float) and isinstance(arrival.service, float)
    assert math.copysign(1.0, Arrival(-0.0, "a", 0).at) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"at": -1}, r"Arrival\.at must be a finite number >= 0, got -1"),
        ({"at": math.nan}, r"Arrival\.at must be a finite number >= 0"),
        ({"at": math.inf}, r"Arrival\.at must be a finite number >= 0"),
        ({"at": 10**400}, r"Arrival\.at must be a finite number >= 0"),
        ({"at": "1"}, r"Arrival\.at must be a finite number >= 0, got '1'"),
        ({"at": True}, r"Arrival\.at must be a finite number >= 0"),
        ({"service": -0.5}, r"Arrival\.service must be a finite number >= 0, got -0.5"),
        ({"service": math.inf}, r"Arrival\.service must be a finite number >= 0"),
        ({"model": ""}, r"Arrival\.model must be a non-empty string"),
        ({"model": 3}, r"Arrival\.model must be a non-empty string"),
        ({"priority": 1.0}, r"Arrival\.priority must be an int or None"),
        ({"priority": True}, r"Arrival\.priority must be an int or None"),
    ],
)
def test_arrival_validation_names_the_field(kwargs: dict[str, object], match: str) -> None:
    fields: dict[str, object] = {"at": 0.0, "model": "a", "service": 1.0, **kwargs}
    with pytest.raises(ConfigError, match=match):
        Arrival(**fields)  # type: ignore[arg-type]


def test_arrival_is_frozen() -> None:
    arrival = Arrival(0.0, "a", 1.0)
    with pytest.raises(AttributeError):
        arrival.at = 2.0  # type: ignore[misc]


# --------------------------------------------------------------------------- JSONL

arrivals = st.builds(
    Arrival,
    st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False),
    st.text(min_size=1),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    st.none() | st.integers(),
)


@given(st.lists(arrivals, max_size=20))
def test_round_trip(trace: list[Arrival]) -> None:
    stream = io.StringIO()
    write_trace(trace, stream)
    stream.seek(0)
    assert read_trace(stream) == sorted(trace, key=lambda a: a.at)


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    trace = [Arrival(0.1, "a", 1.5, 2), Arrival(0.30000000000000004, "ü é", 0.0)]
    path = tmp_path / "trace.jsonl"
    write_trace(trace, path)
    assert path.read_text(encoding="utf-8") == (
        '{"at": 0.1, "model": "a", "service": 1.5, "priority": 2}\n'
        '{"at": 0.30000000000000004, "model": "ü é", "service": 0.0}\n'
    )
    assert read_trace(path) == trace
    assert read_trace(str(path)) == trace


def test_comments_blank_lines_and_stable_sort() -> None:
    lines = [
        "# a comment",
        "",
        '{"at": 2, "model": "b", "service": 1}',
        "   ",
        "  # indented comment",
        '{"at": 1, "model": "a", "service": 1, "priority": null}',
        '{"at": 2, "model": "c", "service": 1, "priority": -3}',
        '{"model": "d", "service": 0.5, "at": 0.5}',
    ]
    assert read_trace(lines) == [
        Arrival(0.5, "d", 0.5),
        Arrival(1.0, "a", 1.0),
        Arrival(2.0, "b", 1.0),
        Arrival(2.0, "c", 1.0, -3),
    ]


def test_empty_trace() -> None:
    assert read_trace([]) == []
    assert read_trace(["# nothing", ""]) == []


BAD_LINES = [
    ("{", "invalid JSON: Expecting property name enclosed in double quotes (column 2)"),
    ("at=1", "invalid JSON: Expecting value (column 1)"),
    ("[1, 2]", "expected a JSON object, got an array"),
    ('"x"', "expected a JSON object, got a string"),
    ('{"at": 1, "at": 2, "model": "a", "service": 1}', 'duplicate field "at"'),
    (
        '{"at": 1, "model": "a", "service": 1, "servce": 2}',
        'unknown field "servce" (expected at, model, service, priority, patience)',
    ),
    ('{"model": "a", "service": 1}', 'missing "at"'),
    ('{"at": 1, "service": 1}', 'missing "model"'),
    ('{"at": 1, "model": "a"}', 'missing "service"'),
    ('{"at": "1", "model": "a", "service": 1}', '"at" must be a number >= 0, got "1"'),
    ('{"at": true, "model": "a", "service": 1}', '"at" must be a number >= 0, got true'),
    ('{"at": null, "model": "a", "service": 1}', '"at" must be a number >= 0, got null'),
    ('{"at": -1, "model": "a", "service": 1}', '"at" must be a finite number >= 0, got -1'),
    ('{"at": NaN, "model": "a", "service": 1}', '"at" must be a finite number >= 0, got NaN'),
    (
        '{"at": 1e400, "model": "a", "service": 1}',
        '"at" must be a finite number >= 0, got Infinity',
    ),
    (
        '{"at": 1' + "0" * 400 + ', "model": "a", "service": 1}',
        '"at" must be a finite number >= 0, got 1000000000000000000000000000000000000...',
    ),
    (
        '{"at": 1, "model": "a", "service": -0.5}',
        '"service" must be a finite number >= 0, got -0.5',
    ),
    ('{"at": 1, "model": "a", "service": [1]}', '"service" must be a number >= 0, got [1]'),
    ('{"at": 1, "model": "", "service": 1}', '"model" must be a non-empty string, got ""'),
    ('{"at": 1, "model": 7, "service": 1}', '"model" must be a non-empty string, got 7'),
    (
        '{"at": 1, "model": "a", "service": 1, "priority": 1.5}',
        '"priority" must be an integer or null, got 1.5',
    ),
    (
        '{"at": 1, "model": "a", "service": 1, "priority": false}',
        '"priority" must be an integer or null, got false',
    ),
    (
        '{"at": 1, "model": "a", "service": 1, "priority": "high"}',
        '"priority" must be an integer or null, got "high"',
    ),
]


@pytest.mark.parametrize(("line", "problem"), BAD_LINES)
def test_parse_errors_name_file_line_and_field(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "trace.jsonl"
    path.write_text(
        '# header\n\n{"at": 0, "model": "a", "service": 1}\n' + line + "\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as info:
        read_trace(path)
    assert str(info.value) == f"{path}:4: {problem}"


def test_error_label_for_lines_streams_and_name() -> None:
    bad = ['{"at": -1, "model": "a", "service": 1}']
    with pytest.raises(ConfigError, match=r"^<trace>:1: "):
        read_trace(bad)
    with pytest.raises(ConfigError, match=r"^trace\.jsonl:1: "):
        read_trace(bad, name="trace.jsonl")
    stream = io.StringIO(bad[0])
    stream.name = "stream.jsonl"
    with pytest.raises(ConfigError, match=r"^stream\.jsonl:1: "):
        read_trace(stream)


def test_non_text_sources_are_refused() -> None:
    with pytest.raises(ConfigError, match="<trace>:1: expected a line of text"):
        read_trace([b'{"at": 0}'])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="path or an iterable of str lines"):
        read_trace(b"trace.jsonl")  # type: ignore[arg-type]


def test_write_keeps_the_given_order() -> None:
    stream = io.StringIO()
    write_trace([Arrival(2, "b", 1), Arrival(1, "a", 1)], stream)
    assert stream.getvalue().splitlines() == [
        '{"at": 2.0, "model": "b", "service": 1.0}',
        '{"at": 1.0, "model": "a", "service": 1.0}',
    ]


# --------------------------------------------------------------------------- generators


def is_sorted(trace: list[Arrival]) -> bool:
    return all(a.at <= b.at for a, b in itertools.pairwise(trace))


def test_round_robin_shape() -> None:
    trace = round_robin(["a", "b", "c"], rounds=3, interval=0.5, service=2)
    assert [a.model for a in trace] == list("abcabcabc")
    assert [a.at for a in trace] == [i * 0.5 for i in range(9)]
    assert {a.service for a in trace} == {2.0}
    assert round_robin(["a"], rounds=0, interval=1, service=1) == []


def test_poisson_mix_is_deterministic_given_seed() -> None:
    rates = {"a": 2.0, "b": 0.5}
    first = poisson_mix(rates, duration=50, service=1, seed=3)
    assert poisson_mix(rates, duration=50, service=1, seed=3) == first
    assert poisson_mix(rates, duration=50, service=1, seed=4) != first


def test_poisson_mix_shape_and_rates() -> None:
    rates = {"a": 4.0, "b": 1.0, "idle": 0.0}
    trace = poisson_mix(rates, duration=1000, service=0.25, seed=1)
    assert is_sorted(trace)
    assert all(0 < a.at < 1000 for a in trace)
    counts = {m: sum(a.model == m for a in trace) for m in rates}
    # Poisson counts: mean rate * duration, standard deviation its square root; 5 sigma.
    assert abs(counts["a"] - 4000) < 5 * math.sqrt(4000)
    assert abs(counts["b"] - 1000) < 5 * math.sqrt(1000)
    assert counts["idle"] == 0
    assert {a.service for a in trace} == {0.25}


def test_poisson_mix_exponential_service_per_model() -> None:
    trace = poisson_mix(
        {"a": 5.0, "b": 5.0},
        duration=400,
        service={"a": 2.0, "b": 0.5},
        seed=9,
        exponential_service=True,
    )
    for model, mean in (("a", 2.0), ("b", 0.5)):
        services = [a.service for a in trace if a.model == model]
        assert len(set(services)) == len(services)  # drawn, not constant
        assert abs(statistics.fmean(services) - mean) < 0.1 * mean
    constant = poisson_mix({"a": 5.0}, duration=10, service={"a": 2.0}, seed=9)
    assert {a.service for a in constant} == {2.0}


def test_bursts_shape_and_determinism() -> None:
    models = ["a", "b", "c"]
    trace = bursts(models, burst_size=4, bursts=10, gap=30, spacing=0.5, service=1, seed=2)
    assert trace == bursts(models, burst_size=4, bursts=10, gap=30, spacing=0.5, service=1, seed=2)
    assert len(trace) == 40
    assert is_sorted(trace)
    assert trace[0].at == 0.0
    groups = [trace[i : i + 4] for i in range(0, 40, 4)]
    for group in groups:
        assert len({a.model for a in group}) == 1
        assert [a.at - group[0].at for a in group] == [0.0, 0.5, 1.0, 1.5]
    for before, after in itertools.pairwise(groups):
        assert after[0].model != before[0].model  # every boundary is a swap
        assert after[0].at == pytest.approx(before[-1].at + 30)
    assert {g[0].model for g in groups} <= set(models)
    seeds = {
        tuple(
            a.model
            for a in bursts(models, burst_size=1, bursts=8, gap=1, spacing=0, service=1, seed=s)
        )
        for s in range(5)
    }
    assert len(seeds) > 1


def test_bursts_with_one_model() -> None:
    trace = bursts(["a"], burst_size=2, bursts=3, gap=1, spacing=1, service=1, seed=0)
    assert [a.at for a in trace] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert {a.model for a in trace} == {"a"}


def test_dominant_shape_and_determinism() -> None:
    args = {"duration": 100.0, "dominant_rate": 3.0, "rare_every": 10.0, "service": 0.5}
    trace = dominant("big", ["r1", "r2"], seed=5, **args)
    assert trace == dominant("big", ["r1", "r2"], seed=5, **args)
    assert trace != dominant("big", ["r1", "r2"], seed=6, **args)
    assert is_sorted(trace)
    rare = [a for a in trace if a.model != "big"]
    assert [(a.at, a.model) for a in rare] == [
        (10.0 * k, "r1" if k % 2 else "r2") for k in range(1, 10)
    ]
    stream = [a for a in trace if a.model == "big"]
    assert abs(len(stream) - 300) < 5 * math.sqrt(300)
    assert all(0 < a.at < 100 for a in stream)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: round_robin([], rounds=1, interval=1, service=1), "models must not be empty"),
        (lambda: round_robin("ab", rounds=1, interval=1, service=1), "models must be a sequence"),
        (lambda: round_robin([""], rounds=1, interval=1, service=1), "non-empty strings"),
        (lambda: round_robin(["a"], rounds=-1, interval=1, service=1), "rounds must be an int"),
        (
            lambda: round_robin(["a"], rounds=1.5, interval=1, service=1),  # type: ignore[arg-type]
            "rounds must be an int",
        ),
        (lambda: round_robin(["a"], rounds=1, interval=-1, service=1), "interval must be"),
        (lambda: round_robin(["a"], rounds=1, interval=1, service=math.nan), "service must be"),
        (lambda: poisson_mix({}, duration=1, service=1), "rates must be a non-empty mapping"),
        (lambda: poisson_mix({"a": -1}, duration=1, service=1), r"rates\['a'\] must be"),
        (lambda: poisson_mix({"a": 1}, duration=math.inf, service=1), "duration must be"),
        (
            lambda: poisson_mix({"a": 1, "b": 1}, duration=1, service={"a": 1}),
            "service has no entry for model 'b'",
        ),
        (
            lambda: poisson_mix({"a": 1}, duration=1, service={"a": -1}),
            r"service\['a'\] must be",
        ),
        (
            lambda: bursts(["a"], burst_size=0, bursts=1, gap=1, spacing=1, service=1),
            "burst_size must be an int >= 1",
        ),
        (
            lambda: bursts(["a"], burst_size=1, bursts=-1, gap=1, spacing=1, service=1),
            "bursts must be an int >= 0",
        ),
        (
            lambda: bursts(["a"], burst_size=1, bursts=1, gap=-1, spacing=1, service=1),
            "gap must be",
        ),
        (
            lambda: bursts(["a"], burst_size=1, bursts=1, gap=1, spacing=-1, service=1),
            "spacing must be",
        ),
        (
            lambda: dominant("", ["b"], duration=1, dominant_rate=1, rare_every=1, service=1),
            "dominant_model must be a non-empty string",
        ),
        (
            lambda: dominant("a", [], duration=1, dominant_rate=1, rare_every=1, service=1),
            "rare_models must not be empty",
        ),
        (
            lambda: dominant("a", ["a"], duration=1, dominant_rate=1, rare_every=1, service=1),
            "must not contain the dominant model 'a'",
        ),
        (
            lambda: dominant("a", ["b"], duration=1, dominant_rate=1, rare_every=0, service=1),
            "rare_every must be a finite number > 0",
        ),
        (
            lambda: dominant("a", ["b"], duration=1, dominant_rate=-1, rare_every=1, service=1),
            "dominant_rate must be",
        ),
    ],
)
def test_generator_arguments_are_validated(call: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()  # type: ignore[operator]
