"""`max_wait` under saturation: the bound must not cost collation.

Regression: while a starved request had to evict model X, requests for X were
refused from X's swap in flight. With two starved requests for different models
every load then served one or two requests (913 loads against FIFO's 54).
"""

from __future__ import annotations

from swapcore import MaxLoadedPlanner
from swapcore.sim import ModelProfile, fifo, poisson_mix, simulate


def test_max_wait_keeps_collation_under_saturation() -> None:
    trace = poisson_mix({"a": 20.0, "b": 20.0, "c": 20.0}, duration=30.0, service=0.05, seed=1)
    models = {name: ModelProfile(load=0.5) for name in "abc"}

    def run(max_wait: float | None) -> tuple[int, float]:
        report = simulate(
            trace,
            planner=lambda: MaxLoadedPlanner(1),
            models=models,
            scheduler=fifo(max_wait=max_wait, default_concurrency_limit=100_000),
        )
        assert len(report.requests) == len(trace)
        return report.total_loads, report.waits.max

    plain_loads, plain_max = run(None)
    bounded_loads, bounded_max = run(1.0)
    assert bounded_loads <= 3 * plain_loads
    assert bounded_max <= 10 * plain_max
