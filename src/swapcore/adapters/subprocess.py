"""A model server run as a child process group: start, health-check, stop, notice crashes.

``SubprocessProcess`` implements the ``Process`` protocol (start on demand,
health-check, stop; its state may change on its own) for a command such as
``llama-server --port ${PORT} ...``. Guarantees:

- **One spawn per start.** Concurrent ``ensure_ready`` callers share one start.
- **Whole-group kill.** The child runs in its own session (process group);
  stop signals the whole group, and once the leader has exited anything left
  in the group is killed with SIGKILL, so helpers the server forked do not
  outlive it.
- **No orphans.** The group dies with the gateway, however the gateway ends
  (even SIGKILL): its leader gets a parent-death signal on Linux, and a
  sentinel process kills every group the gateway left (``_orphans``).
- **Never adopted.** A port on this machine that something already listens
  on fails the start without spawning; a health answer counts only while
  our own child is alive.
- **Reaping.** Every stop and every failed start awaits the child's exit
  status: no zombies of ours. Orphaned grandchildren are reaped by PID 1 (in a
  container, run an init such as ``tini`` or ``docker run --init``).
- **No secrets in messages.** Errors and log lines name the program (the
  basename of ``argv[0]``), never its arguments or environment.
- **Crash detection.** An exit nobody asked for, while ready, moves the
  process to ``stopped`` at once, records ``exit_code``, calls
  ``on_state_change`` and logs a WARNING with the last output lines.
- **Cancellation.** A start runs in its own task: cancelling a caller of
  ``ensure_ready`` never leaves it half-done. The start goes on to its
  deadline (so other callers can join it, and a swap whose waiters all left
  still completes, as in llama-swap) unless ``stop`` aborts it. A stop, once
  begun, always completes, even if its caller is cancelled.
- **No stray tasks.** When ``stop`` or ``shutdown`` returns, no task of this
  object is left running.
- **Sleep (optional).** With ``sleep_level`` set it is a
  :class:`~swapcore.process.SleepingProcess`: ``sleep`` asks the server to
  give its accelerator memory back (vLLM's ``POST /sleep?level=N``) and
  keeps the child; ``ensure_ready`` wakes it (``POST /wake_up``, then the
  health check), and a server that cannot wake is stopped and started cold
  within the same call. A child that dies while asleep is ``stopped``.

POSIX only (process groups and signals).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeAlias

import aiohttp

from swapcore.adapters._children import Child, spawn_child
from swapcore.adapters._options import (
    check_timeout,
    parse_command,
    parse_env,
    parse_proxy,
    positive_seconds,
    program_name,
)
from swapcore.adapters._outputlog import OutputLog
from swapcore.adapters._ports import local_endpoint, port_in_use, port_taken_reason
from swapcore.adapters._reasons import cannot_run, exit_reason
from swapcore.adapters._sleep import (
    DEFAULT_SLEEP_ENDPOINT,
    DEFAULT_WAKE_ENDPOINT,
    ProcessSleepError,
    parse_endpoint,
    parse_sleep_level,
    post,
    sleep_path,
)
from swapcore.errors import ConfigError, SwapcoreError
from swapcore.process import ProcessState

__all__ = ["ProcessSleepError", "ProcessStartError", "StateCallback", "SubprocessProcess"]

logger = logging.getLogger(__name__)
_output_logger = logging.getLogger(__name__ + ".output")

StateCallback: TypeAlias = Callable[[ProcessState, ProcessState], None]
"""``on_state_change(old, new)``: called in the event loop on every state change."""

_Command: TypeAlias = "str | Sequence[str]"

_S = ProcessState
# Legal transitions; anything else is a bug in this module and raises loudly.
# Falling asleep shows as STOPPING (back to READY if the server refuses);
# waking shows as STARTING.
_TRANSITIONS: dict[ProcessState, frozenset[ProcessState]] = {
    _S.STOPPED: frozenset({_S.STARTING, _S.SHUTDOWN}),
    _S.STARTING: frozenset({_S.READY, _S.STOPPED, _S.STOPPING}),
    _S.READY: frozenset({_S.STOPPING, _S.STOPPED}),
    _S.STOPPING: frozenset({_S.STOPPED, _S.SLEEPING, _S.READY}),
    _S.SLEEPING: frozenset({_S.STARTING, _S.STOPPING, _S.STOPPED}),
    _S.SHUTDOWN: frozenset(),
}

# One health request may take this long before it counts as a failed check.
_PROBE_TIMEOUT = 5.0
# Once a group is dead, how long its output may take to reach end of file.
_DRAIN_GRACE = 0.5
# A port found in use before a spawn is checked again for this long: a server
# we have just stopped may take a moment to close its listening socket.
_PORT_GRACE = 1.0
# A server that could not wake gets at most this long to stop on SIGTERM
# before the cold start kills its group.
_FALLBACK_STOP_GRACE = 5.0


class ProcessStartError(SwapcoreError):
    """A model server did not become ready.

    ``model`` is the process name, ``reason`` says why (exit code, timeout,
    stopped, shut down, port in use, cannot run), ``exit_code`` is the
    child's exit status if it ran (negative: killed by that signal), and
    ``output`` holds its last output lines, which the message repeats. The
    message names the program but never its arguments or environment.

    ``retryable`` is True when the child ran and exited (or was killed by a
    signal) on its own before it was ready: a crash while loading, which a
    new start may survive, so the router restarts such a start (up to its
    ``start_retries``). It is False for a timeout, a stop or shutdown during
    the start, a port already in use and a program that cannot be run, which
    a retry would only repeat.
    """

    def __init__(
        self,
        model: str,
        reason: str,
        *,
        exit_code: int | None = None,
        output: Sequence[str] = (),
        retryable: bool = False,
    ) -> None:
        self.model = model
        self.reason = reason
        self.exit_code = exit_code
        self.output = tuple(output)
        self.retryable = bool(retryable)
        message = f"model {model!r} failed to start: {reason}"
        if self.output:
            message += "\nlast output:\n" + "\n".join(f"  {line}" for line in self.output)
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.model, self.reason, self.exit_code, self.output, self.retryable)
        return (_rebuild_start_error, fields)


def _shown_env(env: Mapping[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in env.items())


def _rebuild_start_error(
    model: str,
    reason: str,
    exit_code: int | None,
    output: tuple[str, ...],
    retryable: bool = False,
) -> ProcessStartError:
    return ProcessStartError(model, reason, exit_code=exit_code, output=output, retryable=retryable)


class SubprocessProcess:
    """A model server started from a command, health-checked over HTTP.

    Keyword arguments (invalid values raise ``ConfigError`` naming the field):

    - ``name``: the model id, used in logs and errors.
    - ``cmd``: the command, a string (split like a shell would, with
      ``shlex``) or a list of arguments. ``${PORT}`` is replaced by ``port``.
    - ``port``: the port the server listens on, or None when neither ``cmd``
      nor ``proxy`` needs one.
    - ``proxy``: the server's base URL (default ``http://127.0.0.1:${PORT}``).
    - ``check_endpoint``: path polled until it answers HTTP 200 (default
      ``/health``); ``"none"`` means ready as soon as the child is spawned.
    - ``env``: variables added to ``os.environ`` for the child.
    - ``start_env``: a function called at each start for more variables
      (after ``env``), e.g. ``CUDA_VISIBLE_DEVICES`` for the devices a
      placement planner chose for this start; if it raises, the start fails.
    - ``cmd_stop``: a command that stops the server, run instead of sending
      SIGTERM; ``${PID}`` is replaced by the child's pid.
    - ``cwd``: the child's working directory.
    - ``health_interval``: seconds between health checks (default 0.1).
    - ``output_lines``: how many lines of merged stdout and stderr to keep
      (default 100).
    - ``port_check``: before each spawn, fail the start when something
      already listens on the proxy's port on this machine (default True).
      Turn it off only when something there is meant to answer for the
      server (an SSH tunnel, a local reverse proxy).
    - ``sleep_level``: 1 or 2 to let the server sleep instead of stopping
      (see :meth:`sleep`), None (the default) when it must not.
    - ``sleep_endpoint``: the path POSTed to put the server to sleep
      (default ``/sleep?level={level}``, vLLM's; ``{level}`` becomes
      ``sleep_level``).
    - ``wake_endpoint``: the path POSTed to wake it (default ``/wake_up``).
    - ``on_state_change``: ``callback(old, new)`` for every state change,
      called in the event loop; it must not block, and its exceptions are
      logged, never raised.

    The object may be built outside an event loop; its tasks run in the loop
    that calls ``ensure_ready``, and it must be used from that loop only.
    """

    def __init__(
        self,
        *,
        name: str,
        cmd: _Command,
        port: int | None = None,
        proxy: str | None = None,
        check_endpoint: str = "/health",
        env: Mapping[str, str] | None = None,
        start_env: Callable[[], Mapping[str, str]] | None = None,
        cmd_stop: _Command | None = None,
        cwd: str | os.PathLike[str] | None = None,
        health_interval: float = 0.1,
        output_lines: int = 100,
        on_state_change: StateCallback | None = None,
        port_check: bool = True,
        sleep_level: int | None = None,
        sleep_endpoint: str = DEFAULT_SLEEP_ENDPOINT,
        wake_endpoint: str = DEFAULT_WAKE_ENDPOINT,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"name: must be a non-empty string, got {name!r}")
        self._name = name
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
        ):
            raise ConfigError(f"model {name!r}: port: must be an int in 1..65535, got {port!r}")
        self._port = port
        self._argv = parse_command(name, "cmd", cmd, port)
        self._program = program_name(self._argv)
        self._cmd_stop = (
            None if cmd_stop is None else parse_command(name, "cmd_stop", cmd_stop, port)
        )
        self._url = parse_proxy(name, proxy, port)
        if not isinstance(port_check, bool):
            raise ConfigError(f"model {name!r}: port_check: must be true or false")
        self._endpoint = local_endpoint(self._url) if port_check else None
        if not isinstance(check_endpoint, str):
            raise ConfigError(f"model {name!r}: check_endpoint: must be a string")
        if check_endpoint == "none":
            self._health_url: str | None = None
        elif check_endpoint.startswith("/"):
            self._health_url = self._url + check_endpoint
        else:
            raise ConfigError(
                f"model {name!r}: check_endpoint: must be a path starting with '/' or 'none',"
                f" got {check_endpoint!r}"
            )
        self._env = parse_env(name, env)
        if start_env is not None and not callable(start_env):
            raise ConfigError(f"model {name!r}: start_env: must be callable, got {start_env!r}")
        self._start_env = start_env
        self.last_start_env: dict[str, str] = {}
        """The variables ``start_env`` gave the last start (empty: none)."""
        if cwd is not None and not isinstance(cwd, (str, os.PathLike)):
            raise ConfigError(f"model {name!r}: cwd: must be a path, got {cwd!r}")
        self._cwd = cwd
        self._health_interval = positive_seconds(name, "health_interval", health_interval)
        if isinstance(output_lines, bool) or not isinstance(output_lines, int) or output_lines < 1:
            raise ConfigError(
                f"model {name!r}: output_lines: must be a positive int, got {output_lines!r}"
            )
        self._output_lines = output_lines
        if on_state_change is not None and not callable(on_state_change):
            raise ConfigError(f"model {name!r}: on_state_change: must be callable")
        self._on_state_change = on_state_change
        self._sleep_level = parse_sleep_level(name, sleep_level)
        sleep_template = parse_endpoint(name, "sleep_endpoint", sleep_endpoint)
        self._sleep_url = self._url + sleep_path(sleep_template, self._sleep_level or 1)
        self._wake_url = self._url + parse_endpoint(name, "wake_endpoint", wake_endpoint)

        self._state = ProcessState.STOPPED
        self._shutting_down = False
        self._child: Child | None = None
        self._output = self._new_output(name)
        self._exit_code: int | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._start_began = 0.0
        self._start_deadline = 0.0
        self._stop_task: asyncio.Task[None] | None = None
        self._sleep_task: asyncio.Task[None] | None = None  # falling asleep while not done
        self._background: set[asyncio.Task[None]] = set()
        self._sleeps = 0
        self._wakes = 0
        self._failed_wakes = 0
        self._durations: dict[str, float] = {}

    # ----------------------------------------------------------------- views

    @property
    def name(self) -> str:
        """The model id given at construction."""
        return self._name

    @property
    def state(self) -> ProcessState:
        """The current state; it may change on its own (a crash) at any time."""
        return self._state

    @property
    def url(self) -> str:
        """The server's base URL (``proxy``, without a trailing slash)."""
        return self._url

    @property
    def port(self) -> int | None:
        """The port given at construction."""
        return self._port

    @property
    def argv(self) -> tuple[str, ...]:
        """The command that is run, after ``${PORT}`` substitution.

        It may hold secrets (``--api-key ...``): this module never logs it or
        puts it in an error message, and neither should its callers.
        """
        return self._argv

    @property
    def pid(self) -> int | None:
        """The child's pid while it lives (starting, ready, stopping, sleeping), else None."""
        return None if self._child is None else self._child.pid

    @property
    def sleep_level(self) -> int | None:
        """The level the server sleeps at (1 or 2), or None when it never sleeps."""
        return self._sleep_level

    @property
    def sleeps(self) -> int:
        """How many times the server fell asleep."""
        return self._sleeps

    @property
    def wakes(self) -> int:
        """How many times the server woke from sleep (cold starts after a failed wake excluded)."""
        return self._wakes

    @property
    def failed_wakes(self) -> int:
        """How many wakes failed, each followed by a stop and a cold start."""
        return self._failed_wakes

    @property
    def durations(self) -> Mapping[str, float]:
        """Seconds the latest transition of each kind took, by kind (read-only).

        Kinds: ``load`` (a cold start, spawn to ready), ``wake`` (sleeping to
        ready), ``stop`` and ``sleep`` (ready to sleeping). Only transitions
        that succeeded are recorded; a kind not yet seen is absent. These
        are for display and debugging: the router measures its own.
        """
        return types.MappingProxyType(dict(self._durations))

    @property
    def exit_code(self) -> int | None:
        """The last child's exit status (negative: killed by that signal).

        None while a child runs and before the first one ran.
        """
        return self._exit_code

    def output_tail(self) -> list[str]:
        """The last ``output_lines`` lines of the latest child's stdout and stderr."""
        return self._output.lines()

    def __repr__(self) -> str:
        return f"<SubprocessProcess {self._name!r} {self._state.value} pid={self.pid}>"

    # ------------------------------------------------------------- protocol

    async def ensure_ready(self, timeout: float) -> None:
        """Return once the server answers its health check, starting it if needed.

        ready: returns at once. stopped: spawns the command and polls the health
        endpoint. starting: joins the start in progress (one spawn for all
        callers; each waits at most its own ``timeout``, and the start's
        deadline is the latest of its callers'). stopping: waits for the stop,
        then starts. sleeping: wakes it (the wake endpoint, then the health
        check; callers share one wake); a wake that fails (an error answer,
        no answer within the timeout, a lost connection) stops the whole
        group and starts the server cold within this call, with one WARNING.
        Falling asleep: waits for the sleep, then wakes it. shutdown: raises.

        Raises ``ProcessStartError`` when the child exits before it is ready
        (``retryable`` set), cannot be run, is not healthy within ``timeout``
        seconds (the child is then killed and reaped, unless another caller's
        later deadline keeps the start going), is stopped while starting, is
        shut down, or when something already listens on the proxy's port on
        this machine (nothing is spawned: that server is not ours to use).
        Cancelling the caller does not cancel the start.
        """
        check_timeout(timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._shutting_down or self._state is ProcessState.SHUTDOWN:
                raise ProcessStartError(self._name, "the process is shut down")
            state = self._state
            if state is ProcessState.READY:
                return
            if self._falling_asleep():
                sleep_task = self._sleep_task
                assert sleep_task is not None
                await asyncio.wait({sleep_task}, timeout=max(0.0, deadline - loop.time()))
                if not sleep_task.done():
                    raise ProcessStartError(
                        self._name,
                        f"not ready within {timeout:g} s: the process was still falling asleep",
                    )
                continue
            if state is ProcessState.STOPPING:
                stop_task = self._stop_task
                assert stop_task is not None, "stopping without a stop task"
                await asyncio.wait({stop_task}, timeout=max(0.0, deadline - loop.time()))
                if not stop_task.done():
                    raise ProcessStartError(
                        self._name,
                        f"not ready within {timeout:g} s: the process was still stopping",
                    )
                continue
            if state is ProcessState.STOPPED:
                self._begin_start(loop, deadline)
            elif state is ProcessState.SLEEPING:
                self._begin_start(loop, deadline, wake=True)
            await self._join_start(loop, deadline, timeout)
            return

    async def stop(self, timeout: float) -> None:
        """Stop the server; idempotent; returns once it is stopped and reaped.

        Runs ``cmd_stop`` if set, else sends SIGTERM to the whole process
        group; after ``timeout`` seconds the group gets SIGKILL. Once the leader
        has exited, the rest of its group is killed. A start or wake in
        progress is aborted (its callers get ``ProcessStartError``); a
        sleeping server is stopped the same way; a server falling asleep is
        waited for (the sleep call is bounded by its own timeout), then
        stopped. A concurrent stop waits for the one already running. The
        stop, once begun, completes even if the caller is cancelled.
        """
        check_timeout(timeout)
        while self._falling_asleep():
            sleep_task = self._sleep_task
            assert sleep_task is not None
            await asyncio.wait({sleep_task})
        if self._state in (ProcessState.STARTING, ProcessState.READY, ProcessState.SLEEPING):
            self._set_state(ProcessState.STOPPING)
            if self._child is not None:
                # Before anything can yield: an exit from here on is ours, not a crash.
                self._child.expecting_exit = True
            start_task = self._start_task
            if start_task is not None and not start_task.done():
                start_task.cancel()
            new_stop = asyncio.get_running_loop().create_task(
                self._stop(timeout), name=f"swapcore-stop-{self._name}"
            )
            new_stop.add_done_callback(_retrieve)
            self._stop_task = new_stop
        stop_task = self._stop_task
        if self._state is ProcessState.STOPPING:
            assert stop_task is not None, "stopping without a stop task"
            await asyncio.wait({stop_task})
            error = None if stop_task.cancelled() else stop_task.exception()
            if error is not None:
                raise error  # a bug in this module: surface it
        await self._join_background()

    async def sleep(self, timeout: float) -> None:
        """Put the ready server to sleep; return once it is ``SLEEPING``, with the same child.

        The state is ``STOPPING`` while the sleep endpoint is called (one
        POST, bounded by ``timeout``); an answer in the 2xx range makes it
        ``SLEEPING``. Sleeping: returns at once; falling asleep: joins the
        sleep in progress. Raises :class:`ProcessSleepError` when the
        process has no sleep level, is not ready, or the server answers with
        an error, does not answer within ``timeout`` or exits; the state is
        then ``READY`` again if the child is alive, ``STOPPED`` if it died.
        The caller then stops it. Cancelling the caller does not cancel the
        sleep call.
        """
        check_timeout(timeout)
        if self._sleep_level is None:
            raise ProcessSleepError(self._name, "it has no sleep level")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        state = self._state
        if state is ProcessState.SLEEPING:
            return
        joining = self._falling_asleep()
        if not joining:
            if state is not ProcessState.READY or self._shutting_down:
                what = "shutting down" if self._shutting_down else state.value
                raise ProcessSleepError(self._name, f"it is {what}, not ready")
            self._begin_sleep(loop, timeout)
        task = self._sleep_task
        assert task is not None
        # A sleep we began is bounded by our timeout already; one we join, by its own.
        await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()) if joining else None)
        if not task.done():
            raise ProcessSleepError(self._name, f"not asleep within {timeout:g} s")
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error

    async def shutdown(self, timeout: float) -> None:
        """Stop the server, then enter ``shutdown`` for good; idempotent.

        From the moment this is called, ``ensure_ready`` raises
        ``ProcessStartError``; the process never starts again.
        """
        check_timeout(timeout)
        self._shutting_down = True
        await self.stop(timeout)
        if self._state is ProcessState.STOPPED:
            self._set_state(ProcessState.SHUTDOWN)

    # ---------------------------------------------------------------- start

    def _begin_start(
        self, loop: asyncio.AbstractEventLoop, deadline: float, *, wake: bool = False
    ) -> None:
        self._start_began = loop.time()
        self._start_deadline = deadline
        self._set_state(ProcessState.STARTING)
        work = self._wake() if wake else self._start()
        kind = "wake" if wake else "start"
        task = loop.create_task(work, name=f"swapcore-{kind}-{self._name}")
        task.add_done_callback(_retrieve)
        self._start_task = task

    async def _join_start(
        self, loop: asyncio.AbstractEventLoop, deadline: float, timeout: float
    ) -> None:
        task = self._start_task
        assert task is not None, "starting without a start task"
        self._start_deadline = max(self._start_deadline, deadline)
        # asyncio.wait never cancels the start task, even when this caller is cancelled.
        while not task.done():
            now = loop.time()
            if now < deadline:
                await asyncio.wait({task}, timeout=deadline - now)
            elif self._start_deadline > deadline:
                raise ProcessStartError(
                    self._name,
                    f"not ready within {timeout:g} s (the start goes on for other callers)",
                    output=self.output_tail(),
                )
            else:
                # The start's deadline is ours: it is giving up now (kill, reap). Wait for
                # its report in short slices, in case a new caller extends the deadline.
                await asyncio.wait({task}, timeout=self._health_interval)
        if task.cancelled():
            raise ProcessStartError(self._name, "stopped while starting", output=self.output_tail())
        error = task.exception()
        if error is not None:
            raise error

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._output = output = self._new_output(self._name)
        self._exit_code = None
        if self._endpoint is not None:
            await self._check_port(loop, *self._endpoint)
        child = await self._spawn(output)
        logger.debug("model %r: started pid %d: %s", self._name, child.pid, self._program)
        await self._become_ready(loop, child, "at once")
        self._record("load", loop.time() - self._start_began)
        logger.debug("model %r: ready after %.2f s", self._name, loop.time() - self._start_began)

    async def _become_ready(
        self, loop: asyncio.AbstractEventLoop, child: Child, at_once: str
    ) -> None:
        """Poll the health check until ready; otherwise kill the child and raise."""
        if self._health_url is None:
            if not child.exited.done():
                self._set_state(ProcessState.READY)
                return
            await self._fail_start(
                child, exit_reason(child.exited.result(), at_once), retryable=True
            )
        cause: Exception | None = None
        try:
            failure = await self._poll_health(loop, child, self._health_url)
        except Exception as exc:  # a bug or a broken install: never leave the child behind
            failure, cause = f"the health check itself failed: {exc!r}", exc
        if failure is not None:
            # A crash while loading may not happen again; a timeout or a bug would.
            retryable = cause is None and child.exited.done()
            await self._fail_start(child, failure, cause=cause, retryable=retryable)

    async def _check_port(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        """Fail the start, spawning nothing, while something else listens on our port."""
        grace = loop.time() + min(_PORT_GRACE, max(0.0, self._start_deadline - loop.time()))
        while await port_in_use(host, port):
            if loop.time() >= grace:
                self._set_state(ProcessState.STOPPED)
                error = ProcessStartError(self._name, port_taken_reason(host, port))
                logger.warning("%s", error)
                raise error
            await asyncio.sleep(self._health_interval)

    def _child_env(self) -> dict[str, str] | None:
        """The child's environment: None (inherit) when nothing is added."""
        extra: dict[str, str] = {}
        if self._start_env is not None:
            try:
                extra = dict(parse_env(self._name, self._start_env()))
            except Exception as exc:
                self._set_state(ProcessState.STOPPED)
                raise ProcessStartError(self._name, f"start_env failed: {exc}") from exc
            self.last_start_env = extra
            if extra:
                logger.info("model %r starts with %s", self._name, _shown_env(extra))
        if not self._env and not extra:
            return None
        return {**os.environ, **self._env, **extra}

    async def _spawn(self, output: OutputLog) -> Child:
        env = self._child_env()
        spawning = asyncio.ensure_future(
            spawn_child(self._argv, output=output, env=env, cwd=self._cwd)
        )
        try:
            # Shielded: a stop arriving mid-spawn must still learn of the child to kill it.
            child = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            await asyncio.wait({spawning})
            if not spawning.cancelled() and spawning.exception() is None:
                self._adopt(spawning.result())
            raise
        except OSError as exc:
            self._set_state(ProcessState.STOPPED)
            error = ProcessStartError(self._name, cannot_run(self._program, exc, self._cwd))
            logger.warning("%s", error)
            raise error from None  # the OSError's own text repeats the full path
        self._adopt(child)
        return child

    def _adopt(self, child: Child) -> None:
        self._child = child
        child.exited.add_done_callback(lambda _exited: self._on_exit(child))

    async def _poll_health(
        self, loop: asyncio.AbstractEventLoop, child: Child, url: str
    ) -> str | None:
        """Poll until HTTP 200 (None), the child exits or the deadline passes (a reason)."""
        last = "none yet"
        # trust_env=False: an HTTP(S)_PROXY in the environment must not capture local checks.
        async with aiohttp.ClientSession(
            trust_env=False, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
        ) as client:
            while True:
                if child.exited.done():
                    return exit_reason(child.exited.result(), "before it was ready")
                remaining = self._start_deadline - loop.time()
                if remaining <= 0:
                    budget = self._start_deadline - self._start_began
                    return f"not healthy within {budget:.3g} s (last check: {last})"
                probe = loop.create_task(_probe(client, url, min(remaining, _PROBE_TIMEOUT)))
                try:
                    # Race the check against the exit: a dead server is noticed at once.
                    racers: set[asyncio.Future[Any]] = {probe, child.exited}
                    await asyncio.wait(
                        racers,
                        timeout=remaining,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    if not probe.done():
                        probe.cancel()
                        await asyncio.wait({probe})
                if probe.cancelled() or child.exited.done():
                    continue
                result = probe.result()
                if result is None:
                    self._set_state(ProcessState.READY)
                    return None
                last = result
                pause = min(self._health_interval, self._start_deadline - loop.time())
                await asyncio.wait({child.exited}, timeout=max(0.0, pause))

    async def _fail_start(
        self,
        child: Child,
        reason: str,
        *,
        cause: Exception | None = None,
        retryable: bool = False,
    ) -> NoReturn:
        child.signal(signal.SIGKILL)
        await asyncio.wait({child.exited})
        exit_code = child.exited.result()
        await child.close(_DRAIN_GRACE)
        if self._child is child:
            self._child = None
        self._set_state(ProcessState.STOPPED)
        error = ProcessStartError(
            self._name,
            reason,
            exit_code=exit_code,
            output=child.output.lines(),
            retryable=retryable,
        )
        logger.warning("%s", error)
        raise error from cause

    # ---------------------------------------------------------- sleep, wake

    def _falling_asleep(self) -> bool:
        task = self._sleep_task
        return self._state is ProcessState.STOPPING and task is not None and not task.done()

    def _begin_sleep(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        # The task exists before the state says STOPPING: _falling_asleep() holds at once.
        task = loop.create_task(self._fall_asleep(timeout), name=f"swapcore-sleep-{self._name}")
        task.add_done_callback(_retrieve)
        self._sleep_task = task
        self._set_state(ProcessState.STOPPING)

    async def _fall_asleep(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        child = self._child
        assert child is not None, "ready without a child"
        reason = await self._call(child, self._sleep_url, timeout, "the sleep call")
        if self._child is not child or self._state is not ProcessState.STOPPING:
            # The child died meanwhile: the exit watcher has made the process STOPPED.
            raise ProcessSleepError(self._name, "the server exited while falling asleep")
        if reason is not None:
            self._set_state(ProcessState.READY)
            error = ProcessSleepError(self._name, reason)
            logger.warning("%s", error)
            raise error
        self._sleeps += 1
        self._record("sleep", loop.time() - began)
        self._set_state(ProcessState.SLEEPING)
        logger.debug("model %r: asleep after %.2f s", self._name, loop.time() - began)

    async def _wake(self) -> None:
        loop = asyncio.get_running_loop()
        child = self._child
        assert child is not None, "sleeping without a child"
        remaining = self._start_deadline - loop.time()
        reason = await self._call(child, self._wake_url, remaining, "the wake call")
        if reason is None:
            await self._become_ready(loop, child, "while waking")
            self._wakes += 1
            self._record("wake", loop.time() - self._start_began)
            logger.debug(
                "model %r: awake after %.2f s", self._name, loop.time() - self._start_began
            )
            return
        # A server that cannot wake is stopped and started cold, in this same start.
        self._failed_wakes += 1
        logger.warning(
            "model %r: could not wake (%s); stopping it and starting it cold", self._name, reason
        )
        grace = min(_FALLBACK_STOP_GRACE, max(0.0, self._start_deadline - loop.time()))
        child.expecting_exit = True
        await self._terminate(child, grace)
        if self._child is child:
            self._child = None
        if self._start_deadline - loop.time() <= 0:
            self._set_state(ProcessState.STOPPED)
            raise ProcessStartError(
                self._name, f"could not wake ({reason}), and no time was left to start it cold"
            )
        self._start_began = loop.time()
        await self._start()

    async def _call(self, child: Child, url: str, timeout: float, what: str) -> str | None:
        """POST ``url`` racing the child's exit: None on success, else the reason."""
        call = asyncio.ensure_future(post(url, timeout, what=what))
        try:
            racers: set[asyncio.Future[Any]] = {call, child.exited}
            await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not call.done():
                call.cancel()
                await asyncio.wait({call})
        if child.exited.done():
            return f"the server {exit_reason(child.exited.result(), 'during ' + what)}"
        return call.result()

    def _record(self, kind: str, seconds: float) -> None:
        self._durations[kind] = seconds

    # ----------------------------------------------------------------- stop

    async def _stop(self, timeout: float) -> None:
        began = asyncio.get_running_loop().time()
        try:
            start_task = self._start_task
            if start_task is not None and not start_task.done():
                await asyncio.wait({start_task})
            child = self._child
            if child is not None:
                await self._terminate(child, timeout)
        finally:
            self._child = None
            self._set_state(ProcessState.STOPPED)
            logger.debug("model %r: stopped (exit code %s)", self._name, self._exit_code)
        self._record("stop", asyncio.get_running_loop().time() - began)

    async def _terminate(self, child: Child, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        child.expecting_exit = True
        stopper: Child | None = None
        if not child.exited.done():
            if self._cmd_stop is not None:
                stopper = await self._spawn_stopper(child)
            if stopper is None:
                child.signal(signal.SIGTERM)
            await asyncio.wait({child.exited}, timeout=max(0.0, deadline - loop.time()))
            if not child.exited.done():
                logger.warning(
                    "model %r: pid %d still running %g s after the stop request; sending SIGKILL",
                    self._name,
                    child.pid,
                    timeout,
                )
                child.signal(signal.SIGKILL)
                await asyncio.wait({child.exited})
        # The leader is gone: nothing else of its group may outlive it.
        child.signal(signal.SIGKILL)
        if stopper is not None:
            await self._finish_stopper(stopper, child.output, deadline)
        await child.close(_DRAIN_GRACE)

    async def _spawn_stopper(self, child: Child) -> Child | None:
        """Start ``cmd_stop``; None (after logging why) when it cannot run."""
        assert self._cmd_stop is not None
        argv = [arg.replace("${PID}", str(child.pid)) for arg in self._cmd_stop]
        env = {**os.environ, **self._env} if self._env else None
        output = self._new_output(f"{self._name} cmd_stop")
        try:
            return await spawn_child(argv, output=output, env=env, cwd=self._cwd)
        except OSError as exc:
            logger.warning(
                "model %r: %s; sending SIGTERM",
                self._name,
                cannot_run(program_name(argv), exc, self._cwd, what="cmd_stop"),
            )
            return None

    async def _finish_stopper(self, stopper: Child, output: OutputLog, deadline: float) -> None:
        """Give ``cmd_stop`` until the stop deadline to finish, then kill and reap it."""
        remaining = deadline - asyncio.get_running_loop().time()
        await asyncio.wait({stopper.exited}, timeout=max(0.0, remaining))
        if not stopper.exited.done():
            stopper.signal(signal.SIGKILL)
            await asyncio.wait({stopper.exited})
        stopper.signal(signal.SIGKILL)
        await stopper.close(_DRAIN_GRACE)
        for line in stopper.output.lines():
            output.append(f"cmd_stop: {line}")
        if stopper.exited.result() != 0:
            logger.warning(
                "model %r: cmd_stop exited with code %d", self._name, stopper.exited.result()
            )

    # -------------------------------------------------------------- crashes

    def _on_exit(self, child: Child) -> None:
        """Done callback of a child's exit: a crash when nobody asked for it."""
        if child.exited.cancelled():
            return
        exit_code = child.exited.result()
        if self._child is child:
            self._exit_code = exit_code
        if child.expecting_exit or self._child is not child:
            return
        # Whoever is left in the group would be orphaned: kill it now.
        child.signal(signal.SIGKILL)
        state = self._state
        if state is ProcessState.STARTING:
            return  # the start or wake task sees the exit and reports it
        # Ready, asleep or falling asleep: the one rule, a dead child is STOPPED.
        when = "" if state is ProcessState.READY else " while asleep"
        if self._falling_asleep():
            when = " while falling asleep"
        self._child = None
        self._set_state(ProcessState.STOPPED)
        report = asyncio.get_running_loop().create_task(self._report_crash(child, exit_code, when))
        self._background.add(report)
        report.add_done_callback(self._background.discard)

    async def _report_crash(self, child: Child, exit_code: int, when: str) -> None:
        await child.close(_DRAIN_GRACE)
        lines = child.output.lines()
        logger.warning(
            "model %r: pid %d exited unexpectedly%s with code %d; last output:\n%s",
            self._name,
            child.pid,
            when,
            exit_code,
            "\n".join(f"  {line}" for line in lines) if lines else "  (none)",
        )

    async def _join_background(self) -> None:
        current = asyncio.current_task()
        pending = {task for task in self._background if task is not current}
        if pending:
            await asyncio.wait(pending)

    # -------------------------------------------------------------- helpers

    def _new_output(self, name: str) -> OutputLog:
        return OutputLog(self._output_lines, name=name, logger=_output_logger, model=self._name)

    def _set_state(self, new: ProcessState) -> None:
        old = self._state
        if new not in _TRANSITIONS[old]:
            raise RuntimeError(
                f"model {self._name!r}: illegal process state change {old.value} -> {new.value}"
            )
        self._state = new
        logger.debug("model %r: %s -> %s", self._name, old.value, new.value)
        if self._on_state_change is not None:
            try:
                self._on_state_change(old, new)
            except Exception:
                logger.exception("model %r: on_state_change callback raised", self._name)


async def _probe(client: aiohttp.ClientSession, url: str, timeout: float) -> str | None:
    """One health check: None when it answers HTTP 200, else what went wrong.

    The reason never quotes the URL (its query may carry a key).
    """
    try:
        async with client.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as response:
            status = response.status
    except asyncio.TimeoutError:
        return f"no answer within {timeout:.3g} s"
    except aiohttp.ClientConnectorError as exc:
        error = exc.os_error
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect: {error.strerror or type(error).__name__}"
    except aiohttp.ClientError as exc:
        return type(exc).__name__
    if status == 200:
        return None
    return f"HTTP {status}"


def _retrieve(task: asyncio.Task[Any]) -> None:
    # Callers may all have left: mark the outcome as seen so asyncio does not log it.
    if not task.cancelled():
        task.exception()
