"""No orphans: a model's whole process group dies with the gateway, however it dies.

A small "gateway" runs as a real subprocess: a Python script that starts
``SubprocessProcess``es whose servers fork a helper (``sleep``) into their
group before exec-ing the fake model, prints the pids, and blocks. The test
kills that gateway (SIGKILL, a default-action SIGTERM, SIGABRT, an exit
that skips all cleanup) and polls /proc until no process of a model's group
runs, for at most the 3 s the requirement allows. The sentinel itself is
tested through a private ``SentinelLink`` against groups the test owns.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from swapcore.adapters._orphans import SentinelLink, sentinel
from swapcore.adapters._sentinel import parse_line
from system_helpers import free_port

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")

ORPHAN_BOUND = 3.0  # the requirement: nothing of a model runs 3 s after the gateway died
TIMEOUT = 30.0  # any other wait: generous, the machine is shared


# ------------------------------------------------------------------ /proc helpers


def stat_fields(pid: int) -> list[str] | None:
    """``[state, ppid, pgrp, ...]`` of ``pid``, or None once it is gone (reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def running(pid: int, pgid: int | None = None) -> bool:
    """True while ``pid`` runs (in group ``pgid``, if given); a zombie no longer runs.

    PID 1 of some containers never reaps orphans, so a dead orphan may stay a
    zombie for good; checking the group guards against a reused pid.
    """
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return pgid is None or int(fields[2]) == pgid


def wait_gone(pids: dict[str, tuple[int, int]], bound: float = ORPHAN_BOUND) -> float:
    """Poll until no ``name: (pid, pgid)`` runs; the seconds it took, or fail past ``bound``."""
    began = time.monotonic()
    while True:
        left = {name: pid for name, (pid, pgid) in pids.items() if running(pid, pgid)}
        elapsed = time.monotonic() - began
        if not left:
            return elapsed
        if elapsed > bound:
            raise AssertionError(f"still running {elapsed:.2f} s after the gateway died: {left}")
        time.sleep(0.005)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# ------------------------------------------------------------- a gateway-like parent

# Each model's server forks a helper into its group, then becomes the fake model.
HELPERS = {
    "plain": "sleep 1000 &",
    "stubborn": '(trap "" TERM; exec sleep 1000) &',  # only SIGKILL ends it
}

GATEWAY = textwrap.dedent(
    """\
    import asyncio, os, signal, sys, time
    from swapcore.adapters import _children, _orphans
    from swapcore.adapters.subprocess import SubprocessProcess

    helper, pdeathsig, kill_sentinel, ending = sys.argv[1:5]
    ports = [int(port) for port in sys.argv[5:]]
    if pdeathsig == "off":  # as on a system without PR_SET_PDEATHSIG
        _children.child_preexec = lambda: None

    async def start(name, port):
        script = helper + ' echo "helper=$!"; exec "$0" -m swapcore.fakemodel --port "$1"'
        process = SubprocessProcess(
            name=name, cmd=["sh", "-c", script, sys.executable, "${PORT}"], port=port,
            health_interval=0.05,
        )
        await process.ensure_ready(30)
        line = next(l for l in process.output_tail() if l.startswith("helper="))
        return process, int(line.partition("=")[2])

    async def main():
        processes = []
        for index, port in enumerate(ports):
            if index and kill_sentinel == "kill-sentinel":
                os.kill(_orphans.sentinel.pid, signal.SIGKILL)
                for _ in range(3000):
                    if _orphans.sentinel.pid is None:  # reaped
                        break
                    time.sleep(0.01)
            process, helper_pid = await start(f"m{index}", port)
            processes.append(process)
            print("model", process.pid, helper_pid, _orphans.sentinel.pid, flush=True)
        if ending == "stop-then-exit":
            for process in processes:
                await process.stop(10)
        elif ending == "os-exit":
            os._exit(3)  # dies without any clean-up: no atexit, no finally
        elif ending == "block":
            await asyncio.Event().wait()
        # "exit": a normal interpreter exit that left its models running

    asyncio.run(main())
    """
)


class Gateway:
    """The script above as a subprocess, with the pids it printed."""

    def __init__(
        self,
        models: int = 1,
        *,
        helper: str = "plain",
        pdeathsig: bool = True,
        kill_sentinel: bool = False,
        ending: str = "block",
    ) -> None:
        argv = [
            HELPERS[helper],
            "on" if pdeathsig else "off",
            "kill-sentinel" if kill_sentinel else "keep-sentinel",
            ending,
            *(str(free_port()) for _ in range(models)),
        ]
        self.process = subprocess.Popen(
            [sys.executable, "-c", GATEWAY, *argv], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        self.models: list[tuple[int, int]] = []  # (leader, helper); the leader's pid is the pgid
        self.sentinels: list[int] = []  # the sentinel's pid after each model's start
        assert self.process.stdout is not None
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.process.stdout, selectors.EVENT_READ)
        try:
            for _ in range(models):
                _, leader, helper_pid, sentinel = self.read_line().split()
                self.models.append((int(leader), int(helper_pid)))  # first: close() kills it
                self.sentinels.append(int(sentinel))
        except BaseException:
            self.close()  # never leave a gateway or its models behind
            raise

    def read_line(self) -> str:
        assert self.process.stdout is not None
        if not self._selector.select(TIMEOUT):
            raise AssertionError(f"the gateway printed nothing in {TIMEOUT:g} s")
        line = self.process.stdout.readline().decode()
        if not line:
            raise AssertionError(f"the gateway exited with {self.process.wait(TIMEOUT)}")
        return line.strip()

    def group_pids(self) -> dict[str, tuple[int, int]]:
        """Every model process, as ``name: (pid, pgid)``."""
        found = {}
        for index, (leader, helper) in enumerate(self.models):
            found[f"m{index} leader"] = (leader, leader)
            found[f"m{index} helper"] = (helper, leader)
        return found

    def close(self) -> None:
        self._selector.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(TIMEOUT)
        assert self.process.stdout is not None
        self.process.stdout.close()
        for leader, _ in self.models:
            kill_group(leader)  # only matters when a test failed


@pytest.fixture
def gateways() -> Iterator[Callable[..., Gateway]]:
    """Starts gateway-like parents; kills them and their models after the test."""
    started: list[Gateway] = []

    def factory(**kwargs: object) -> Gateway:
        gateway = Gateway(**kwargs)  # type: ignore[arg-type]
        started.append(gateway)
        return gateway

    yield factory
    for gateway in started:
        gateway.close()


def assert_all_running(gateway: Gateway) -> None:
    pids = gateway.group_pids()
    assert all(running(pid, pgid) for pid, pgid in pids.values()), pids


def die_and_measure(gateway: Gateway, sig: int) -> float:
    """Kill the gateway with ``sig``; the seconds until its last model process was gone."""
    os.kill(gateway.process.pid, sig)
    took = wait_gone(gateway.group_pids())
    assert gateway.process.wait(TIMEOUT) == -sig
    return took


# ------------------------------------------------------------------ gateway deaths


@pytest.mark.parametrize(
    "sig",
    # SIGTERM and SIGABRT: Python's default actions, the process dies without clean-up.
    [signal.SIGKILL, signal.SIGTERM, signal.SIGABRT],
    ids=["SIGKILL", "SIGTERM-default", "SIGABRT"],
)
def test_the_model_group_dies_with_its_gateway(
    gateways: Callable[..., Gateway], sig: signal.Signals
) -> None:
    gateway = gateways()
    assert_all_running(gateway)
    took = die_and_measure(gateway, sig)
    # The sentinel exits too once it has done its job.
    sentinel = gateway.sentinels[-1]
    wait_until(lambda: not running(sentinel), f"the sentinel to exit ({took:.3f} s to clean up)")


def test_an_exit_that_skips_all_clean_up(gateways: Callable[..., Gateway]) -> None:
    gateway = gateways(ending="os-exit")
    assert gateway.process.wait(TIMEOUT) == 3
    wait_gone(gateway.group_pids())


def test_a_helper_that_ignores_sigterm_gets_sigkill(gateways: Callable[..., Gateway]) -> None:
    gateway = gateways(helper="stubborn")
    assert_all_running(gateway)
    die_and_measure(gateway, signal.SIGKILL)


def test_without_pdeathsig_the_sentinel_alone_suffices(
    gateways: Callable[..., Gateway],
) -> None:
    """What systems without PR_SET_PDEATHSIG get: the sentinel kills the leaders too."""
    gateway = gateways(pdeathsig=False, models=2)
    assert_all_running(gateway)
    die_and_measure(gateway, signal.SIGKILL)


def test_a_killed_sentinel_is_replaced_and_told_every_live_group(
    gateways: Callable[..., Gateway],
) -> None:
    # PDEATHSIG off: only a sentinel that learnt of m0 can kill m0's leader and helper.
    gateway = gateways(models=2, kill_sentinel=True, pdeathsig=False)
    first, second = gateway.sentinels
    assert first != second and not running(first)
    assert_all_running(gateway)
    die_and_measure(gateway, signal.SIGKILL)


def test_a_clean_exit_says_goodbye_and_reaps_the_sentinel(
    gateways: Callable[..., Gateway],
) -> None:
    gateway = gateways(ending="stop-then-exit")
    assert gateway.process.wait(TIMEOUT) == 0
    sentinel = gateway.sentinels[0]
    # The gateway waited for its sentinel: not even a zombie is left.
    assert stat_fields(sentinel) is None
    assert not any(running(pid) for pid, _ in gateway.group_pids().values())


def test_models_left_running_at_exit_die_with_the_process(
    gateways: Callable[..., Gateway],
) -> None:
    gateway = gateways(ending="exit")
    assert gateway.process.wait(TIMEOUT) == 0
    wait_gone(gateway.group_pids())
    assert stat_fields(gateway.sentinels[0]) is None


# ------------------------------------------------------------------ the sentinel


@pytest.fixture
def groups() -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Starts ``sleep`` processes, each leading its own group; kills them after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def factory() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        started.append(process)
        return process

    yield factory
    for process in started:
        kill_group(process.pid)
        process.wait(TIMEOUT)


@pytest.fixture
def link() -> Iterator[SentinelLink]:
    link = SentinelLink()
    yield link
    link.close(goodbye=True)


def test_a_goodbye_kills_nothing(
    link: SentinelLink, groups: Callable[[], subprocess.Popen[bytes]]
) -> None:
    group = groups()
    link.watch(group.pid)
    sentinel = link.pid
    assert sentinel is not None and running(sentinel)
    link.close(goodbye=True)  # returns once the sentinel is reaped
    assert link.pid is None and stat_fields(sentinel) is None
    assert group.poll() is None


def test_end_of_file_kills_only_the_groups_it_was_told_about(
    link: SentinelLink, groups: Callable[[], subprocess.Popen[bytes]]
) -> None:
    watched, never_told, forgotten = groups(), groups(), groups()
    link.watch(watched.pid)
    link.watch(forgotten.pid)
    link.forget(forgotten.pid)
    assert link.groups == {watched.pid}
    link.close(goodbye=False)  # as if this process had died
    assert watched.wait(TIMEOUT) == -signal.SIGTERM
    assert never_told.poll() is None and forgotten.poll() is None


def test_a_dead_sentinel_is_replaced_with_every_live_group(
    link: SentinelLink, groups: Callable[[], subprocess.Popen[bytes]]
) -> None:
    first_group, second_group = groups(), groups()
    link.watch(first_group.pid)
    first = link.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: link.pid is None, "the sentinel's death to be seen")
    link.watch(second_group.pid)
    second = link.pid
    assert second is not None and second != first
    link.close(goodbye=False)
    assert first_group.wait(TIMEOUT) == -signal.SIGTERM
    assert second_group.wait(TIMEOUT) == -signal.SIGTERM


