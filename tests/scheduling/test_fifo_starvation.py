"""FIFOScheduler: the ``max_wait`` starvation bound, next_deadline and on_tick."""

from __future__ import annotations

import heapq
import itertools
from typing import Any

import pytest
from test_fifo_doubles import STOPPED, Clock, OneAtATime, TablePlanner, finish_swap, make, req

from swapcore import FIFOScheduler, Request, SwapPlanner
from swapcore.testing.effects import GrantServeCall, RecordingEffects, StartSwapCall


class Sim(RecordingEffects):
    """A discrete-event driver: grants finish after a per-model service, swaps after swap_time."""

    def __init__(
        self,
        planner: SwapPlanner,
        *,
        ready: str,
        models: str,
        service: dict[str, float],
        swap_time: float,
        **kwargs: Any,
    ) -> None:
        super().__init__({m: STOPPED for m in models})
        for model in ready:
            self.states[model] = self.states[model].READY
        self.clock = Clock()
        self.service = service
        self.swap_time = swap_time
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = itertools.count()
        self.granted_at: dict[Request, float] = {}
        self.scheduler = FIFOScheduler(planner, self, clock=self.clock, **kwargs)

    def at(self, when: float, kind: str, payload: Any) -> None:
        heapq.heappush(self.events, (when, next(self.seq), kind, payload))

    def grant_serve(self, request: Request, model: str) -> bool:
        self.granted_at[request] = self.clock.now
        self.at(self.clock.now + self.service[model], "serve_done", model)
        return super().grant_serve(request, model)

    def start_swap(self, model: str, evict: Any) -> None:
        super().start_swap(model, evict)
        self.at(self.clock.now + self.swap_time, "swap_done", model)

    def run(self, until: float = float("inf")) -> None:
        while self.events and self.events[0][0] <= until:
            when, _, kind, payload = heapq.heappop(self.events)
            self.clock.now = when
            if kind == "arrive":
                self.scheduler.on_request(payload)
            elif kind == "serve_done":
                self.scheduler.on_serve_done(payload)
            else:
                self.apply_swap(payload)
                self.scheduler.on_swap_done(payload, None)


def stream(max_wait: float | None) -> tuple[Sim, Request, list[Request]]:
    """A request for A every second from t=0 to t=59 (each serves 3 s), one B at t=0.5."""
    sim = Sim(
        OneAtATime(),
        ready="A",
        models="AB",
        service={"A": 3.0, "B": 1.0},
        swap_time=2.0,
        max_wait=max_wait,
        default_concurrency_limit=100,
    )
    a_requests = [Request("A", id=i, arrived=float(i)) for i in range(60)]
    for request in a_requests:
        sim.at(request.arrived, "arrive", request)
    b = Request("B", id=1000, arrived=0.5)
    sim.at(0.5, "arrive", b)
    return sim, b, a_requests


def test_without_max_wait_a_steady_stream_starves_b() -> None:
    sim, b, a_requests = stream(max_wait=None)
    sim.run(until=59.5)
    assert b not in sim.granted_at
    assert sim.starts == []
    assert sim.scheduler.queued == (b,)
    assert all(a in sim.granted_at for a in a_requests)  # every A took the fast path
    sim.run()
    assert sim.granted_at[b] >= 62.0  # only once the stream stopped


def test_with_max_wait_b_is_served_within_the_bound() -> None:
    sim, b, a_requests = stream(max_wait=10.0)
    sim.run()
    # Bound: max_wait + the longest service in flight on A + B's swap.
    assert sim.granted_at[b] <= b.arrived + 10.0 + 3.0 + 2.0
    assert sim.starts == [StartSwapCall("B", ("A",)), StartSwapCall("A", ("B",))]
    # A requests that arrived once B was starved queued behind B.
    late = [a for a in a_requests if a.arrived >= b.arrived + 10.0]
    assert late and all(sim.granted_at[a] > sim.granted_at[b] for a in late)
    early = [a for a in a_requests if a.arrived < b.arrived + 10.0]
    assert all(sim.granted_at[a] == a.arrived for a in early)
    assert sim.scheduler.queued == () and len(sim.served()) == 61


def test_next_deadline_and_on_tick() -> None:
    clock = Clock(0.0)
    scheduler, effects = make(ready=["A"], max_wait=10.0, clock=clock)
    assert scheduler.next_deadline() is None  # nothing queued
    scheduler.on_request(req("A", at=0.0))
    scheduler.on_request(req("B", at=0.5))
    clock.now = 3.0
    assert scheduler.next_deadline() == 10.5
    clock.now = 10.5
    assert scheduler.next_deadline() is None  # crossed: no timer needed
    # A crashed without an event: a tick notices that B's swap can start.
    effects.states["A"] = STOPPED
    scheduler.on_tick()
    assert effects.starts == [StartSwapCall("B", ())]
    assert scheduler.next_deadline() is None
    without, _ = make()
    assert without.next_deadline() is None


