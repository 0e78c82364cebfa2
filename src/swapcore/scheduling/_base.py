"""The machinery every swapcore scheduler shares; subclasses choose the drain policy.

:class:`_BaseScheduler` implements the whole :class:`~swapcore.scheduling.Scheduler`
protocol around llama-swap's FIFO decision tree: admission, joining a swap in
flight, the fast path, the collision and busy-model rules, swap bookkeeping,
the grant contract, cancellation, swap errors, unload, shutdown, positions,
the ``max_wait`` starvation guard, and the containment of planner faults. A
subclass decides only *in which order* queued requests are re-examined when
room frees up (``_drain``), and may turn on head-of-line blocking or ignore
priorities. ``FIFOScheduler``, ``CostAwareScheduler`` and
``ArrivalOrderScheduler`` are its subclasses.
"""

from __future__ import annotations

import abc
import enum
import time
from collections.abc import Callable, Collection, Mapping

from swapcore.errors import (
    ConcurrencyLimitExceeded,
    ModelNotFound,
    ModelUnloaded,
    PolicyError,
    RoutingError,
    SwapFailed,
)
from swapcore.planners.base import SwapPlanner
from swapcore.process import ProcessState
from swapcore.scheduling._fifo_config import (
    check_limit,
    check_limits,
    check_max_wait,
    check_priority,
)
from swapcore.scheduling.effects import Effects
from swapcore.scheduling.queue import RequestQueue
from swapcore.scheduling.requests import Request
from swapcore.scheduling.swaps import Evictions, Swap, SwapBook, describe, log, policy_error

__all__ = ["KEEP", "Keep", "_BaseScheduler", "_stays"]

_READY = ProcessState.READY
_ABSENT: object = object()


