"""Check a :class:`~swapcore.Process` implementation against the contract the router relies on.

Like ``trio.testing.check_one_way_stream``, :func:`check_process` tests
*your* implementation of a swapcore seam. It drives the process through
real starts and stops, so point it at something cheap (a fake upstream).

The rules, one label per rule as used in the messages:

- ``protocol``: the object has ``state``, ``ensure_ready`` and ``stop``;
- ``stop reaches stopped``: ``stop(timeout)`` returns with the state ``STOPPED``;
- ``stop is idempotent``: ``stop`` on a stopped process returns and it stays ``STOPPED``;
- ``start from stopped``: ``ensure_ready`` on a stopped process returns with
  the state ``READY``;
- ``ensure_ready is idempotent``: ``ensure_ready`` on a ready process returns
  and it stays ``READY``;
- ``ensure_ready during stop``: ``ensure_ready`` called while a stop is in
  progress waits for the stop, then starts: it returns with the state
  ``READY`` and the stop call returns too (llama-swap #946: a request
  during a TTL unload saw ``stopping``, skipped the start and hung the
  model for good);
- ``returns in time``: every call returns within ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from swapcore.process import Process, ProcessState

__all__ = ["check_process"]

_T = TypeVar("_T")


def _fail(rule: str, detail: str) -> AssertionError:
    return AssertionError(f"Process contract violated [{rule}]: {detail}")


async def _bounded(awaitable: Awaitable[_T], timeout: float, rule: str, what: str) -> _T:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise _fail("returns in time", f"{what} did not return within {timeout}s") from None
    except Exception as exc:
        raise _fail(rule, f"{what} raised {type(exc).__name__}: {exc}") from exc


def _expect(process: Process, rule: str, state: ProcessState, after: str) -> None:
    actual = process.state
    if actual is not state:
        raise _fail(rule, f"after {after} the state is {actual.value}, expected {state.value}")


async def check_process(process: Process, *, timeout: float = 5.0) -> None:
    """Exercise ``process`` against the Process contract; raise AssertionError naming the rule.

    Leaves the process ``STOPPED`` when every rule holds. A call that raises
    (a start that fails, a stop that refuses) is reported as a violation of
    the rule being checked, with the error as ``__cause__``. ``timeout`` is
    passed to ``ensure_ready``/``stop``; each call must return within twice
    that plus a second.
    """
    if not isinstance(process, Process):
        raise _fail("protocol", f"{process!r} lacks state, ensure_ready or stop")
    if not isinstance(process.state, ProcessState):
        raise _fail("protocol", f"state is {process.state!r}, not a ProcessState")
    # Slack so a process honouring `timeout` itself is not reported by wait_for first.
    bound = timeout * 2 + 1.0
    stopped, ready = ProcessState.STOPPED, ProcessState.READY

    async def step(call: Awaitable[None], rule: str, what: str, expected: ProcessState) -> None:
        await _bounded(call, bound, rule, what)
        _expect(process, rule, expected, what)

    first = "stop is idempotent" if process.state is stopped else "stop reaches stopped"
    await step(process.stop(timeout), first, "stop() on a fresh process", stopped)
    await step(process.stop(timeout), "stop is idempotent", "stop() after stop()", stopped)
    await step(process.ensure_ready(timeout), "start from stopped", "ensure_ready()", ready)
    await step(
        process.ensure_ready(timeout), "ensure_ready is idempotent", "ensure_ready() again", ready
    )
    await step(process.stop(timeout), "stop reaches stopped", "stop() when ready", stopped)
    await step(process.stop(timeout), "stop is idempotent", "stop() after stop()", stopped)

    # ensure_ready racing a stop: start, begin a stop, then ask for readiness
    # while the stop is in progress (or just finished, for instant stops).
    await step(process.ensure_ready(timeout), "start from stopped", "ensure_ready()", ready)
    rule = "ensure_ready during stop"
    stopping = asyncio.ensure_future(process.stop(timeout))
    try:
        for _ in range(100):  # let the stop begin; bounded, no sleeping on the clock
            if process.state is not ready or stopping.done():
                break
            await asyncio.sleep(0)
        await _bounded(process.ensure_ready(timeout), bound, rule, "ensure_ready() during stop()")
        await _bounded(asyncio.shield(stopping), bound, rule, "the stop() raced by ensure_ready()")
    finally:
        if not stopping.done():
            stopping.cancel()
            await asyncio.wait((stopping,))
    _expect(process, rule, ready, "ensure_ready() called while a stop was in progress")

    await step(process.stop(timeout), "stop reaches stopped", "the final stop()", stopped)
