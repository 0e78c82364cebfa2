"""Swaps, unloads, idle TTL and shutdown: the router's side effects.

Internal layer of :class:`swapcore.router.BaseRouter`. Swap, stop and
unload tasks do I/O only; whatever they learn comes back through the run
loop as an event (``_post``), so the records stay one-writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from swapcore.errors import ModelUnloaded, RouterShutdown
from swapcore.events import ModelsUnloaded, SwapFinished, SwapRetried, SwapStarted, UnloadReason
from swapcore.planners.residency import plan_residency
from swapcore.process import ProcessState, can_sleep
from swapcore.router._parts import (
    Swap,
    Unload,
    group_timeouts,
    sleep_or_stop,
    stop_quietly,
)
from swapcore.router._state import (
    CLOSED,
    CLOSING,
    RUNNING,
    RUNNING_STATES,
    _RouterState,
    clock,
    log,
)
from swapcore.scheduling.swaps import describe

__all__: list[str] = []


class _SwapDriver(_RouterState):
    """Runs swaps (stop the evict set, then ``ensure_ready``), unloads, TTLs and shutdown."""

    def _start_swap(self, model: str, evict_seq: Sequence[str]) -> None:
        evict = tuple(evict_seq)
        if model in self._swaps:
            raise RuntimeError(f"scheduler started a second swap to {model!r}")
        after = [
            fut
            for unload in self._unloads
            if (fut := unload.begun.get(model)) is not None and not fut.done()
        ]
        asleep = self._sleepers_for(model, evict)
        wake = self._processes[model].state is ProcessState.SLEEPING
        swap = Swap(model, evict, clock(), after, asleep, wake)
        self._swaps[model] = swap
        self._falling_asleep.update(asleep)
        if self._ttl_handles:
            for name in (model, *evict):
                handle = self._ttl_handles.pop(name, None)
                if handle is not None:
                    handle.cancel()
        log.debug(
            "swap to %r started (evicting %s%s)%s",
            model,
            ", ".join(evict) or "nothing",
            f"; to sleep: {', '.join(asleep)}" if asleep else "",
            ": waking it" if wake else "",
        )
        if asleep or wake:
            tiers = [f"{', '.join(map(repr, asleep))} to sleep"] if asleep else []
            if wake:
                tiers.append(f"waking {model!r}")
            log.info("swap to %r: %s", model, "; ".join(tiers))
        started = SwapStarted(swap.started, model, evict, asleep, wake, self._swap_reason(model))
        self._recent_swaps.append(started)
        if evict and started.reason:
            log.info("swap to %r evicts %s: %s", model, ", ".join(evict), started.reason)
        if self._on_event is not None:
            self._emit(started)
        swap.task = self._spawn(self._run_swap(swap))

    def _swap_reason(self, model: str) -> str:
        """The planner's reason for the swap it just started ("" when it has none or fails)."""
        try:
            reason = self._planner.swap_reason(model)
        except Exception:
            log.exception("planner %s.swap_reason(%r) failed", type(self._planner).__name__, model)
            return ""
        return reason if isinstance(reason, str) else ""

    def _sleepers_for(self, model: str, evict: tuple[str, ...]) -> tuple[str, ...]:
        """The models of ``evict`` that go to sleep (the planner's choice, checked)."""
        if not evict or self._planner.sleep_rules is None:
            return ()
        processes = self._processes
        sleeping = [
            m
            for m, p in processes.items()
            if m in self._falling_asleep or p.state is ProcessState.SLEEPING
        ]
        # Only a ready server can go to sleep; one still starting is stopped.
        eviction = plan_residency(
            self._planner,
            model,
            evict,
            sleeping,
            lambda m: processes[m].state is ProcessState.READY and can_sleep(processes[m]),
        )
        return eviction.sleep

    def _on_asleep_event(self, model: str) -> None:
        self._falling_asleep.discard(model)

    async def _run_swap(self, swap: Swap) -> None:
        """Stop the evict set in parallel, then ``ensure_ready`` (never "if stopped: start").

        A start that fails with a ``retryable`` error (the process crashed
        before it was ready) is started again, up to ``start_retries`` times;
        the evictions are not redone.
        """
        error: BaseException | None = None
        try:
            if swap.evict:
                stops = [self._spawn(self._evict_one(swap, m)) for m in swap.evict]
                await asyncio.wait(stops)
                error = next((e for t in stops if (e := t.result()) is not None), None)
            if error is None:
                for begun in swap.after:  # a committed stop must begin before we start
                    await asyncio.wait((begun,))
                await self._start_with_retries(swap)
        except asyncio.CancelledError as exc:
            if not swap.reported:  # not cancelled by the router itself
                self._post(self._on_swap_done_event, (swap, exc))
            raise
        except Exception as exc:
            error = exc
        self._post(self._on_swap_done_event, (swap, error))

    async def _evict_one(self, swap: Swap, model: str) -> BaseException | None:
        """Put one evicted model to sleep, or stop it, as the swap planned (measured)."""
        process = self._processes[model]
        timeout = self._unload_timeout_of(model)
        if model not in swap.asleep:
            return await self._timed_stop(model, timeout)
        resident = process.state.is_resident
        began = clock()
        try:
            kind, error = await sleep_or_stop(process, model, timeout)
        finally:
            self._post(self._on_asleep_event, model)
        if error is None and resident:
            self._measured(model, kind, clock() - began)
        return error

    async def _timed_stop(self, model: str, timeout: float) -> BaseException | None:
        """Stop ``model``'s process quietly; measure the stop of a process that was alive."""
        process = self._processes[model]
        resident = process.state.is_resident
        began = clock()
        error = await stop_quietly(process, timeout)
        if error is None and resident:
            self._measured(model, "stop", clock() - began)
        return error

    async def _start_with_retries(self, swap: Swap) -> None:
        model = swap.model
        process = self._processes[model]
        attempts = self._start_retries + 1
        attempt = 1
        while True:
            try:
                state = process.state
                began = clock()
                await process.ensure_ready(self._swap_timeout)
                if state is ProcessState.SLEEPING:
                    self._measured(model, "wake", clock() - began)
                elif state is ProcessState.STOPPED:
                    self._measured(model, "load", clock() - began)
                return
            except Exception as exc:
                if attempt >= attempts or not getattr(exc, "retryable", False):
                    raise
                attempt += 1
                what = describe(exc)
                log.warning(
                    "model %r crashed while starting (%s); restarting, attempt %d of %d",
                    model,
                    what,
                    attempt,
                    attempts,
                )
                if self._on_event is not None:
                    self._post(self._on_swap_retried_event, (swap, attempt, what))

    def _on_swap_retried_event(self, retried: tuple[Swap, int, str]) -> None:
        swap, attempt, error = retried
        if not swap.reported:  # not abandoned meanwhile (its SwapFinished is out)
            self._emit(SwapRetried(clock(), swap.model, attempt, error))

    def _on_swap_done_event(self, done: tuple[Swap, BaseException | None]) -> None:
        swap, error = done
        if swap.reported:
            return  # an unload or shutdown abandoned it and told the scheduler already
        swap.reported = True
        model = swap.model
        if self._swaps.get(model) is swap:
            del self._swaps[model]
        what = None if error is None else describe(error)
        self._swap_finished(swap, what)
        try:
            self._scheduler.on_swap_done(model, error)
        except Exception as exc:
            failure = self._scheduler_failed(f"on_swap_done({model!r}, {what!r})", exc)
            self._fail_left((model,), failure)
        if self._idle_ttl:
            self._maybe_arm_ttl(model)

    def _drop_swap(self, model: str, why: str, error: ModelUnloaded) -> None:
        """Abandon ``model``'s swap in flight, if any; the scheduler hears it ended in error."""
        swap = self._swaps.get(model)
        if swap is None:
            return
        self._abandon_swap(swap, why)
        try:
            self._scheduler.on_swap_done(model, error)
        except Exception as exc:
            call = f"on_swap_done({model!r}, {describe(error)!r})"
            self._fail_left((model,), self._scheduler_failed(call, exc))

    def _abandon_swap(self, swap: Swap, why: str) -> None:
        """Cancel a swap task (unload, shutdown); the caller informs the scheduler."""
        swap.reported = True
        del self._swaps[swap.model]
        if swap.task is not None:
            swap.task.cancel()
        self._swap_finished(swap, why)

    def _swap_finished(self, swap: Swap, error: str | None) -> None:
        now = clock()
        duration = now - swap.started
        if error is None:
            log.debug("swap to %r finished in %.3fs", swap.model, duration)
        else:
            log.warning("swap to %r failed after %.3fs: %s", swap.model, duration, error)
        if self._on_event is not None:
            for model in (swap.model, *swap.evict):
                self._seen[model] = self._processes[model].state
            self._emit(SwapFinished(now, swap.model, swap.evict, duration, error))

    def _new_unload(
        self, models: tuple[str, ...], timeout: float | None, reason: UnloadReason
    ) -> Unload:
        assert self._loop is not None
        groups = group_timeouts(models, timeout, self._unload_timeout_of)
        return Unload(models, groups, reason, {}, self._loop.create_future())

    def _on_unload_event(self, unload: Unload) -> None:
        if self._status != RUNNING:
            unload.done.set_result(RouterShutdown("the router is shutting down"))
            return
        self._begin_unload(unload)

    def _begin_unload(self, unload: Unload) -> None:
        """Release the models' requests, cancel swaps to them, commit to stopping them."""
        assert self._loop is not None
        models = unload.models
        self._unloads.add(unload)
        try:
            self._scheduler.on_unload(models)
        except Exception as exc:
            self._fail_left(models, self._scheduler_failed(f"on_unload({list(models)!r})", exc))
        for model in models:
            self._drop_swap(
                model,
                f"model {model!r} was unloaded",
                ModelUnloaded(f"model {model!r} was unloaded during its swap"),
            )
            handle = self._ttl_handles.pop(model, None)
            if handle is not None:
                handle.cancel()
            self._stopping[model] = self._stopping.get(model, 0) + 1
            unload.begun[model] = self._loop.create_future()
        unload.task = self._spawn(self._run_unload(unload))

    async def _run_unload(self, unload: Unload) -> None:
        first_error: BaseException | None = None
        for timeout, group in unload.groups:
            stops = [self._spawn(self._timed_stop(m, timeout)) for m in group]
            for model in group:  # after the stop tasks exist: they run first
                unload.begun[model].set_result(None)
            await asyncio.wait(stops)
            for model, task in zip(group, stops, strict=True):
                error = task.result()
                if error is not None:
                    log.error("stopping %r (%s) failed: %s", model, unload.reason, error)
                    first_error = first_error or error
            self._post(self._on_group_stopped_event, group)
        self._post(self._on_unload_done_event, (unload, first_error))

    def _on_group_stopped_event(self, group: tuple[str, ...]) -> None:
        stopping = self._stopping
        for model in group:
            count = stopping[model] - 1
            if count:
                stopping[model] = count
            else:
                del stopping[model]

    def _on_unload_done_event(self, done: tuple[Unload, BaseException | None]) -> None:
        unload, error = done
        self._unloads.discard(unload)
        if not unload.done.done():
            unload.done.set_result(error)
        if self._on_event is not None:
            for model in unload.models:
                self._seen[model] = self._processes[model].state
            self._emit(ModelsUnloaded(clock(), unload.models, unload.reason))
        if self._status == RUNNING:
            try:
                self._scheduler.on_unload_done(unload.models)
            except Exception as exc:
                self._scheduler_failed(f"on_unload_done({list(unload.models)!r})", exc)

    def _maybe_arm_ttl(self, model: str) -> None:
        """Arm the idle timer of an idle, running model with a TTL (re-arming it)."""
        ttl = self._idle_ttl.get(model)
        if (
            ttl is None
            or self._status != RUNNING
            or model in self._in_flight
            or model in self._waiting
            or model in self._swaps
            or model in self._stopping
            or self._processes[model].state not in RUNNING_STATES
        ):
            return
        assert self._loop is not None
        old = self._ttl_handles.pop(model, None)
        if old is not None:
            old.cancel()
        generation = self._activity.get(model, 0)
        self._ttl_handles[model] = self._loop.call_later(
            ttl, self._post, self._on_ttl_event, (model, generation)
        )

    def _on_ttl_event(self, fired: tuple[str, int]) -> None:
        model, generation = fired
        if generation != self._activity.get(model, 0):
            return  # a request arrived since: this timer is stale
        self._ttl_handles.pop(model, None)
        if (
            self._status != RUNNING
            or model in self._in_flight
            or model in self._waiting
            or model in self._swaps
            or model in self._stopping
            or any(model in swap.evict for swap in self._swaps.values())
            or self._processes[model].state not in RUNNING_STATES
        ):
            return
        log.info("unloading %r: idle for %ss", model, self._idle_ttl[model])
        self._begin_unload(self._new_unload((model,), None, "ttl"))

    async def _close(self, timeout: float | None) -> None:
        self._post(self._on_shutdown_event, RouterShutdown("the router is shutting down"))
        stops = {
            model: self._spawn(
                stop_quietly(
                    process, self._unload_timeout_of(model) if timeout is None else timeout
                )
            )
            for model, process in self._processes.items()
        }
        if stops:
            await asyncio.wait(stops.values())
        for model, task in stops.items():
            error = task.result()
            if error is not None:
                log.error("stopping %r at shutdown failed: %s", model, error)
        while self._tasks:  # nothing of ours outlives the router
            leftovers = tuple(self._tasks)
            for task in leftovers:
                task.cancel()
            await asyncio.wait(leftovers)
        for unload in self._unloads:
            if not unload.done.done():
                unload.done.set_result(RouterShutdown("the router shut down during the unload"))
        self._unloads.clear()
        await self._stop_run_loop()
        self._status = CLOSED
        log.info("router shut down")
        if self._on_event is not None:
            self._emit(ModelsUnloaded(clock(), tuple(self._processes), "shutdown"))

    def _on_shutdown_event(self, error: RouterShutdown) -> None:
        self._status = CLOSING
        for handle in self._ttl_handles.values():
            handle.cancel()
        self._ttl_handles.clear()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        for swap in list(self._swaps.values()):
            self._abandon_swap(swap, "the router shut down")
        try:
            self._scheduler.on_shutdown(error)
        except Exception as exc:
            self._scheduler_failed(f"on_shutdown({describe(error)!r})", exc)
        for ticket in list(self._pending.values()):  # whatever the scheduler left
            self._forget(ticket)
            self._fail_ticket(ticket, error)