class Keep(enum.Enum):
    """The type of :data:`KEEP`: a setting :meth:`_BaseScheduler.reconfigure` leaves as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP
"""Leave this setting as it is (the default of every ``reconfigure`` setting)."""


def _stays(request: Request) -> bool:
    """A ``RequestQueue.sweep`` visitor that keeps everyone (drops only the detached)."""
    return False


class _BaseScheduler(abc.ABC):
    """llama-swap's FIFO decision tree and bookkeeping; ``_drain`` is the subclass's policy.

    Subclasses implement :meth:`_drain` (re-examine the queue after room
    freed up) and may set ``_head_of_line`` (a new request queues whenever
    the queue is not empty), override :meth:`_priority_of` (queue order) and
    :meth:`_holds_back` (whether cancelling a queued request may unblock
    others). Every public method's guarantee holds whatever the policy.
    """

    _head_of_line = False

    def __init__(
        self,
        planner: SwapPlanner,
        effects: Effects,
        *,
        priority: Mapping[str, int] | None = None,
        concurrency_limits: Mapping[str, int] | None = None,
        default_concurrency_limit: int = 10,
        max_wait: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._planner = planner
        self._effects = effects
        self._priority = check_priority(priority)
        self._limits = check_limits(concurrency_limits)
        self._default_limit = check_limit("default_concurrency_limit", default_concurrency_limit)
        self._max_wait = check_max_wait(max_wait)
        self._clock = clock
        # A planner that keeps the default on_serve records nothing: skip the
        # clock read and the call, and keep memoised evictions across grants.
        self._tracks_serves = getattr(type(planner), "on_serve", None) is not SwapPlanner.on_serve
        self._queue = RequestQueue(effects.report_position, track_age=self._max_wait is not None)
        self._book = SwapBook()
        self._swaps = self._book.swaps  # target -> Swap, read on every request
        self._stopping = self._book.stopping  # model -> swaps in flight + unloads stopping it
        # One decision pass (one request, or one drain) reads the running set
        # once and asks the planner once per target.
        self._evictions = Evictions(planner, effects, self._book)
        self._in_flight: dict[str, int] = {}
        self._admitted: dict[str, int] = {}
        self._pending: dict[Request, Swap | None] = {}  # None = queued
        self._shutdown: RoutingError | None = None
        self._active = False
        self._on_hold_models: dict[str, int] = {}  # model -> holds (on_hold) not lifted

    # -- the Scheduler protocol -------------------------------------------------

    def on_request(self, request: Request) -> None:
        """Decide what to do with a new request for model M.

        1. M is not handled (``model_state(M)`` is None): ``ModelNotFound``.
        2. Admission: M's admitted-and-unfinished requests (queued, waiting on a
           swap, serving) already reach its limit: ``ConcurrencyLimitExceeded``,
           before any queueing. Otherwise the request is admitted.
        3. A swap to M is in flight: join it as a waiter (one swap serves all).
        4. running = the running set (running processes plus the targets of
           swaps in flight), sorted; evict = ``planner.eviction_for(M, running)``.
        5. Fast path: M is ready, evict is empty and no in-flight swap (or
           unload) is stopping M: grant at once.
        6. The swap would collide with an in-flight swap (it would evict that
           swap's target, that swap evicts M, or both evict a common model), or
           with an unload in progress: queue.
        7. evict contains a model with requests in flight: queue (never kill a
           busy model).
        8. Otherwise start the swap; swaps with disjoint effects run in parallel.

        With ``max_wait`` set and a starved queued request S, steps 3, 5 and 8
        queue instead when acting would delay S. A head-of-line scheduler
        (``ArrivalOrderScheduler``) skips steps 3-8 and queues whenever the
        queue is not empty. After shutdown every request fails with the
        shutdown error.

        Planner faults fail only the request they concern, here and in every
        drain: when ``eviction_for(M, ...)`` raises or answers with M or a
        model that is not running (step 4), when ``on_swap_start`` raises
        (step 8: the swap does not start) or when ``on_serve`` raises (it is
        called just before a grant: the request is not granted), the request
        gets :class:`~swapcore.PolicyError` with the planner's exception as
        ``__cause__``, its admission is released, and the fault is logged
        once with its traceback (logger ``swapcore.scheduling``). A fault
        while computing what a starved request needs holds the other
        request's action back instead (it queues).
        """
        self._enter("on_request")
        try:
            if self._shutdown is not None:
                self._effects.grant_error(request, self._shutdown)
                return
            model = request.model
            # 1. Unknown model.
            state = self._effects.model_state(model)
            if state is None:
                self._effects.grant_error(
                    request, ModelNotFound(f"model {model!r} is not handled by this router")
                )
                return
            if request in self._pending:
                raise RuntimeError(f"request {request.id} for {model!r} was submitted twice")
            # 2. Admission, before any queueing.
            admitted = self._admitted.get(model, 0)
            limit = self._limits.get(model, self._default_limit)
            if admitted >= limit:
                rejected = ConcurrencyLimitExceeded(
                    f"model {model!r} already has {admitted} unfinished requests (limit {limit})"
                )
                self._effects.grant_error(request, rejected)
                return
            self._admitted[model] = admitted + 1
            self._evictions.reset()
            guard = self._starved() if self._queue and self._max_wait is not None else None
            # 3.-8. (head-of-line: nobody passes a queued request)
            if (self._head_of_line and self._queue) or not self._advance(request, guard, state):
                self._pending[request] = None
                self._queue.push(request, self._priority_of(request))
        finally:
            self._active = False

    def on_cancel(self, request: Request) -> None:
        """The caller left before its grant: forget the request, release its admission.

        A queued request leaves the queue (those behind it learn their new
        positions) and can never cause a swap; a swap's waiter leaves the swap,
        which still completes on its own. Unknown or already granted requests
        are ignored (the driver may race a grant).
        """
        self._enter("on_cancel")
        try:
            where = self._pending.pop(request, _ABSENT)
            if where is _ABSENT:
                return
            if isinstance(where, Swap):
                where.waiters.remove(request)
                self._release(request.model)
                return
            held_back = self._holds_back(request)
            self._queue.remove(request)
            self._release(request.model)
            if held_back:
                self._drain()
        finally:
            self._active = False

    def on_swap_done(self, model: str, error: BaseException | None) -> None:
        """The swap to ``model`` finished: grant or fail its waiters, then drain the queue.

        On error each waiter gets ``SwapFailed`` with ``error`` as ``__cause__``.
        A completion for a swap released by :meth:`on_unload` or
        :meth:`on_shutdown` is ignored; any other unknown or duplicate
        completion raises ``RuntimeError`` (a driver bug).
        """
        self._enter("on_swap_done")
        try:
            swap = self._book.finish(model)
            if swap is None:
                if self._book.expect_done(model) or self._shutdown is not None:
                    return
                raise RuntimeError(
                    f"on_swap_done({model!r}): no swap to {model!r} is in flight "
                    "(unknown or duplicate completion)"
                )
            pending = self._pending
            if error is None:
                for waiter in swap.waiters:
                    del pending[waiter]
                    self._grant(waiter, model)
            else:
                detail = str(error) or type(error).__name__
                for waiter in swap.waiters:
                    del pending[waiter]
                    self._release(model)
                    failure = SwapFailed(f"swap to {model!r} failed: {detail}")
                    failure.__cause__ = error
                    self._effects.grant_error(waiter, failure)
            self._drain()
        finally:
            self._active = False

    def on_serve_done(self, model: str) -> None:
        """One granted request for ``model`` finished; drain when the model becomes idle.

        Raises ``RuntimeError`` when ``model`` has nothing in flight (a release
        without a reservation).
        """
        self._enter("on_serve_done")
        try:
            count = self._in_flight.get(model, 0)
            if count <= 0:
                raise RuntimeError(
                    f"on_serve_done({model!r}): no request for {model!r} is in flight "
                    "(a release without a reservation)"
                )
            self._release(model)
            if count == 1:
                del self._in_flight[model]
                self._drain()
            else:
                self._in_flight[model] = count - 1
        finally:
            self._active = False

    def on_unload(self, models: Collection[str]) -> None:
        """The models are about to be stopped: fail their waiters and queued requests.

        Waiters of swaps to these models and queued requests for them get
        ``ModelUnloaded``; those swaps are released (their completions are
        ignored). Until :meth:`on_unload_done`, the models count as being
        stopped: new requests for them queue, and no swap may evict them.
        Requests already serving keep their in-flight counts.
        """
        self._enter("on_unload")
        try:
            targets = set(models)
            for model in targets:
                swap = self._book.begin_unload(model)
                for waiter in swap.waiters if swap is not None else ():
                    self._fail(waiter, ModelUnloaded(f"model {model!r} was unloaded"))
            if self._queue and targets:
                self._queue.sweep(lambda request: self._fail_if_unloaded(request, targets))
        finally:
            self._active = False

    def on_unload_done(self, models: Collection[str]) -> None:
        """The models' processes have stopped: lift the unload and drain the queue.

        Models without a matching :meth:`on_unload` are ignored, so drivers may
        also call this to make the scheduler re-examine its queue.
        """
        self._enter("on_unload_done")
        try:
            for model in set(models):
                self._book.end_unload(model)
            self._drain()
        finally:
            self._active = False

    def on_shutdown(self, error: RoutingError) -> None:
        """Fail every swap waiter and queued request with ``error``; refuse new requests.

        Later swap completions are ignored; requests already serving still end
        with :meth:`on_serve_done`. A second call does nothing.
        """
        self._enter("on_shutdown")
        try:
            if self._shutdown is not None:
                return
            self._shutdown = error
            for swap in self._book.release_all():
                for waiter in swap.waiters:
                    self._fail(waiter, error)
            for request in self._queue.clear():
                self._fail(request, error)
        finally:
            self._active = False

    # -- reconfiguration ----------------------------------------------------------

    def reconfigure(
        self,
        planner: SwapPlanner | None = None,
        *,
        priority: Mapping[str, int] | Keep | None = KEEP,
        concurrency_limits: Mapping[str, int] | Keep | None = KEEP,
        default_concurrency_limit: int | Keep = KEEP,
        max_wait: float | Keep | None = KEEP,
    ) -> None:
        """Decide with ``planner`` and these settings from now on, keeping every request.

        Each setting is the constructor's, checked the same way (a
        :class:`~swapcore.ConfigError` before anything changes); one not
        given keeps its value, and ``planner`` None keeps the planner.
        Queued requests keep their places (a new ``priority`` orders the
        requests queued from now on), swaps in flight and requests serving
        are unchanged, admissions already counted stay counted against the
        new limits, and the planner's cached answers are dropped. Nothing is
        re-examined here: a driver calls :meth:`on_unload_done` with no
        models for that once its own changes are made.
        """
        priorities = self._priority if priority is KEEP else check_priority(priority)
        limits = self._limits if concurrency_limits is KEEP else check_limits(concurrency_limits)
        default_limit = (
            self._default_limit
            if default_concurrency_limit is KEEP
            else check_limit("default_concurrency_limit", default_concurrency_limit)
        )
        wait = self._max_wait if max_wait is KEEP else check_max_wait(max_wait)
        self._enter("reconfigure")
        try:
            self._priority, self._limits, self._default_limit = priorities, limits, default_limit
            self._max_wait = wait
            if wait is not None:
                self._queue.track_age()
            if planner is not None:
                self._planner = planner
                self._tracks_serves = (
                    getattr(type(planner), "on_serve", None) is not SwapPlanner.on_serve
                )
            self._evictions = Evictions(self._planner, self._effects, self._book)
        finally:
            self._active = False

    def on_hold(self, models: Collection[str]) -> None:
        """Hold the models until :meth:`on_hold_done`: their requests wait, none is failed.

        The driver is about to replace the models' processes. While held, a
        model's new and queued requests stay queued (no grant, no swap to
        it), and no swap may evict it, as during an unload; requests already
        waiting on a swap to it or serving are unaffected. Holds count: each
        needs its own :meth:`on_hold_done`.
        """
        self._enter("on_hold")
        try:
            for model in set(models):
                self._on_hold_models[model] = self._on_hold_models.get(model, 0) + 1
                self._book.begin_hold(model)
        finally:
            self._active = False

    def on_hold_done(self, models: Collection[str]) -> None:
        """Lift one hold of each model (ignored when none is held) and re-examine the queue."""
        self._enter("on_hold_done")
        try:
            for model in set(models):
                count = self._on_hold_models.get(model, 0)
                if not count:
                    continue
                if count == 1:
                    del self._on_hold_models[model]
                else:
                    self._on_hold_models[model] = count - 1
                self._book.end_hold(model)
            self._drain()
        finally:
            self._active = False

    # -- starvation bound -------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The clock value at which the oldest queued request will have waited ``max_wait``.

        None when ``max_wait`` is None, nothing is queued, or that moment has
        already passed (the request is protected already; only events can
        unblock it, so no timer is needed). A driver sets a timer for this
        value and calls :meth:`on_tick` when it fires.
        """
        max_wait = self._max_wait
        if max_wait is None or not self._queue:
            return None
        oldest = self._queue.oldest()
        assert oldest is not None
        deadline = oldest.arrived + max_wait
        return deadline if deadline > self._clock() else None

    def on_tick(self) -> None:
        """Re-examine the queue (a driver calls this at :meth:`next_deadline`).

        The starvation guard is evaluated from the clock at every event, so the
        bound holds without ticks; a tick also catches process states that
        changed without an event (an idle-TTL unload that freed room).
        """
        self._enter("on_tick")
        try:
            self._drain()
        finally:
            self._active = False

    # -- read-only introspection ------------------------------------------------

    @property
    def queued(self) -> tuple[Request, ...]:
        """The queued requests in queue order (position 1 first)."""
        return tuple(self._queue)

    @property
    def swaps(self) -> dict[str, tuple[str, ...]]:
        """The swaps in flight: target -> evict set (a fresh dict)."""
        return {target: swap.evict for target, swap in self._swaps.items()}

    @property
    def is_shut_down(self) -> bool:
        """True once :meth:`on_shutdown` has been called."""
        return self._shutdown is not None

    def waiters(self, model: str) -> tuple[Request, ...]:
        """The requests waiting on the in-flight swap to ``model`` (empty if none)."""
        swap = self._swaps.get(model)
        return tuple(swap.waiters) if swap is not None else ()

    def position(self, request: Request) -> int | None:
        """The request's 1-based queue position, or None when it is not queued."""
        return self._queue.position(request)

    def in_flight(self, model: str) -> int:
        """How many granted requests for ``model`` are still serving."""
        return self._in_flight.get(model, 0)

    def admitted(self, model: str) -> int:
        """How many requests for ``model`` are admitted and unfinished."""
        return self._admitted.get(model, 0)

    def concurrency_limit(self, model: str) -> int:
        """The admission limit for ``model``."""
        return self._limits.get(model, self._default_limit)

    # -- the policy -------------------------------------------------------------

    @abc.abstractmethod
    def _drain(self) -> None:
        """Re-examine the queue after room freed up (swap or serve done, unload, tick).

        Runs :meth:`_advance` on queued requests in the policy's order and
        takes those it returns True for out of the queue (``detach`` then
        ``sweep``, or ``sweep``), so positions are reported once.
        """

    def _holds_back(self, request: Request) -> bool:
        """May cancelling this queued request unblock others? (then the queue is drained)."""
        # The guard of a starvation episode holds others back: let them go.
        return self._max_wait is not None and self._starved() is request

    def _priority_of(self, request: Request) -> int:
        """The request's queue priority: its own, else its model's, else 0."""
        if request.priority is not None:
            return request.priority
        return self._priority.get(request.model, 0)

    # -- the decision tree, steps 3-8 -------------------------------------------

    def _advance(
        self, request: Request, guard: Request | None, state: ProcessState | None = None
    ) -> bool:
        """Run steps 3-8 for an admitted request; True when it leaves the queue."""
        model = request.model
        if self._on_hold_models and model in self._on_hold_models:
            return False  # its process is being replaced: wait for the new one
        # 3. Join the swap to M in flight. Allowed even when a starved request
        # must evict M: all waiters start together when the swap completes, so
        # joining adds at most one service time to its wait (counted in the
        # bound). Refusing it made every load serve one or two requests under
        # saturation, with two starved requests for different models.
        swap = self._swaps.get(model)
        if swap is not None:
            swap.waiters.append(request)
            self._pending[request] = swap
            return True
        # 4. The running set and the planner's eviction (asked once per pass).
        try:
            evict = self._evictions.evict_for(model)
        except PolicyError as error:  # the planner failed for M: this request fails
            self._policy_failed(request, error)
            return True
        # 5. Fast path: ready, nothing to evict, nobody stopping M.
        if not evict and model not in self._stopping:
            if state is None:
                state = self._effects.model_state(model)
            if state is _READY:
                if guard is not None:
                    needs = self._guard_evict(guard)
                    if needs is None or model in needs:
                        return False
                self._pending.pop(request, None)
                self._grant(request, model)
                return True
        # 6. Collides with an in-flight swap or unload.
        if self._book.collides(model, evict):
            return False
        # 7. Would stop a model that is serving requests.
        in_flight = self._in_flight
        for victim in evict:
            if victim in in_flight:
                return False
        if guard is not None and self._delays(guard, model, evict):
            return False
        # 8. Start the swap.
        self._start(request, evict)
        return True

    def _start(self, request: Request, evict: tuple[str, ...]) -> None:
        """Start the swap for ``request``; if ``on_swap_start`` raises, fail it instead."""
        model = request.model
        running = self._evictions.running()
        try:
            self._planner.on_swap_start(model, running)
        except Exception as exc:
            planner = type(self._planner).__name__
            call = f"planner {planner}.on_swap_start({model!r}, {list(running)!r})"
            self._hook_failed(request, call, exc, "the swap does not start")
            return
        self._pending[request] = self._book.start(model, evict, request)
        self._evictions.reset()  # the new target joins the running set
        self._effects.start_swap(model, evict)

    def _grant(self, request: Request, model: str) -> None:
        """Hand ``model`` to a request no longer pending; count it only if taken.

        A planner that records serves hears of it first (``on_serve``); if
        that raises, the request fails with :class:`~swapcore.PolicyError`
        and is not granted.
        """
        if self._tracks_serves:
            now = self._clock()
            try:
                self._planner.on_serve(model, now)
            except Exception as exc:
                call = f"planner {type(self._planner).__name__}.on_serve({model!r}, {now!r})"
                self._hook_failed(request, call, exc, "it is not granted")
                return
            finally:
                self._evictions.forget_answers()
        if self._effects.grant_serve(request, model):
            self._in_flight[model] = self._in_flight.get(model, 0) + 1
        else:
            # The caller is gone: counting it would pin the model forever.
            self._release(model)

    def _hook_failed(self, request: Request, call: str, exc: Exception, outcome: str) -> None:
        """A planner hook raised while acting for ``request``: log it, fail the request."""
        message = f"{call} raised {describe(exc)}"
        log.error(
            "%s; request %d fails with PolicyError (%s)", message, request.id, outcome, exc_info=exc
        )
        self._policy_failed(request, policy_error(message, exc))

    def _policy_failed(self, request: Request, error: PolicyError) -> None:
        """Fail an admitted request that a planner fault concerns (queued or not)."""
        self._pending.pop(request, None)
        self._release(request.model)
        self._effects.grant_error(request, error)

    # -- starvation guard -------------------------------------------------------

    def _starved(self) -> Request | None:
        """The oldest queued request if it has waited ``max_wait`` or longer."""
        oldest = self._queue.oldest()
        max_wait = self._max_wait
        if oldest is None or max_wait is None or self._clock() < oldest.arrived + max_wait:
            return None
        return oldest

    def _serve_starved(self) -> Request | None:
        """Serve starved requests oldest first; return the first still blocked (the guard)."""
        while True:
            oldest = self._starved()
            if oldest is None or not self._advance(oldest, None):
                return oldest
            self._queue.detach(oldest)

    def _guard_evict(self, guard: Request) -> tuple[str, ...] | None:
        """The models the guard must see stopped (none while a swap to its model runs).

        None when the planner failed for the guard's model: callers then
        hold their action back. The guard itself fails when it is next
        examined (it is blocked, so an event in flight will drain the queue).
        """
        if guard.model in self._swaps:
            return ()
        try:
            return self._evictions.evict_for(guard.model)
        except PolicyError:
            return None

    def _delays(self, guard: Request, model: str, evict: tuple[str, ...]) -> bool:
        """Would starting a swap to ``model`` evicting ``evict`` delay the guard's swap?

        A planner fault while answering counts as yes (the action waits).
        """
        target = guard.model
        if target == model:
            return False  # the guard joins this swap at the next drain
        needs = self._guard_evict(guard)
        if needs is None:
            return True
        if model in needs or target in evict or any(victim in needs for victim in evict):
            return True
        # Once `model` runs, the guard's eviction may change: it must not stop
        # `model`, nor share a victim with this swap while it is in flight.
        after = self._evictions.evict_after(target, model)
        if after is None:
            return True
        return model in after or any(victim in after for victim in evict)

    # -- bookkeeping ------------------------------------------------------------

    def _enter(self, method: str) -> None:
        if self._active:
            raise RuntimeError(
                f"{type(self).__name__}.{method}() called from inside an effect; "
                "drivers must deliver events one at a time"
            )
        self._active = True

    def _release(self, model: str) -> None:
        """Give back one admission for ``model``."""
        count = self._admitted.get(model, 0)
        if count <= 1:
            if count <= 0:
                raise RuntimeError(f"no admitted request for {model!r} to release")
            del self._admitted[model]
        else:
            self._admitted[model] = count - 1

    def _fail(self, request: Request, error: RoutingError) -> None:
        del self._pending[request]
        self._release(request.model)
        self._effects.grant_error(request, error)

    def _fail_if_unloaded(self, request: Request, targets: Collection[str]) -> bool:
        if request.model not in targets:
            return False
        self._fail(request, ModelUnloaded(f"model {request.model!r} was unloaded"))
        return True
