"""``FakeProcess``: an in-memory model server that follows the Process contract exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping

from swapcore.memory._probe import Device
from swapcore.process import ProcessState

__all__ = ["FakeGPUProbe", "FakeProcess", "FakeProcessError"]

_STOPPED = ProcessState.STOPPED
_STARTING = ProcessState.STARTING
_READY = ProcessState.READY
_STOPPING = ProcessState.STOPPING
_SHUTDOWN = ProcessState.SHUTDOWN
_SLEEPING = ProcessState.SLEEPING


class FakeProcessError(RuntimeError):
    """A failure a :class:`FakeProcess` was scripted to produce (failed start, crash, shutdown).

    ``retryable`` is True for a start that crashed (the server died on its
    own before it was ready): a router starts such a process again, up to
    its ``start_retries``. Scripted start failures (``fail_start``) and
    shut-down processes are not retryable.
    """

    def __init__(self, message: str = "", *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class _Aborted:
    """Outcome of a start interrupted by ``stop()``: its waiters try again."""


_ABORTED = _Aborted()
_CRASH = FakeProcessError("scripted start crash")  # a marker: replaced by a fresh error


class FakeProcess:
    """A scripted model server for tests, implementing :class:`~swapcore.Process`.

    ``ensure_ready(timeout)`` follows the process contract exactly: ready
    returns at once; stopped starts (state ``STARTING``) and waits until
    ready; starting joins the start in progress (one start serves every
    caller); stopping waits for the stop, then starts; shut down raises
    :class:`FakeProcessError`. A start takes ``start_delay`` seconds when
    ``auto_ready`` is true; otherwise it waits for :meth:`mark_ready`. When
    ``timeout`` seconds pass first, the caller gets the builtin
    :class:`TimeoutError` while the start itself goes on (a later call joins
    it). A start interrupted by ``stop()`` is retried by its waiters once the
    stop finishes.

    ``fail_start`` scripts failures: an int ``N`` fails the next ``N`` starts
    with :class:`FakeProcessError`; an exception instance fails the next start
    with that very exception. ``crash_start=N`` makes the next ``N`` starts
    crash instead: they fail with a *retryable* :class:`FakeProcessError`
    (``retryable=True``, as a server that exits on its own before it is
    ready) and count as crashes. ``fail_start`` goes first when both are
    set. The failure happens when the start would have become ready; the
    process is then ``STOPPED``. Both attributes may be set at any time; a
    start already in progress keeps the script it began with.

    **Sleep.** With ``sleep_level`` (1 or 2) the fake is a
    :class:`~swapcore.process.SleepingProcess`: ``sleep(timeout)`` takes a
    ready process through ``STOPPING`` to ``SLEEPING`` in ``sleep_delay``
    seconds, and ``ensure_ready`` wakes a sleeping one through ``STARTING``
    in ``wake_delay`` seconds. ``fail_wake=N`` fails the next ``N`` wakes: the
    fake then does what a real server's adapter does, it stops and starts
    cold (a start, counted in ``starts``). ``fail_sleep=N`` makes the next
    ``N`` ``sleep()`` calls raise (the process stays ready). A crash while
    asleep leaves it ``STOPPED``. Counters: ``sleeps`` (sleeps completed),
    ``wakes`` (wakes completed), ``failed_wakes``.

    ``stop(timeout)`` is idempotent and returns once the process is stopped;
    it takes ``min(stop_delay, timeout)`` seconds (the timeout plays the
    forced kill), aborts a start in progress, and concurrent calls share one
    stop. Starts and stops run in tasks the fake owns, so a cancelled caller
    never leaves it half-way; :meth:`shutdown` ends them.

    Counters: ``starts`` (starts begun), ``ready_count`` (starts that reached
    ``READY``), ``stops`` (stops begun), ``crashes`` (``crash()`` calls that
    hit a running process, and scripted start crashes). :meth:`wait_state` lets
    a test wait for a state instead of sleeping.
    """

    def __init__(
        self,
        name: str = "fake",
        *,
        start_delay: float = 0.0,
        stop_delay: float = 0.0,
        auto_ready: bool = True,
        fail_start: BaseException | int | None = None,
        crash_start: int = 0,
        sleep_level: int | None = None,
        sleep_delay: float = 0.0,
        wake_delay: float = 0.0,
        fail_wake: int = 0,
        fail_sleep: int = 0,
    ) -> None:
        if min(start_delay, stop_delay, sleep_delay, wake_delay) < 0:
            raise ValueError("start_delay, stop_delay, sleep_delay and wake_delay must be >= 0")
        if sleep_level not in (None, 1, 2):
            raise ValueError(f"sleep_level must be None, 1 or 2, got {sleep_level!r}")
        if isinstance(crash_start, bool) or not isinstance(crash_start, int) or crash_start < 0:
            raise ValueError(f"crash_start must be an int >= 0, got {crash_start!r}")
        self.name = name
        self.start_delay = start_delay
        self.stop_delay = stop_delay
        self.auto_ready = auto_ready
        self.fail_start: BaseException | int | None = fail_start
        self.crash_start = crash_start
        self._sleep_level = sleep_level
        self.sleep_delay = sleep_delay
        self.wake_delay = wake_delay
        self.fail_wake = fail_wake
        self.fail_sleep = fail_sleep
        self.sleeps = 0
        self.wakes = 0
        self.failed_wakes = 0
        self.starts = 0
        self.ready_count = 0
        self.stops = 0
        self.crashes = 0
        self.crashed = False
        self._state = _STOPPED
        # The start or stop in progress: its task and the future its waiters
        # await (result: None, an exception for a failed start, or _ABORTED).
        self._task: asyncio.Task[None] | None = None
        self._done: asyncio.Future[object] | None = None
        self._gate: asyncio.Future[None] | None = None  # manual start: set by mark_ready()
        self._watchers: list[tuple[ProcessState, asyncio.Future[None]]] = []
        self._falling_asleep = False  # STOPPING means "going to sleep", not "stopping"

    def __repr__(self) -> str:
        return f"FakeProcess({self.name!r}, state={self._state.value})"

    @property
    def state(self) -> ProcessState:
        """The current state."""
        return self._state

    @property
    def sleep_level(self) -> int | None:
        """The level this fake sleeps at (1 or 2), or None when it does not sleep."""
        return self._sleep_level

    @property
    def falling_asleep(self) -> bool:
        """True while ``STOPPING`` means going to sleep (not stopping)."""
        return self._falling_asleep

    # -- the Process contract ---------------------------------------------------

    async def ensure_ready(self, timeout: float) -> None:
        """Return once ready, starting (or waiting for a stop, then starting) as needed.

        Raises :class:`FakeProcessError` for a scripted failure, a crash during
        the start, or a shut-down process; raises :class:`TimeoutError` after
        ``timeout`` seconds without readiness (the start goes on).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            state = self._state
            if state is _READY:
                return
            if state is _SHUTDOWN:
                raise FakeProcessError(f"{self.name}: process is shut down")
            if state is _STOPPED:
                self._begin_start()
            elif state is _SLEEPING:
                self._begin_wake()
            done = self._done
            assert done is not None
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: not ready within {timeout}s")
            finished, _ = await asyncio.wait((done,), timeout=remaining)
            if not finished:
                raise TimeoutError(f"{self.name}: not ready within {timeout}s")
            outcome = done.result()
            if isinstance(outcome, BaseException):
                raise outcome
            # A stop finished, or a start succeeded or was aborted: look again.

    async def sleep(self, timeout: float) -> None:
        """Put a ready process to sleep; returns once ``SLEEPING``.

        Raises :class:`FakeProcessError` when the fake does not sleep, is not
        ready (nor asleep, nor falling asleep), or a failure was scripted
        (``fail_sleep``); the state is then unchanged.
        """
        if self._sleep_level is None:
            raise FakeProcessError(f"{self.name}: does not sleep")
        while True:
            state = self._state
            if state is _SLEEPING:
                return
            if state is _READY:
                if self.fail_sleep > 0:
                    self.fail_sleep -= 1
                    raise FakeProcessError(f"{self.name}: scripted sleep failure")
                self._begin_sleep(timeout)
            elif state is not _STOPPING or not self._falling_asleep:
                raise FakeProcessError(f"{self.name}: cannot sleep while {state.value}")
            done = self._done
            assert done is not None
            await asyncio.wait((done,))
            if self._state is not _SLEEPING:
                raise FakeProcessError(f"{self.name}: did not fall asleep")

    async def stop(self, timeout: float) -> None:
        """Stop the process; idempotent; returns once it is ``STOPPED`` (or shut down)."""
        while True:
            state = self._state
            if state is _STOPPED or state is _SHUTDOWN:
                return
            if state is not _STOPPING:
                self._begin_stop(timeout)
            done = self._done
            assert done is not None
            await asyncio.wait((done,))

    # -- scripting ----------------------------------------------------------------

    def mark_ready(self) -> None:
        """Finish the start in progress (``auto_ready=False``); raises unless ``STARTING``."""
        gate = self._gate
        if self._state is not _STARTING or gate is None:
            raise RuntimeError(f"{self.name}: mark_ready() while {self._state.value}")
        if not gate.done():
            gate.set_result(None)

    def crash(self) -> None:
        """Die as a server would: the state becomes ``STOPPED`` at once and ``crashed`` is set.

        A start in progress fails for its waiters with a retryable
        :class:`FakeProcessError`; a stop in progress completes. A stopped or
        shut-down process is unaffected.
        """
        state = self._state
        if state is _STOPPED or state is _SHUTDOWN:
            return
        self.crashed = True
        self.crashes += 1
        outcome: object = None
        if state is _STARTING:
            outcome = FakeProcessError(f"{self.name}: crashed while starting", retryable=True)
        self._end_transition(outcome)
        self._set_state(_STOPPED)

    async def shutdown(self) -> None:
        """Enter ``SHUTDOWN`` for good: ends any start or stop; later starts raise."""
        task = self._task
        self._end_transition(FakeProcessError(f"{self.name}: shut down"))
        self._set_state(_SHUTDOWN)
        if task is not None:
            await asyncio.wait((task,))

    async def wait_state(self, state: ProcessState) -> None:
        """Return as soon as the process is in ``state`` (at once if it already is)."""
        if self._state is state:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.append((state, fut))
        try:
            await fut
        finally:
            if (state, fut) in self._watchers:  # cancelled: forget the watcher
                self._watchers.remove((state, fut))

    # -- internals ----------------------------------------------------------------

    def _set_state(self, state: ProcessState) -> None:
        if state is not _STOPPING:
            self._falling_asleep = False
        self._state = state
        if self._watchers:
            keep = []
            for wanted, fut in self._watchers:
                if wanted is state:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((wanted, fut))
            self._watchers = keep

    def _take_failure(self) -> BaseException | None:
        script = self.fail_start
        if isinstance(script, BaseException):
            self.fail_start = None
            return script
        if script is not None and script > 0:
            self.fail_start = script - 1
            return FakeProcessError(f"{self.name}: scripted start failure")
        if self.crash_start > 0:
            self.crash_start -= 1
            return _CRASH
        return None

    def _begin_start(self) -> None:
        loop = asyncio.get_running_loop()
        self.starts += 1
        failure = self._take_failure()
        self._done = loop.create_future()
        self._gate = None if self.auto_ready else loop.create_future()
        self._set_state(_STARTING)
        self._task = loop.create_task(self._run_start(self._done, self._gate, failure))

    async def _run_start(
        self,
        done: asyncio.Future[object],
        gate: asyncio.Future[None] | None,
        failure: BaseException | None,
    ) -> None:
        if gate is None:
            await asyncio.sleep(self.start_delay)
        else:
            await gate
        if done.done():  # crashed or stopped meanwhile, without cancelling us yet
            return
        self._task = None
        if failure is _CRASH:
            self.crashed = True
            self.crashes += 1
            failure = FakeProcessError(f"{self.name}: crashed while starting", retryable=True)
        if failure is not None:
            self._set_state(_STOPPED)
            done.set_result(failure)
        else:
            self.ready_count += 1
            self._set_state(_READY)
            done.set_result(None)

    def _begin_wake(self) -> None:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._set_state(_STARTING)
        self._task = loop.create_task(self._run_wake(self._done))

    async def _run_wake(self, done: asyncio.Future[object]) -> None:
        await asyncio.sleep(self.wake_delay)
        if done.done():
            return
        self._task = None
        if self.fail_wake > 0:
            # A server that cannot wake is stopped and started cold.
            self.fail_wake -= 1
            self.failed_wakes += 1
            self._set_state(_STOPPED)
            done.set_result(None)  # waiters look again and start it
            return
        self.wakes += 1
        self._set_state(_READY)
        done.set_result(None)

    def _begin_sleep(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._falling_asleep = True
        self._set_state(_STOPPING)
        delay = max(0.0, min(self.sleep_delay, timeout))
        self._task = loop.create_task(self._run_sleep(self._done, delay))

    async def _run_sleep(self, done: asyncio.Future[object], delay: float) -> None:
        await asyncio.sleep(delay)
        if done.done():
            return
        self._task = None
        self.sleeps += 1
        self._falling_asleep = False
        self._set_state(_SLEEPING)
        done.set_result(None)

    def _begin_stop(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._end_transition(_ABORTED)  # a start in progress: its waiters retry later
        self.stops += 1
        self._done = loop.create_future()
        self._set_state(_STOPPING)
        delay = max(0.0, min(self.stop_delay, timeout))
        self._task = loop.create_task(self._run_stop(self._done, delay))

    async def _run_stop(self, done: asyncio.Future[object], delay: float) -> None:
        await asyncio.sleep(delay)
        if done.done():  # crashed or shut down meanwhile
            return
        self._task = None
        self._set_state(_STOPPED)
        done.set_result(None)

    def _end_transition(self, outcome: object) -> None:
        """Cancel the start or stop in progress and resolve its waiters with ``outcome``."""
        task, done = self._task, self._done
        self._task = None
        self._gate = None
        if task is not None:
            task.cancel()
        if done is not None and not done.done():
            done.set_result(outcome)


class FakeGPUProbe:
    """A :class:`~swapcore.memory.GPUProbe` for tests: devices and per-process use you set.

    ``FakeGPUProbe({0: 24 * GiB, 1: 24 * GiB})`` declares devices by index
    with their total bytes; :meth:`use` says what a process uses on a device.
    ``fail`` (an exception) makes the next probe call raise it.
    """

    def __init__(self, totals: dict[int, int]) -> None:
        self.totals = dict(totals)
        self.usage: dict[int, dict[int, int]] = {}  # pid -> device -> bytes
        self.fail: BaseException | None = None
        self.calls = 0

    def use(self, pid: int, device: int, nbytes: int) -> None:
        """Process ``pid`` uses ``nbytes`` on ``device`` (0 forgets it)."""
        if device not in self.totals:
            raise ValueError(f"no device {device}")
        self.usage.setdefault(pid, {})[device] = nbytes

    def devices(self) -> list[Device]:
        """The declared devices, with the used bytes of every process."""
        self._call()
        used: dict[int, int] = {}
        for devices in self.usage.values():
            for device, nbytes in devices.items():
                used[device] = used.get(device, 0) + nbytes
        return [
            Device(index, f"fake GPU {index}", total, used.get(index, 0))
            for index, total in sorted(self.totals.items())
        ]

    def process_memory(self, pids: Collection[int]) -> Mapping[int, int]:
        """What the processes ``pids`` use, per device."""
        self._call()
        out: dict[int, int] = {}
        for pid in pids:
            for device, nbytes in self.usage.get(pid, {}).items():
                if nbytes:
                    out[device] = out.get(device, 0) + nbytes
        return out

    def _call(self) -> None:
        self.calls += 1
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