def test_next_deadline_follows_the_oldest_not_the_head() -> None:
    clock = Clock(1.0)
    scheduler, _ = make(ready=["A"], max_wait=5.0, clock=clock, priority={"C": 1})
    scheduler.on_request(req("A"))
    scheduler.on_request(req("B", at=1.0))
    scheduler.on_request(c := req("C", at=2.0))
    assert scheduler.queued[0] is c
    assert scheduler.next_deadline() == 6.0


def starved_b(
    planner: SwapPlanner, *, now: float = 20.0, **kwargs: Any
) -> tuple[FIFOScheduler, RecordingEffects, Clock]:
    """B queued at t=0 behind a busy A (max_wait=10), then the clock set to ``now``."""
    clock = Clock(0.0)
    scheduler, effects = make(planner, clock=clock, max_wait=10.0, **kwargs)
    scheduler.on_request(req("A"))
    scheduler.on_request(req("B", at=0.0))
    assert effects.starts == []
    clock.now = now
    effects.take_calls()
    return scheduler, effects, clock


def test_a_starved_request_stops_the_fast_path_for_models_it_must_evict() -> None:
    scheduler, effects, _ = starved_b(OneAtATime(), ready=["A"])
    scheduler.on_request(a := req("A", at=20.0))
    assert effects.grants == [] and scheduler.queued[-1] is a
    scheduler.on_serve_done("A")
    assert effects.starts == [StartSwapCall("B", ("A",))]
    assert scheduler.queued == (a,)


@pytest.mark.parametrize(
    ("table", "ready", "blocked"),
    [
        # C's load would make B evict C as well.
        ({"B": ["A", "C"]}, ["A"], True),
        # C's swap would stop D, which B must stop too (a collision later).
        ({"B": ["A", "D"], "C": ["D"]}, ["A", "D"], True),
        # C's swap would stop B, the starved request's target.
        ({"B": ["A"], "C": ["B"]}, ["A", "B"], True),
        # C's swap touches nothing B needs: it goes ahead.
        ({"B": ["A"]}, ["A"], False),
    ],
)
def test_a_starved_request_stops_swaps_that_would_delay_it(
    table: dict[str, list[str]], ready: list[str], blocked: bool
) -> None:
    scheduler, effects, _ = starved_b(TablePlanner(table), ready=ready, models="ABCD")
    scheduler.on_request(c := req("C", at=20.0))
    if blocked:
        assert effects.starts == [] and scheduler.queued[-1] is c
    else:
        assert effects.starts[0].model == "C"
    # Before B has waited max_wait, the same request starts its swap.
    scheduler, effects, _ = starved_b(TablePlanner(table), now=5.0, ready=ready, models="ABCD")
    scheduler.on_request(req("C", at=5.0))
    assert effects.starts[0].model == "C"


def test_requests_still_join_a_swap_a_starved_request_must_wait_for() -> None:
    """Joining adds at most one service time to the starved request's wait.

    All waiters of a swap start together when it completes. Refusing joins made
    every load serve one or two requests under saturation, once two starved
    requests wanted different models (found by the gateway load test).
    """
    clock = Clock(0.0)
    scheduler, effects = make(TablePlanner({"B": ["X"]}), models="ABX", clock=clock, max_wait=10.0)
    scheduler.on_request(x1 := req("X"))
    scheduler.on_request(b := req("B", at=0.0))  # must evict X, whose swap is in flight
    clock.now = 20.0
    scheduler.on_request(x2 := req("X", at=20.0))
    assert scheduler.waiters("X") == (x1, x2)
    assert scheduler.queued == (b,)
    finish_swap(scheduler, effects, "X")
    scheduler.on_request(x3 := req("X", at=20.0))
    assert scheduler.queued == (b, x3)  # X is ready and busy: no fast path past B
    scheduler.on_serve_done("X")
    assert [call.model for call in effects.starts] == ["X"]  # x1 or x2 still serving
    scheduler.on_serve_done("X")
    assert effects.starts[-1] == StartSwapCall("B", ("X",))
    assert scheduler.queued == (x3,)


def test_starved_requests_are_examined_first_whatever_their_priority() -> None:
    scheduler, effects, clock = starved_b(OneAtATime(), ready=["A"], priority={"C": 5})
    clock.now = 1.0  # C queued at t=1, before B was starved: ahead of B by priority
    scheduler.on_request(c := req("C", at=1.0))
    clock.now = 20.0
    scheduler.on_request(a := req("A", at=20.0))
    b = scheduler.queued[1]
    assert scheduler.queued == (c, b, a)
    effects.take_calls()
    scheduler.on_serve_done("A")
    # B (oldest, starved) starts first; C and the late A collide with its swap.
    assert effects.starts == [StartSwapCall("B", ("A",))]
    assert scheduler.queued == (c, a)
    assert [(r.position, r.request) for r in effects.reports] == [(2, a)]


def test_cancelling_the_starved_request_releases_those_it_held_back() -> None:
    scheduler, effects, _ = starved_b(OneAtATime(), ready=["A"])
    b = scheduler.queued[0]
    scheduler.on_request(a := req("A", at=20.0))
    assert scheduler.queued == (b, a)
    scheduler.on_cancel(b)
    assert effects.grants == [GrantServeCall(a, "A", True)]
    assert scheduler.queued == ()