def test_a_sentinel_that_stops_reading_is_replaced(
    link: SentinelLink, groups: Callable[[], subprocess.Popen[bytes]]
) -> None:
    group = groups()
    link.watch(group.pid)
    stuck = link.pid
    assert stuck is not None
    os.kill(stuck, signal.SIGSTOP)
    # Fill its pipe: the link must never block, and drops the sentinel instead.
    for _ in range(100_000):
        link.forget(999_999_999)
        if link.pid is None:
            break
    assert link.pid is None and stat_fields(stuck) is None  # killed and reaped
    link.watch(group.pid)
    assert link.pid not in (None, stuck)
    assert group.poll() is None


def test_the_sentinel_holds_nothing_of_ours(link: SentinelLink) -> None:
    link.watch(999_999_999)  # a group that does not exist: never signalled while we live
    sentinel = link.pid
    assert sentinel is not None

    def open_fds() -> dict[int, str]:
        return {
            int(fd): os.readlink(f"/proc/{sentinel}/fd/{fd}")
            for fd in os.listdir(f"/proc/{sentinel}/fd")
        }

    # While the interpreter starts, the dynamic loader briefly holds the shared
    # libraries it maps (libc.so.6 on fd 3); an inherited descriptor would stay.
    deadline = time.monotonic() + TIMEOUT
    fds = open_fds()
    while set(fds) != {0, 1, 2} and time.monotonic() < deadline:
        time.sleep(0.01)
        fds = open_fds()
    assert set(fds) == {0, 1, 2}, fds
    assert fds[0].startswith("pipe:") and fds[1] == fds[2] == "/dev/null"
    assert os.getsid(sentinel) == sentinel  # its own session: terminal signals miss it
    assert Path(f"/proc/{sentinel}/cwd").resolve() == Path("/")


