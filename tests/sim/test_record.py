"""TraceRecorder: a live router's served requests become a trace the simulator replays."""

from __future__ import annotations

import asyncio
import functools
import io
from pathlib import Path

import pytest

import swapcore.router._base
import swapcore.router._state
import swapcore.router._swaps
from swapcore import BaseRouter, ConfigError, FIFOScheduler, MaxLoadedPlanner, ModelNotFound
from swapcore.events import (
    RequestCancelled,
    RequestGranted,
    RequestRejected,
    RequestReleased,
    SwapStarted,
)
from swapcore.sim import Arrival, ModelProfile, read_trace, simulate
from swapcore.sim.record import TraceRecorder
from swapcore.testing._virtual_loop import VirtualTimeLoop
from swapcore.testing.fakes import FakeProcess


def fed(recorder: TraceRecorder) -> TraceRecorder:
    """Two served requests, one cancelled, one rejected, one swap event (ignored)."""
    recorder(SwapStarted(100.0, "a", ()))
    recorder(RequestGranted(105.0, "a", 1, waited=5.0))
    recorder(RequestGranted(106.0, "b", 2, waited=0.5))
    recorder(RequestCancelled(106.5, "a", 3))
    recorder(RequestReleased(108.0, "b", 2, held=2.0))
    recorder(RequestRejected(109.0, "c", 4, ModelNotFound("c")))
    recorder(RequestReleased(110.0, "a", 1, held=5.0))
    return recorder


def test_a_release_completes_an_arrival_relative_to_the_recorder_start() -> None:
    recorder = fed(TraceRecorder(clock=lambda: 90.0))
    assert recorder.arrivals == [Arrival(10.0, "a", 5.0), Arrival(15.5, "b", 2.0)]
    assert recorder.not_served == 2
    assert recorder.recorded == 2
    assert recorder.in_flight == 0


def test_a_granted_request_is_in_flight_until_released() -> None:
    recorder = TraceRecorder(clock=lambda: 0.0)
    recorder(RequestGranted(3.0, "a", 7, waited=1.0))
    assert recorder.arrivals == [] and recorder.in_flight == 1
    recorder(RequestReleased(4.0, "a", 8, held=1.0))  # never granted here: ignored
    assert recorder.arrivals == [] and recorder.in_flight == 1


def test_records_are_written_as_released_and_read_back_sorted(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    with TraceRecorder(path, clock=lambda: 90.0) as recorder:
        recorder(RequestGranted(105.0, "a", 1, waited=5.0))
        recorder(RequestGranted(106.0, "b", 2, waited=0.5))
        recorder(RequestReleased(108.0, "b", 2, held=2.0))
        # Flushed at once: readable while the recorder is still open.
        assert read_trace(path) == [Arrival(15.5, "b", 2.0)]
        recorder(RequestReleased(110.0, "a", 1, held=5.0))
    assert path.read_text().splitlines()[0] == '{"at": 15.5, "model": "b", "service": 2.0}'
    assert read_trace(path) == [Arrival(10.0, "a", 5.0), Arrival(15.5, "b", 2.0)]


def test_a_stream_passed_in_is_written_and_left_open() -> None:
    stream = io.StringIO()
    recorder = fed(TraceRecorder(stream, clock=lambda: 90.0))
    recorder.close()
    assert not stream.closed
    assert read_trace(stream.getvalue().splitlines()) == recorder.arrivals


def test_an_unwritable_path_is_a_config_error_naming_it(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "trace.jsonl"
    with pytest.raises(ConfigError, match=r"cannot write the trace to .*missing"):
        TraceRecorder(target)


# --------------------------------------------------------------------------- live router


def live_run(
    loop: VirtualTimeLoop, trace: list[Arrival], models: dict[str, ModelProfile]
) -> tuple[TraceRecorder, dict[str, int]]:
    """Replay ``trace`` as real clients of BaseRouter on ``loop``, recorded."""
    procs = {m: FakeProcess(m, start_delay=p.load, stop_delay=p.stop) for m, p in models.items()}
    recorder = TraceRecorder(clock=loop.time)

    async def client(router: BaseRouter, arrival: Arrival) -> None:
        await asyncio.sleep(arrival.at)
        async with router.acquire(arrival.model):
            await asyncio.sleep(arrival.service)

    async def main() -> None:
        scheduler = functools.partial(FIFOScheduler, clock=loop.time)
        async with BaseRouter(
            procs, MaxLoadedPlanner(1), scheduler=scheduler, on_event=recorder
        ) as router:
            await asyncio.gather(*(client(router, arrival) for arrival in trace))

    try:
        loop.run_virtual(main())
    finally:
        loop.close()
    return recorder, {m: p.starts for m, p in procs.items()}


def test_a_recorded_live_run_replays_to_the_same_trace_and_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trace = [
        Arrival(0.0, "a", 2.0),
        Arrival(0.5, "b", 1.0),
        Arrival(1.0, "a", 3.0),
        Arrival(6.0, "c", 1.0),
        Arrival(6.5, "b", 2.0),
        Arrival(20.0, "a", 1.0),
    ]
    models = {"a": ModelProfile(2, 0.5), "b": ModelProfile(3, 0.5), "c": ModelProfile(1, 0.5)}
    loop = VirtualTimeLoop()
    # The router stamps arrivals and events with time.monotonic: use the virtual clock.
    monkeypatch.setattr(swapcore.router._state, "clock", loop.time)
    monkeypatch.setattr(swapcore.router._base, "clock", loop.time)
    monkeypatch.setattr(swapcore.router._swaps, "clock", loop.time)
    recorder, live_loads = live_run(loop, trace, models)
    recorded = recorder.arrivals
    assert [a.model for a in recorded] == [a.model for a in trace]
    assert [a.at for a in recorded] == pytest.approx([a.at for a in trace])
    assert [a.service for a in recorded] == pytest.approx([a.service for a in trace])
    replay = simulate(recorded, planner=lambda: MaxLoadedPlanner(1), models=models)
    assert dict(replay.loads_per_model) == live_loads
