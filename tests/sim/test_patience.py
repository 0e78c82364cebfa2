"""Callers that give up: ``Arrival.patience``, ``simulate(patience=...)`` and ``--patience``."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replay_helpers import router_run

from swapcore import (
    ArrivalOrderScheduler,
    ConfigError,
    FIFOScheduler,
    MaxLoadedPlanner,
)
from swapcore.cli.main import main
from swapcore.scheduling.requests import Request
from swapcore.sim import (
    Arrival,
    LoadInterval,
    ModelProfile,
    SimReport,
    SimScheduler,
    arrival_order,
    fifo,
    format_comparison,
    format_report,
    read_trace,
    simulate,
    write_trace,
)
from swapcore.sim.report import ABANDONED, OUTCOMES, SERVED

Models = Mapping[str, ModelProfile | float]
SchedulerClass = type[FIFOScheduler] | type[ArrivalOrderScheduler]


def run(
    trace: list[Arrival],
    models: Models,
    n: int = 1,
    scheduler: SimScheduler | None = None,
    patience: float | None = None,
) -> SimReport:
    """Simulate ``trace`` with ``MaxLoadedPlanner(n)``."""
    return simulate(
        trace,
        planner=lambda: MaxLoadedPlanner(n),
        models=models,
        scheduler=scheduler,
        patience=patience,
    )


def a(at: float, model: str = "a", service: float = 1.0, patience: float | None = None) -> Arrival:
    return Arrival(at, model, service, patience=patience)


def outcomes(report: SimReport) -> list[tuple[str, float | None]]:
    return [(r.outcome, r.started) for r in report.requests]


# --------------------------------------------------------------------------- giving up


def test_a_request_that_gives_up_in_the_queue_never_loads_its_model() -> None:
    # b (at 1) must evict a, which is loading: it queues, and gives up at 4.
    report = run([a(0), a(1, "b", patience=3)], {"a": 10, "b": 5})
    assert dict(report.loads_per_model) == {"a": 1, "b": 0}
    gave_up = report.requests[1]
    assert (gave_up.outcome, gave_up.started, gave_up.finished, gave_up.wait) == (
        ABANDONED,
        None,
        4.0,
        3.0,
    )
    assert gave_up.error is None
    assert report.requests[0].started == 10.0
    assert report.abandoned == report.outcomes[ABANDONED] == 1
    assert report.usage["b"].abandoned == 1 and report.usage["a"].abandoned == 0
    assert report.waits.count == 1 and report.waits_by_model["b"].count == 0  # served only


def test_a_request_that_gives_up_on_its_own_swap_leaves_the_load_going() -> None:
    # The swap to a starts for the first request; it gives up at 3, the second
    # request joins the same swap at 5 and is served when the load ends at 10.
    report = run([a(0, patience=3), a(5)], {"a": 10})
    assert outcomes(report) == [(ABANDONED, None), (SERVED, 10.0)]
    assert report.total_loads == 1
    assert report.timeline == (LoadInterval("a", 0.0, 10.0, 11.0, None),)
    alone = run([a(0, patience=3)], {"a": 10})
    assert alone.total_loads == 1 and alone.usage["a"].loading == 10.0
    assert outcomes(alone) == [(ABANDONED, None)]
    assert alone.makespan == 3.0 and alone.events == 3  # arrival, give-up, load done


@pytest.mark.parametrize(
    ("patience", "loads_b", "outcome", "started"),
    [
        (4.0, 0, ABANDONED, None),  # gives up at 5, as a's request ends: before the drain
        (4.5, 1, ABANDONED, None),  # the swap to b started at 5 goes on
        (6.0, 1, ABANDONED, None),  # gives up at 7, as b becomes ready: before the grant
        (6.5, 1, SERVED, 7.0),
    ],
)
def test_a_give_up_comes_before_a_grant_at_the_same_instant(
    patience: float, loads_b: int, outcome: str, started: float | None
) -> None:
    # a serves 0-5; b (at 1) must evict busy a: queued until 5, then stop 0, load 2.
    report = run([a(0, service=5), a(1, "b", patience=patience)], {"a": 0, "b": 2})
    assert report.loads_per_model["b"] == loads_b
    assert outcomes(report)[1] == (outcome, started)


def test_a_grant_before_the_patience_runs_out_is_kept() -> None:
    report = run([a(0, patience=10.5)], {"a": 10})
    assert outcomes(report) == [(SERVED, 10.0)]
    assert report.makespan == 11.0  # the stale give-up at 10.5 is no event
    assert report.timeline == (LoadInterval("a", 0.0, 10.0, 11.0, None),)
    assert report.events == 3


def test_patience_with_max_wait() -> None:
    # a is always busy (a request a second serving 2 s); b arrives at 10 and
    # is starved from 15, when new a requests queue behind it.
    stream = [a(t, service=2) for t in range(30)]
    scheduler = fifo(max_wait=5, default_concurrency_limit=1000)

    def b_with(patience: float | None) -> SimReport:
        return run([*stream, a(10, "b", patience=patience)], {"a": 1, "b": 1}, scheduler=scheduler)

    served = b_with(20)
    assert served.requests[11].started == 17.0  # the guard served it: a frees at 16, loads 1
    assert served.requests[16].started == 19.0  # a at 15 was held back for b
    early = b_with(3)  # gives up before the guard: nothing held back, no load of b
    assert early.requests[11].outcome == ABANDONED and early.loads_per_model["b"] == 0
    assert all(r.started == r.arrived for r in early.requests if r.model == "a" and r.arrived)
    late = b_with(5.5)  # gives up while guarded: the held-back request goes at once
    assert late.requests[11].outcome == ABANDONED and late.loads_per_model["b"] == 0
    assert late.requests[16].started == 15.5


def test_a_give_up_resolves_the_request_for_the_idle_ttl() -> None:
    # The give-up leaves the swap to a, which still loads; its end arms the TTL.
    report = run([a(0, patience=3)], {"a": ModelProfile(10, ttl=5)})
    assert report.timeline == (LoadInterval("a", 0.0, 10.0, 15.0, 15.0),)
    assert report.ttl_unloads == 1


def test_the_idle_ttl_is_armed_again_after_a_give_up() -> None:
    # Arrival order: the request for a at 4 queues behind c's (which needs busy
    # b evicted) though a is ready and idle, and cancels a's TTL. When it gives
    # up at 5 the TTL is armed again: a unloads at 10, which makes room for c.
    models: Models = {"a": ModelProfile(1, ttl=5), "b": 1, "c": 1}
    trace = [a(0, "b", 100), a(0.5), a(3, "c"), a(4, patience=1)]
    report = run(trace, models, n=2, scheduler=arrival_order())
    assert outcomes(report) == [(SERVED, 1.0), (SERVED, 1.5), (SERVED, 11.0), (ABANDONED, None)]
    assert report.timeline[1] == LoadInterval("a", 0.5, 1.5, 10.0, 10.0)
    patient = run([*trace[:3], a(4)], models, n=2, scheduler=arrival_order())
    assert outcomes(patient)[2:] == [(SERVED, 102.0), (SERVED, 101.0)]


def test_a_stale_timer_does_not_stretch_the_end_of_the_run() -> None:
    # a's TTL timer (armed at 1) is cancelled by the swap to b; the run ends
    # when b's request does, at 4, not when the stale timer would have fired.
    report = run([a(0), a(2, "b")], {"a": ModelProfile(0, ttl=10), "b": 1})
    assert report.timeline[-1] == LoadInterval("b", 2.0, 3.0, 4.0, None)
    assert report.usage["b"].idle == 0.0


def test_the_default_patience_and_per_arrival_patience() -> None:
    trace = [a(0, patience=100), a(1, "b"), a(1, "c", patience=100)]
    report = run(trace, {"a": 10, "b": 1, "c": 1}, patience=5)
    assert [r.outcome for r in report.requests] == [SERVED, ABANDONED, SERVED]
    assert report.requests[1].wait == 5.0
    forever = run(trace, {"a": 10, "b": 1, "c": 1})
    assert forever.abandoned == 0 and forever.served == 3


def test_the_wait_of_an_abandoned_request_is_its_patience_exactly() -> None:
    report = run([a(0, service=100), a(0.1, "b", patience=0.2)], {"a": 0, "b": 1})
    record = report.requests[1]
    assert record.outcome == ABANDONED
    assert record.wait == 0.2 and record.finished == 0.1 + 0.2  # 0.30000000000000004


def test_a_scheduler_that_grants_after_a_give_up_is_caught() -> None:
    class Forgetful(FIFOScheduler):
        def on_cancel(self, request: Request) -> None:
            pass  # keeps the request: it is granted later

    scheduler = SimScheduler("forgetful", Forgetful)
    with pytest.raises(RuntimeError, match="request 1 for 'b' after its caller gave up"):
        run([a(0, service=5), a(1, "b", patience=1)], {"a": 0, "b": 2}, scheduler=scheduler)


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan, "5", True, 10**400])
def test_simulate_validates_the_patience(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^patience must be a finite number > 0 or None"):
        run([a(0)], {"a": 1}, patience=value)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the report


def test_the_tables_and_json_show_abandoned_requests_only_when_there_are_some() -> None:
    gave_up = run([a(0), a(1, "b", patience=3)], {"a": 10, "b": 5})
    waited = run([a(0), a(1, "b")], {"a": 10, "b": 5}, patience=math.pi * 1000)
    text = format_report(gave_up)
    assert "requests:  1 served, 1 abandoned" in text
    header = text.splitlines()[5].split()
    assert header[:4] == ["model", "requests", "served", "abandoned"]
    assert [line.split()[3] for line in text.splitlines()[7:10]] == ["0", "1", "1"]
    assert "abandoned" not in format_report(waited)
    comparison = format_comparison({"gave up": gave_up, "waited": waited})
    rows = {line[:12].strip(): line[12:].split() for line in comparison.splitlines()}
    assert rows["abandoned"] == ["1", "0"] and rows["b: abandoned"] == ["1", "0"]
    assert "a: abandoned" not in rows
    assert "abandoned" not in format_comparison({"waited": waited})
    data = gave_up.to_dict()
    assert data["outcomes"][ABANDONED] == 1 and data["usage"]["b"]["abandoned"] == 1
    assert data["requests"][1]["outcome"] == "abandoned"
    json.dumps(data)


# --------------------------------------------------------------------------- the trace


def test_arrival_patience_is_optional_and_validated() -> None:
    assert Arrival(0, "a", 1).patience is None
    assert Arrival(0, "a", 1, None, 5) == Arrival(0, "a", 1, patience=5.0)
    assert isinstance(Arrival(0, "a", 1, patience=5).patience, float)
    for bad in (0, -1, math.inf, math.nan, "5", True, 10**400):
        with pytest.raises(ConfigError, match=r"^Arrival\.patience must be a finite number > 0"):
            Arrival(0, "a", 1, patience=bad)  # type: ignore[arg-type]


def test_jsonl_round_trip_with_patience() -> None:
    trace = [a(0), Arrival(0.5, "b", 2, priority=1, patience=30), a(1, patience=0.1)]
    stream = io.StringIO()
    write_trace(trace, stream)
    lines = stream.getvalue().splitlines()
    assert lines[0] == '{"at": 0.0, "model": "a", "service": 1.0}'
    assert lines[1] == '{"at": 0.5, "model": "b", "service": 2.0, "priority": 1, "patience": 30.0}'
    assert read_trace(lines) == trace
    assert read_trace(['{"at": 0, "model": "a", "service": 1, "patience": null}']) == [a(0)]
    assert read_trace(['{"at": 0, "model": "a", "service": 1, "patience": 5}'])[0].patience == 5


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"5"', '"patience" must be a number > 0 or null, got "5"'),
        ("true", '"patience" must be a number > 0 or null, got true'),
        ("0", '"patience" must be a finite number > 0, got 0'),
        ("-2.5", '"patience" must be a finite number > 0, got -2.5'),
        ("NaN", '"patience" must be a finite number > 0, got NaN'),
        ("1e999", '"patience" must be a finite number > 0, got Infinity'),
    ],
)
def test_jsonl_patience_errors_name_file_line_and_field(
    tmp_path: Path, value: str, problem: str
) -> None:
    path = tmp_path / "trace.jsonl"
    path.write_text('# header\n{"at": 0, "model": "a", "service": 1, "patience": ' + value + "}\n")
    with pytest.raises(ConfigError) as info:
        read_trace(path)
    assert str(info.value) == f"{path}:2: {problem}"


# --------------------------------------------------------------------------- properties


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 40),
            st.sampled_from("abc"),
            st.integers(0, 6),
            st.one_of(st.none(), st.integers(1, 20)),
        ),
        max_size=25,
    ),
    st.one_of(st.none(), st.integers(1, 30)),
    st.sampled_from([None, 0, 5]),
    st.sampled_from([None, 8]),
    st.integers(1, 2),
)
def test_every_arrival_has_one_outcome_and_nobody_waits_past_their_patience(
    raw: list[tuple[int, str, int, int | None]],
    default: int | None,
    ttl: float | None,
    max_wait: float | None,
    n: int,
) -> None:
    trace = [Arrival(at, model, service, patience=p) for at, model, service, p in raw]
    models: Models = {"a": ModelProfile(3, 1, ttl=ttl), "b": ModelProfile(5, 1), "c": 2}
    report = run(trace, models, n=n, scheduler=fifo(max_wait=max_wait), patience=default)
    assert [r.id for r in report.requests] == list(range(len(trace)))
    assert sum(report.outcomes.values()) == len(trace)
    assert set(report.outcomes) == set(OUTCOMES) and report.outcomes["unfinished"] == 0
    for record, arrival in zip(report.requests, sorted(trace, key=lambda x: x.at), strict=True):
        patience = arrival.patience if arrival.patience is not None else default
        if record.outcome == ABANDONED:
            assert patience is not None and record.started is None
            assert record.wait == patience and record.finished == record.arrived + patience
        else:
            assert record.outcome == SERVED and record.started is not None
            if patience is not None:  # strictly: a give-up comes before a grant at its instant
                assert record.started < record.arrived + patience and record.wait < patience
    assert report.abandoned == sum(u.abandoned for u in report.usage.values())
    assert report.served == report.waits.count


# --------------------------------------------------------------------------- the real router


@pytest.mark.parametrize(
    ("trace", "n", "scheduler"),
    [
        ([a(0), a(1, "b", patience=3)], 1, FIFOScheduler),
        ([a(0, patience=3), a(5)], 1, FIFOScheduler),
        ([a(0, "c", 5), a(1, "b", patience=4)], 1, FIFOScheduler),  # tie with a serve end
        ([a(0, "c", 5), a(1, "b", patience=7.5)], 1, FIFOScheduler),  # tie with a load end
        ([a(0, "b", 100), a(0.5), a(3, "c"), a(4, patience=1)], 2, ArrivalOrderScheduler),
        (
            [a(0), a(1, "b", patience=2), a(2, "c", patience=30), a(20, patience=1)],
            1,
            FIFOScheduler,
        ),
    ],
)
def test_the_simulator_matches_the_router(
    trace: list[Arrival], n: int, scheduler: SchedulerClass
) -> None:
    models = {
        "a": ModelProfile(10, 0.5, ttl=5),
        "b": ModelProfile(2, 0.5),
        "c": ModelProfile(1, 0.5, ttl=3),
    }
    loads, started = router_run(trace, models, n, scheduler)
    report = simulate(
        trace, planner=lambda: MaxLoadedPlanner(n), models=models, scheduler=scheduler
    )
    assert dict(report.loads_per_model) == loads
    assert [r.started for r in report.requests] == started
    assert report.abandoned == started.count(None)


# --------------------------------------------------------------------------- the CLI

SIM_YAML = "models:\n  a: {load: 10}\n  b: {load: 5}\nplanner: max-loaded\n"


def test_cli_patience(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text(SIM_YAML)
    trace = tmp_path / "t.jsonl"
    write_trace([a(0, patience=100), a(1, "b"), a(2, "b", patience=100)], trace)
    out_json = tmp_path / "r.json"
    status = main(["simulate", str(config), str(trace), "--patience", "3", "--json", str(out_json)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "patience: 3 s" in out and "requests:  2 served, 1 abandoned" in out
    data = json.loads(out_json.read_text())
    assert data["patience"] == 3.0
    assert data["runs"][0]["outcomes"]["abandoned"] == 1
    assert data["runs"][0]["usage"]["b"]["abandoned"] == 1
    assert main(["simulate", str(config), str(trace)]) == 0
    out, _ = capsys.readouterr()
    assert "abandoned" not in out and "\npatience:" not in out


@pytest.mark.parametrize("value", ["0", "=-1", "soon", "inf", "nan", ""])
def test_cli_bad_patience_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text(SIM_YAML)
    option = f"--patience{value}" if value.startswith("=") else "--patience"
    argv = ["simulate", str(config), "--generate", "round-robin:models=a,b", option]
    status = main(argv if value.startswith("=") else [*argv, value])
    _, err = capsys.readouterr()
    assert status == 2
    assert err.strip().splitlines() == [
        f"swapcore simulate: error: --patience: expected a number of seconds > 0, "
        f"got {value.lstrip('=')!r}"
    ]


def test_the_timeline_picture_shows_the_give_ups(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from swapcore.sim import plot_timeline

    report = run([a(0), a(1, "b", patience=3)], {"a": 10, "b": 5})
    path = tmp_path / "timeline.png"
    plot_timeline({"gave up": report}, path)
    assert path.read_bytes().startswith(b"\x89PNG")