def test_the_sentinel_ignores_what_is_not_a_group() -> None:
    groups: set[int] = set()
    for line in (b"+0", b"+1", b"-1", b"+-5", b"+abc", b"", b"x12", b"+", b"12", b" +7 "):
        assert parse_line(line, groups) is False
    assert groups == {7}
    assert parse_line(b"-7", groups) is False and groups == set()
    assert parse_line(b"bye", groups) is True


QUIET = textwrap.dedent(
    """\
    import asyncio
    from swapcore.adapters import _orphans
    from swapcore.adapters.subprocess import SubprocessProcess

    async def main():
        processes = [
            SubprocessProcess(name=name, cmd="sleep 300", check_endpoint="none", port=5800)
            for name in ("a", "b")
        ]
        for process in processes:
            await process.ensure_ready(30)
        assert _orphans.sentinel.pid is not None
        for process in processes:
            await process.stop(10)

    asyncio.run(main())
    """
)


def test_spawning_beside_a_live_sentinel_warns_nothing() -> None:
    """Each spawn forks: the fork must let go of the sentinel quietly, before its exec."""
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", QUIET],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_a_forked_copy_lets_go_of_the_sentinel(
    groups: Callable[[], subprocess.Popen[bytes]],
) -> None:
    """A fork of the gateway (no exec) must not keep this process's sentinel pipe open."""
    group = groups()
    sentinel.watch(group.pid)  # this process's own link: only it has the at-fork hook
    try:
        sentinel_pid = sentinel.pid
        read_end, write_end = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
            child = os.fork()
        if child == 0:  # pragma: no cover - the forked copy reports through the pipe
            fine = sentinel.pid is None and not sentinel.groups
            os.write(write_end, b"ok" if fine else b"bad")
            os._exit(0)
        os.close(write_end)
        try:
            assert os.read(read_end, 16) == b"ok"
        finally:
            os.close(read_end)
            os.waitpid(child, 0)
        # The parent's link is untouched: same sentinel, still watching the group.
        assert sentinel.pid == sentinel_pid and group.pid in sentinel.groups
    finally:
        sentinel.forget(group.pid)
