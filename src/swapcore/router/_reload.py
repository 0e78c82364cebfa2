"""Reconfiguration: new processes, planner and settings without dropping a request.

Internal layer of :class:`swapcore.router.BaseRouter` (see
:meth:`_Reconfigurer.reconfigure` for the contract). The change is applied
by one run-loop event; models whose process must go are stopped once idle,
each by a task whose end comes back through the run loop.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from typing import Any

import attrs

from swapcore.errors import ConfigError, ModelUnloaded, RouterShutdown
from swapcore.planners.base import SwapPlanner
from swapcore.planners.residency import SleepRules
from swapcore.process import Process, ProcessState, SleepingProcess
from swapcore.router._leases import _LeaseKeeper
from swapcore.router._parts import Change, Lease, RouterEffects, stop_quietly
from swapcore.router._state import RUNNING, Timings, check_timings, log
from swapcore.scheduling.swaps import describe

__all__: list[str] = []


class _Keep(enum.Enum):
    KEEP = "keep"


_KEEP = _Keep.KEEP


class _Reconfigurer(_LeaseKeeper):
    """Swaps in a new configuration; retires changed and removed models once idle."""

    _leases: dict[str, Lease]
    _effects: RouterEffects

    async def reconfigure(
        self,
        processes: Mapping[str, Process],
        planner: SwapPlanner | None = None,
        *,
        scheduler_options: Mapping[str, Any] | None = None,
        swap_timeout: float | _Keep = _KEEP,
        unload_timeout: float | Mapping[str, float] | _Keep = _KEEP,
        idle_ttl: Mapping[str, float] | _Keep | None = _KEEP,
        lease_timeout: float | _Keep | None = _KEEP,
        start_retries: int | _Keep = _KEEP,
    ) -> None:
        """Serve ``processes`` with ``planner`` from now on, without failing a request in flight.

        ``processes`` is the whole new model -> process mapping. A model
        whose process is the same object as before is **unchanged**: it
        keeps running and serving. A model not handled before is **added**
        and routable at once. A model missing from ``processes`` is
        **removed**: new requests for it get :class:`~swapcore.ModelNotFound`;
        requests queued for it or waiting on a swap to it get
        :class:`~swapcore.ModelUnloaded` (the swap is cancelled); leases
        already granted are served to the end by its process, which is then
        stopped. While it still runs it is not in the running set the
        planner sees. A model given a different process is **replaced**: its
        granted leases (and the waiters of a swap to it already under way)
        are served by the old process; its new and queued requests wait;
        once nothing holds it, the old process is stopped (with its unload
        timeout) and the new one takes its place, started by the next swap
        to the model, that is by the first waiting request. A model that is
        stopped is replaced at once.

        ``planner`` (None: keep the current one) and ``scheduler_options``
        (the scheduler's settings, such as ``priority``,
        ``concurrency_limits``, ``default_concurrency_limit`` or
        ``max_wait``; those not given are kept) go to the scheduler's
        ``reconfigure``: they decide for requests from now on, the queue
        and the requests waiting keep their places. A planner without
        ``sleep_rules`` gets the defaults the constructor gives. The timing
        settings are the constructor's; those not given are kept
        (``idle_ttl`` timers are re-armed with the new values).

        Everything is checked before anything changes: an invalid setting,
        or a planner or settings for a scheduler without ``reconfigure``,
        raise :class:`~swapcore.ConfigError` and leave the router as it was.
        Returns once the new configuration is in force (old processes may
        still be stopping); cancelling the caller does not stop it. Raises
        :class:`~swapcore.RouterShutdown` or :class:`RouterNotRunning` when
        the router is not running.
        """
        self._check_usable()
        new = dict(processes)
        for model in new:
            if not isinstance(model, str) or not model:
                raise ConfigError(f"processes: model ids must be non-empty strings, got {model!r}")
        reconfigure = getattr(self._scheduler, "reconfigure", None)
        if (planner is not None or scheduler_options) and reconfigure is None:
            raise ConfigError(
                f"scheduler {type(self._scheduler).__name__} has no reconfigure(): "
                "it cannot take a new planner or settings"
            )
        timings = check_timings(
            new,
            swap_timeout=self._swap_timeout if swap_timeout is _KEEP else swap_timeout,
            unload_timeout=(
                {m: t for m, t in self._unload_timeouts.items() if m in new}
                if unload_timeout is _KEEP
                else unload_timeout
            ),
            idle_ttl=(
                {m: t for m, t in self._idle_ttl.items() if m in new}
                if idle_ttl is _KEEP
                else idle_ttl
            ),
            lease_timeout=self._lease_timeout if lease_timeout is _KEEP else lease_timeout,
            start_retries=self._start_retries if start_retries is _KEEP else start_retries,
        )
        if unload_timeout is _KEEP:
            timings = attrs.evolve(timings, default_unload_timeout=self._default_unload_timeout)
        if planner is not None and planner.sleep_rules is None:
            levels = {
                model: process.sleep_level
                for model, process in new.items()
                if isinstance(process, SleepingProcess) and process.sleep_level is not None
            }
            if levels:
                planner.sleep_rules = SleepRules(levels=levels)
        assert self._loop is not None
        done: asyncio.Future[None] = self._loop.create_future()
        self._post(
            self._on_reconfigure_event,
            (new, planner, dict(scheduler_options or {}), timings, done),
        )
        await asyncio.wait((done,))
        done.result()

    def _on_reconfigure_event(
        self,
        given: tuple[
            dict[str, Process],
            SwapPlanner | None,
            dict[str, Any],
            Timings,
            asyncio.Future[None],
        ],
    ) -> None:
        new, planner, options, timings, done = given
        if done.done():
            return
        if self._status != RUNNING:
            done.set_exception(RouterShutdown("the router is shutting down"))
            return
        if planner is not None or options:
            try:
                self._scheduler.reconfigure(planner, **options)  # type: ignore[attr-defined]
            except Exception as exc:  # invalid settings: nothing has changed
                done.set_exception(exc)
                return
            if planner is not None:
                self._planner = planner
        old_unload = self._unload_timeouts
        self._apply(timings)
        for model in list(self._processes):
            target = new.get(model)
            if target is self._processes[model] and model not in self._changes:
                continue
            self._change(model, target)
            if target is None and model in old_unload:
                self._unload_timeouts[model] = old_unload[model]  # for its last stop
        for model, process in new.items():
            if model not in self._processes:
                self._processes[model] = process
                self._leases[model] = Lease(model, process)
                if self._on_event is not None:
                    self._seen[model] = process.state
        # The planner never sees a removed model that still runs (it may not know it).
        self._effects.running_models = (
            self._running_but_retired if self._retired else self.running_models
        )
        for model, handle in list(self._ttl_handles.items()):
            if model not in self._idle_ttl:
                handle.cancel()
                del self._ttl_handles[model]
        for model in self._idle_ttl:  # with the new value, counted from now
            self._maybe_arm_ttl(model)
        try:
            self._scheduler.on_unload_done(())  # re-examine the queue under the new rules
        except Exception as exc:
            self._scheduler_failed("on_unload_done([])", exc)
        log.info(
            "configuration changed: %d models (%d being replaced or removed)",
            len(new),
            len(self._changes),
        )
        done.set_result(None)

    def _change(self, model: str, target: Process | None) -> None:
        """Record that ``model``'s process goes (replaced by ``target``, or removed: None)."""
        change = self._changes.get(model)
        if change is None:
            change = self._changes[model] = Change(target)
        change.process = target
        if target is not None:
            self._retired.discard(model)
            if not change.held:
                change.held = True
                self._tell_scheduler("on_hold", model)
            return
        self._retired.add(model)
        if change.unloaded:
            return
        change.unloaded = True
        self._tell_scheduler("on_unload", model)
        why = f"model {model!r} was removed from the configuration"
        self._drop_swap(model, why, ModelUnloaded(why))

    def _tell_scheduler(self, method: str, model: str) -> None:
        hook = getattr(self._scheduler, method, None)
        if hook is None:  # a scheduler without holds: its waiting requests fail instead
            hook, method = self._scheduler.on_unload, "on_unload"
        try:
            hook((model,))
        except Exception as exc:
            self._fail_left((model,), self._scheduler_failed(f"{method}([{model!r}])", exc))

    def _running_but_retired(self) -> dict[str, ProcessState]:
        running = self.running_models()
        for model in self._retired:
            running.pop(model, None)
        return running

    def _advance_changes(self, _: None) -> None:
        """Stop the old process of each changed model nothing holds any more."""
        for model, change in list(self._changes.items()):
            if change.stopping or self._busy(model):
                continue
            process = self._processes[model]
            if process.state is ProcessState.STOPPED:
                self._finish_change(model)
                continue
            change.stopping = True
            self._stopping[model] = self._stopping.get(model, 0) + 1
            handle = self._ttl_handles.pop(model, None)
            if handle is not None:
                handle.cancel()
            why = "removed from" if change.process is None else "changed in"
            log.info("stopping the old process of %r (%s the configuration)", model, why)
            self._spawn(self._stop_old(model, process))

    def _busy(self, model: str) -> bool:
        """Does anything still hold ``model``'s process (a lease, a swap, a stop, a sleep)?"""
        return (
            model in self._in_flight
            or model in self._swaps
            or model in self._stopping
            or model in self._falling_asleep
            or any(model in swap.evict for swap in self._swaps.values())
        )

    async def _stop_old(self, model: str, process: Process) -> None:
        error = await stop_quietly(process, self._unload_timeout_of(model))
        self._post(self._on_old_stopped_event, (model, error))

    def _on_old_stopped_event(self, stopped: tuple[str, BaseException | None]) -> None:
        model, error = stopped
        if error is not None:
            log.error("stopping the old process of %r failed: %s", model, describe(error))
        count = self._stopping[model] - 1
        if count:
            self._stopping[model] = count
        else:
            del self._stopping[model]
        self._finish_change(model)

    def _finish_change(self, model: str) -> None:
        """The old process is stopped: put the new one in its place, or forget the model."""
        change = self._changes.pop(model)
        process = change.process
        if process is None:
            del self._processes[model]
            del self._leases[model]
            self._retired.discard(model)
            self._seen.pop(model, None)
            self._activity.pop(model, None)
            self._unload_timeouts.pop(model, None)
            if not self._retired:
                self._effects.running_models = self.running_models
            log.info("model %r removed", model)
        else:
            self._processes[model] = process
            self._leases[model] = Lease(model, process)
            if self._on_event is not None:
                self._seen[model] = process.state
            log.info("model %r: its new process takes the old one's place", model)
        if self._status != RUNNING:
            return
        if change.held:
            self._lift("on_hold_done", model)
        if change.unloaded:
            self._lift("on_unload_done", model)
        if process is not None and self._idle_ttl:
            self._maybe_arm_ttl(model)

    def _lift(self, method: str, model: str) -> None:
        hook = getattr(self._scheduler, method, None)
        if hook is None:
            hook, method = self._scheduler.on_unload_done, "on_unload_done"
        try:
            hook((model,))
        except Exception as exc:
            self._scheduler_failed(f"{method}([{model!r}])", exc)
