"""Child process groups: spawn, signal the whole group, notice the exit, collect output.

We use a ``SubprocessProtocol`` rather than ``asyncio.subprocess.Process``:
before Python 3.12, ``Process.wait()`` returns only once every pipe is closed,
so a helper the server forked that keeps stdout open (or outlives the server
by ignoring SIGTERM) would hide the server's own exit, and with it a crash.
``process_exited`` fires as soon as the leader is reaped.

Every group is registered with this process's sentinel from its spawn until
it is closed, and its leader gets a parent-death signal (``_orphans``): a
group never outlives the gateway, however the gateway ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import cast

from swapcore.adapters._orphans import child_preexec, forget_group, watch_group
from swapcore.adapters._outputlog import OutputLog

__all__ = ["Child", "signal_group", "spawn_child"]

logger = logging.getLogger("swapcore.adapters.subprocess")


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to every process in group ``pgid``; False if the group is gone.

    A group whose leader has exited still exists while any member lives, so
    this also reaches the helpers a crashed server left behind.
    """
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        # A member changed its user id: we cannot signal it, and nothing else can be done.
        logger.warning("process group %d: not permitted to send %s", pgid, sig.name)
        return False
    return True


class _Protocol(asyncio.SubprocessProtocol):
    def __init__(self, output: OutputLog, loop: asyncio.AbstractEventLoop) -> None:
        self.output = output
        self.exited: asyncio.Future[int] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's process transport has the interface but not the base class.
        self.transport = cast(asyncio.SubprocessTransport, transport)

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self.output.feed(data.encode() if isinstance(data, str) else data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.output.close()

    def process_exited(self) -> None:
        assert self.transport is not None
        code = self.transport.get_returncode()
        if code is not None and not self.exited.done():
            self.exited.set_result(code)

    def connection_lost(self, exc: Exception | None) -> None:
        self.output.close()
        if not self.closed.done():
            self.closed.set_result(None)


class Child:
    """One spawned process group and its merged stdout/stderr.

    ``exited`` resolves to the leader's exit status (negative: the signal that
    killed it) as soon as the leader has been reaped; ``output`` collects what
    the group writes.
    """

    __slots__ = ("_protocol", "_transport", "expecting_exit", "output", "pid")

    def __init__(self, transport: asyncio.SubprocessTransport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.output = protocol.output
        pid = transport.get_pid()
        assert pid is not None
        self.pid: int = pid  # start_new_session: also the process group id
        self.expecting_exit = False  # set by whoever asks it to stop: its exit is no crash

    @property
    def exited(self) -> asyncio.Future[int]:
        """Resolves to the leader's exit status once it has been reaped."""
        return self._protocol.exited

    def signal(self, sig: signal.Signals) -> bool:
        """Send ``sig`` to the whole group; False if the group is gone."""
        return signal_group(self.pid, sig)

    async def close(self, grace: float) -> None:
        """Collect the output to end of file (for at most ``grace`` seconds), then close.

        Call once the group is dead. Only a process that left the group while
        holding our pipe makes the grace period matter; the pipe is closed
        either way. The sentinel then forgets the group: it will never be
        signalled again.
        """
        await asyncio.wait({self._protocol.closed}, timeout=grace)
        self._transport.close()
        self.output.close()
        forget_group(self.pid)


async def spawn_child(
    argv: Sequence[str],
    *,
    output: OutputLog,
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
) -> Child:
    """Run ``argv`` as the leader of a new session; raises OSError if it cannot run.

    stdin is /dev/null; stdout and stderr are merged into ``output``. The
    group is watched by the sentinel until ``Child.close``; on Linux the
    leader dies with the event loop's thread (call this from that thread).
    """
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _Protocol(output, loop),
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=child_preexec(),
    )
    child = Child(transport, protocol)
    watch_group(child.pid)
    return child
