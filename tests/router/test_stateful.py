"""Stateful property tests: the router, FIFOScheduler and the shipped planners.

``RouterStateMachine`` drives a real ``BaseRouter`` over fake processes with
random operations and checks its invariants after every step (see
``docs/testing.md``). Here it runs with random ``GroupPlanner`` and
``MatrixPlanner`` configurations, each with its exact co-residency rule.

Why the co-residency rules hold, also during swaps: a model starts only as
the target of a swap; a swap computes its evict set over the running set
*including* the targets of swaps in flight, stops that set, and only then
starts its target; the scheduler never starts a swap that would evict an
in-flight target or a model another swap or unload is stopping (it queues
instead), and never restarts a model while a swap is stopping it. So of
two models that cannot run together, whichever is loaded last stops the
other before it starts, and the models that are ``READY`` or ``STARTING``
are always a subset of what the latest swap kept plus its target.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Mapping, Sequence
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from router_helpers import SerialScheduler, bounded, eventually

from swapcore import (
    BaseRouter,
    CostAwareScheduler,
    GroupPlanner,
    MatrixPlanner,
    ProcessState,
    SwapPlanner,
)
from swapcore.matrix import MatrixProgram
from swapcore.planners.placement import PlacementPlanner
from swapcore.scheduling.effects import SchedulerFactory
from swapcore.scheduling.fifo import FIFOScheduler
from swapcore.testing.fakes import FakeProcess
from swapcore.testing.stateful import RouterStateMachine, mutual_evictions
from swapcore.testing.strategies import group_configs, matrix_configs

STEPS = 50
# Examples follow the hypothesis profile (tests/conftest.py): dev 100, ci 300.
EXAMPLES = settings.default.max_examples
# Finding a planted bug: no database, a fixed seed, no time spent shrinking.
HUNT = settings(
    max_examples=300,
    stateful_step_count=30,
    database=None,
    derandomize=True,
    phases=[Phase.generate],
    report_multiple_bugs=False,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@settings(max_examples=EXAMPLES, stateful_step_count=STEPS)
class GroupsMachine(RouterStateMachine):
    """Random group configurations over five models (drawn once per example).

    Co-residency: ``GroupPlanner`` decides each eviction pairwise, so no two
    running models may each evict the other: never two members of one
    swapping group, never members of two different exclusive, non-persistent
    groups. (A non-exclusive group's member may join anything, and a
    persistent group survives exclusive loads: those pairs may coexist.)
    """

    models = ("a", "b", "c", "d", "e")

    def configure(self, data: st.DataObject) -> None:
        self.groups = data.draw(group_configs(self.models), label="groups")

    def make_planner(self) -> SwapPlanner:
        return GroupPlanner(self.groups, models=self.models)

    def check_coresidency(self, running: frozenset[str]) -> None:
        assert self.planner is not None
        clash = mutual_evictions(self.planner, running)
        assert not clash, f"{sorted(running)} run together, but each of {clash} evicts the other"


TestGroups = GroupsMachine.TestCase


class BoundedWaitMachine(GroupsMachine):  # inherits GroupsMachine's settings
    """The same, with ``max_wait`` and priorities (per model and per request).

    The scheduler reads the machine's virtual clock, which starts at the
    router's request stamps (``time.monotonic()``), so a request has waited
    ``max_wait`` once that much virtual time has passed.
    """

    def make_scheduler(self) -> SchedulerFactory | None:
        return functools.partial(
            FIFOScheduler,
            default_concurrency_limit=self.concurrency_limit,
            max_wait=0.5,
            priority={self.models[0]: 5, self.models[1]: -1},
            clock=self.loop.time,
        )


TestBoundedWait = BoundedWaitMachine.TestCase


class FaultsMachine(GroupsMachine):  # inherits GroupsMachine's settings
    """Random group configurations again, with faults: planner hooks fail, leases expire.

    The planner is wrapped in a ``FaultyPlanner`` (the ``planner_fault`` rule
    arms its hooks at random); every lease is bounded by the router's 30
    virtual seconds or the request's own 5 or 60 (``time_passes`` moves 1, 25
    or 120). Every invariant still holds: each request resolves exactly once
    (a planner fault is a ``PolicyError``), a grant ends once, no count leaks,
    no lease outlives its timeout, nothing deadlocks.
    """

    planner_faults = True
    lease_timeout = 30.0
    lease_timeouts = (None, 5.0, 60.0)


TestFaults = FaultsMachine.TestCase


class CostAwareFaultsMachine(FaultsMachine):
    """The same faults under CostAwareScheduler with a hold and ``max_wait``."""

    def make_scheduler(self) -> SchedulerFactory | None:
        return functools.partial(
            CostAwareScheduler,
            default_concurrency_limit=self.concurrency_limit,
            max_wait=0.5,
            hold="auto",
            clock=self.loop.time,
        )


TestCostAwareFaults = CostAwareFaultsMachine.TestCase


class SleepingGroupsMachine(GroupsMachine):  # inherits GroupsMachine's settings
    """Random group configurations with sleeping models and a tight host budget.

    Evicted models sleep (levels 1 and 2, one model that cannot sleep) while
    their host memory fits 8 units beside the sleepers already there, and
    are stopped otherwise; wakes and sleeps fail at random (a failed wake
    starts cold, a failed sleep stops). On top of every router invariant:
    never over the host budget, never a grant to a sleeping model (grants
    go to READY processes only), never a busy model put to sleep, and the
    same co-residency as without sleep (sleepers are not running).
    """

    sleepers = True
    host_sizes: ClassVar[Mapping[str, float]] = {"a": 4, "b": 4, "c": 8, "d": 2, "e": 4}
    host_budget = 8.0


TestSleepingGroups = SleepingGroupsMachine.TestCase


@settings(max_examples=EXAMPLES, stateful_step_count=STEPS)
class SleepingOneAtATimeMachine(RouterStateMachine):
    """One model at a time over four sleeping models: every switch evicts, so sleeps abound.

    Host budget 6 with sizes 4, 4, 2 and 1 (the fourth cannot sleep): some
    evictions sleep, others must stop for lack of room.
    """

    models = ("a", "b", "c", "d", "e")
    sleepers = True
    host_sizes: ClassVar[Mapping[str, float]] = {"a": 4, "b": 4, "c": 2, "d": 1}
    host_budget = 6.0

    def make_planner(self) -> SwapPlanner:
        return GroupPlanner({}, models=self.models)

    def check_coresidency(self, running: frozenset[str]) -> None:
        assert len(running) <= 1, f"{sorted(running)} run together"


TestSleepingOneAtATime = SleepingOneAtATimeMachine.TestCase


def test_the_sleeping_machine_really_sleeps_wakes_and_meets_the_budget() -> None:
    """The machine above exercises what it claims: sleeps, wakes, failed wakes, stops for room."""
    totals: collections.Counter[str] = collections.Counter()

    class Counting(SleepingOneAtATimeMachine):
        def teardown(self) -> None:
            for fake in self.processes.values():
                totals["sleeps"] += fake.sleeps
                totals["wakes"] += fake.wakes
                totals["failed wakes"] += fake.failed_wakes
            super().teardown()

    run_state_machine_as_test(
        Counting, settings=settings(Counting.TestCase.settings, max_examples=300, derandomize=True)
    )
    # Examples differ with the run's order; every run sleeps and tries to wake.
    assert totals["sleeps"] > 0, totals
    assert totals["wakes"] + totals["failed wakes"] > 0, totals


class SleepingCostAwareMachine(SleepingGroupsMachine):
    """The same under CostAwareScheduler pricing swaps with learned costs, and with faults."""

    planner_faults = True
    lease_timeout = 30.0

    def make_scheduler(self) -> SchedulerFactory | None:
        machine = self

        def factory(planner: SwapPlanner, effects: object) -> CostAwareScheduler:
            return CostAwareScheduler(
                planner,
                effects,  # type: ignore[arg-type]
                default_concurrency_limit=machine.concurrency_limit,
                max_wait=0.5,
                clock=machine.loop.time,
                costs=machine.costs,
            )

        return factory

    def configure(self, data: st.DataObject) -> None:
        super().configure(data)
        from swapcore.costs import SwapCosts

        self.costs = SwapCosts({m: {"load": 30.0, "wake": 1.5} for m in self.models})


TestSleepingCostAware = SleepingCostAwareMachine.TestCase


@settings(max_examples=EXAMPLES, stateful_step_count=STEPS)
class PlacementMachine(RouterStateMachine):
    """Random sizes on two or three devices, some models sleeping within a host budget.

    After every step, each device holds at most its budget: the shares of
    the models starting or ready (a sleeping model holds none), where the
    planner placed them (an evicted model, until it stops, where it was);
    and every such model is placed in full.
    """

    models = ("a", "b", "c", "d", "e")
    sleepers = True
    host_sizes: ClassVar[Mapping[str, float]] = {"a": 4, "b": 4, "c": 2, "d": 1}
    host_budget = 6.0

    def configure(self, data: st.DataObject) -> None:
        super().configure(data)
        budgets = data.draw(st.lists(st.integers(4, 24), min_size=2, max_size=3), label="budgets")
        self.devices = {str(i): b for i, b in enumerate(budgets)}
        self.split = data.draw(st.booleans(), label="split")
        room = sum(budgets) if self.split else max(budgets)
        self.sizes = {m: data.draw(st.integers(1, room), label=f"size of {m}") for m in self.models}

    def make_planner(self) -> SwapPlanner:
        self.placer = PlacementPlanner(self.sizes, self.devices, split=self.split)
        return self.placer

    def check_coresidency(self, running: frozenset[str]) -> None:
        # A model a started swap evicts is no longer placed, but it holds its
        # memory until it has stopped (and its swap's target waits for that).
        placed = getattr(self, "placed", {})
        self.placed = placed
        used = dict.fromkeys(self.devices, 0.0)
        for model in running:
            placement = self.placer.placement_of(model) or placed.get(model, {})
            placed[model] = placement
            assert sum(placement.values()) == self.sizes[model], (model, placement)
            for device, share in placement.items():
                used[device] += share
        over = {d: u for d, u in used.items() if u > self.devices[d]}
        assert not over, f"devices over budget: {over} (budgets {self.devices}, running {running})"


TestPlacement = PlacementMachine.TestCase


class Overcommits(PlacementPlanner):
    """Places as PlacementPlanner does, but never evicts: devices overflow."""

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        return ()


class OvercommittingMachine(PlacementMachine):
    def make_planner(self) -> SwapPlanner:
        self.placer = Overcommits(self.sizes, self.devices, split=self.split)
        return self.placer


def test_the_placement_machine_catches_an_overcommitting_planner() -> None:
    with pytest.raises(AssertionError, match=r"devices over budget|\(.*\{\}\)"):
        run_state_machine_as_test(OvercommittingMachine, settings=HUNT)


@settings(max_examples=EXAMPLES, stateful_step_count=STEPS)
class MatrixMachine(RouterStateMachine):
    """Random swap matrices (1-5 models, 1-3 sets, vars, references, costs).

    Co-residency: the models that are ``READY`` or ``STARTING`` are always
    contained in one combination of one set (``can_contain_all``), or are a
    single model (a model in no set runs alone). The solver keeps the
    running models it does not evict inside the combination it picks, and
    the target only starts after the evicted ones stopped.
    """

    def configure(self, data: st.DataObject) -> None:
        spec = data.draw(matrix_configs(max_models=5, max_sets=3, max_leaves=6), label="matrix")
        self.models = spec.models
        self.program: MatrixProgram = spec.compile()
        self.solver = spec.solver()

    def make_planner(self) -> SwapPlanner:
        return MatrixPlanner(self.solver)

    def check_coresidency(self, running: frozenset[str]) -> None:
        assert len(running) <= 1 or self.program.can_contain_all(running), (
            f"{sorted(running)} run together, but no combination of any set holds them all"
        )


TestMatrix = MatrixMachine.TestCase


class SleepingMatrixMachine(MatrixMachine):
    """Random swap matrices with sleeping models (no host budget)."""

    sleepers = True


TestSleepingMatrix = SleepingMatrixMachine.TestCase


class _EvictsBusy(SerialScheduler):
    """A broken scheduler: starts swaps without waiting for busy models to drain."""

    def _drain(self) -> None:
        while self.queue and self.swap is None:
            request = self.queue.pop(0)
            model = request.model
            evict = list(self.planner.eviction_for(model, sorted(self.effects.running_models())))
            if not evict and self.effects.model_state(model) is ProcessState.READY:
                self._grant(request, model)
            else:
                self.swap = (model, [request])
                self.effects.start_swap(model, evict)


class _OneAtATime(RouterStateMachine):
    models = ("a", "b", "c")

    def make_planner(self) -> SwapPlanner:
        return GroupPlanner({}, models=self.models)

    def check_coresidency(self, running: frozenset[str]) -> None:
        assert len(running) <= 1, f"{sorted(running)} run together"


class _SerialMachine(_OneAtATime):
    def make_scheduler(self) -> SchedulerFactory | None:
        return SerialScheduler


class _EvictsBusyMachine(_OneAtATime):
    def make_scheduler(self) -> SchedulerFactory | None:
        return _EvictsBusy


def test_any_scheduler_can_be_checked() -> None:
    # The deliberately small SerialScheduler of the router tests passes too.
    run_state_machine_as_test(
        _SerialMachine, settings=settings(_SerialMachine.TestCase.settings, max_examples=50)
    )


def test_a_scheduler_that_stops_busy_models_is_caught() -> None:
    with pytest.raises(AssertionError, match="in flight"):
        run_state_machine_as_test(_EvictsBusyMachine, settings=HUNT)


class _StrictCancelMachine(_OneAtATime):
    forbid_loads_for_cancelled = True


def test_the_machine_finds_no_load_for_a_cancelled_caller() -> None:
    run_state_machine_as_test(_StrictCancelMachine, settings=HUNT)


async def test_a_caller_cancelled_behind_a_serve_done_triggers_no_load() -> None:
    # llama-swap's rule: a request whose caller left is removed at once and must
    # never trigger a load. Here b's caller leaves in the same loop turn as a's
    # lease is released. The withdrawal used to queue behind the serve-done,
    # whose drain then started the swap to b (stopping a) for nobody; the
    # machine above found it.
    fakes = {m: FakeProcess(m) for m in ("a", "b")}
    async with BaseRouter(fakes, GroupPlanner({}, models=fakes)) as router:
        release = asyncio.Event()
        held = asyncio.Event()

        async def wants_b() -> None:
            async with router.acquire("b"):
                pass

        async def holds_a() -> None:
            async with router.acquire("a"):
                held.set()
                await release.wait()
            b_caller.cancel()  # right after the release was posted

        a_caller = asyncio.create_task(holds_a())
        await bounded(held.wait())
        b_caller = asyncio.create_task(wants_b())
        await eventually(lambda: router.snapshot().queue == ((2, "b"),))
        release.set()
        await bounded(a_caller)
        await bounded(asyncio.gather(b_caller, return_exceptions=True))
        await bounded(router._settled())
        assert b_caller.cancelled()
        assert (fakes["b"].starts, fakes["a"].stops) == (0, 0), "a load for a cancelled caller"
