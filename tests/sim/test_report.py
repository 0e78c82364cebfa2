"""The simulation report: statistics, intervals and the plain-text tables."""

from __future__ import annotations

import pytest

from swapcore import MaxLoadedPlanner
from swapcore.sim import (
    Arrival,
    LoadInterval,
    SimReport,
    WaitStats,
    arrival_order,
    fifo,
    format_comparison,
    format_report,
    round_robin,
    simulate,
)


def test_wait_stats_use_nearest_rank_percentiles() -> None:
    stats = WaitStats.of([float(v) for v in range(100, 0, -1)])  # 1..100, any order
    assert (stats.count, stats.p50, stats.p95, stats.p99, stats.max) == (100, 50, 95, 99, 100)
    assert stats.mean == 50.5


def test_wait_stats_of_few_values() -> None:
    stats = WaitStats.of([3.0, 1.0])
    assert (stats.p50, stats.p95, stats.p99, stats.max) == (1.0, 3.0, 3.0, 3.0)
    assert WaitStats.of([7.0]) == WaitStats(1, 7.0, 7.0, 7.0, 7.0, 7.0)


def test_wait_stats_of_nothing_are_zero() -> None:
    assert WaitStats.of([]) == WaitStats(0, 0.0, 0.0, 0.0, 0.0, 0.0)


def test_load_interval_durations() -> None:
    interval = LoadInterval("a", 2.0, 7.0, 20.0, 15.0)
    assert interval.loading == 5.0
    assert interval.ready_time == 8.0
    assert LoadInterval("a", 0.0, 4.0, 10.0).ready_time == 6.0
    assert LoadInterval("a", 0.0, None, 3.0).ready_time == 0.0
    assert LoadInterval("a", 0.0, None, 3.0).loading == 3.0


def _report(**options: object) -> SimReport:
    trace = round_robin(["A", "B", "C"], rounds=4, interval=1.0, service=1.0)
    trace.append(Arrival(20, "ghost", 1))
    return simulate(
        trace,
        planner=MaxLoadedPlanner(1),
        models={"A": 10, "B": 10, "C": 10},
        scheduler=fifo(**options),
    )


def test_format_report_has_a_row_per_model_and_a_total() -> None:
    text = format_report(_report(max_wait=60.0))
    lines = text.splitlines()
    assert lines[0] == "scheduler: fifo(max_wait=60)"
    assert lines[1] == "planner:   MaxLoadedPlanner(1)"
    assert lines[2] == "requests:  12 served, 1 not found"
    assert lines[3].startswith("makespan:  33.0 s")
    header = next(line for line in lines if line.startswith("model"))
    for column in ("requests", "served", "loads", "wait p50", "p95", "p99", "max", "busy", "idle"):
        assert column in header
    rows = {line.split()[0]: line.split() for line in lines if line[:1] in "ABCg(" and "  " in line}
    assert rows["A"][1:4] == ["4", "4", "1"]
    assert rows["ghost"][1:4] == ["1", "0", "-"]
    assert rows["(all)"][1:4] == ["13", "12", "3"]


def test_format_comparison_puts_runs_side_by_side() -> None:
    trace = round_robin(["A", "B", "C"], rounds=4, interval=1.0, service=1.0)
    models = {"A": 10, "B": 10, "C": 10}
    reports = {
        label: simulate(trace, planner=MaxLoadedPlanner(1), models=models, scheduler=recipe)
        for label, recipe in (("fifo", fifo()), ("arrival", arrival_order()))
    }
    text = format_comparison(reports)
    lines = text.splitlines()
    assert lines[0] == "planner: MaxLoadedPlanner(1)"
    header = next(line for line in lines if "fifo" in line)
    assert header.split() == ["fifo", "arrival"]
    loads = next(line for line in lines if line.startswith("loads"))
    assert loads.split() == ["loads", "3", "12"]
    assert any(line.startswith("A: loads") for line in lines)


@pytest.mark.parametrize(("value", "shown"), [(3.0, "3.0"), (1234.5, "1,234"), (0.04, "0.0")])
def test_numbers_in_tables(value: float, shown: str) -> None:
    from swapcore.sim._tables import _num

    assert _num(value) == shown


def test_report_mappings_are_read_only() -> None:
    report = _report()
    with pytest.raises(TypeError):
        report.loads_per_model["A"] = 5  # type: ignore[index]
    assert report.outcomes["not_found"] == 1
