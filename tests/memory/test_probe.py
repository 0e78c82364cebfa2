"""Measuring GPU memory: the probe protocol, NVML behind it, and the watcher that learns."""

from __future__ import annotations

import logging
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from swapcore import BaseRouter
from swapcore.costs import SwapCosts
from swapcore.memory import GPUProbe, MemoryWatcher, NvmlProbe, process_tree
from swapcore.testing import FakeGPUProbe, FakeProcess

GiB = 1024**3


@pytest.fixture
def server_tree() -> Iterator[tuple[int, int]]:
    """A real process with a child (a server and its worker): (parent pid, child pid)."""
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        yield parent.pid, child
    finally:
        subprocess.run(["pkill", "-P", str(parent.pid)], check=False)
        parent.kill()
        parent.wait(timeout=10)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_the_process_tree_includes_workers(server_tree: tuple[int, int]) -> None:
    parent, child = server_tree
    assert process_tree(parent) >= {parent, child}


def test_the_fake_probe_reports_devices_and_processes() -> None:
    probe = FakeGPUProbe({0: 24 * GiB, 1: 16 * GiB})
    assert isinstance(probe, GPUProbe)
    probe.use(100, 0, 5 * GiB)
    probe.use(101, 1, 2 * GiB)
    probe.use(200, 1, 1 * GiB)
    assert probe.process_memory([100, 101]) == {0: 5 * GiB, 1: 2 * GiB}
    devices = probe.devices()
    assert [(d.index, d.total_bytes, d.used_bytes) for d in devices] == [
        (0, 24 * GiB, 5 * GiB),
        (1, 16 * GiB, 3 * GiB),
    ]
    with pytest.raises(ValueError, match="no device 7"):
        probe.use(1, 7, 1)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
async def test_the_watcher_learns_each_model_s_memory_after_its_swap(
    server_tree: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    parent, child = server_tree
    probe = FakeGPUProbe({0: 24 * GiB, 1: 24 * GiB})
    probe.use(child, 0, 6 * GiB)  # the worker holds the memory, on two devices
    probe.use(child, 1, 2 * GiB)
    costs = SwapCosts()
    pids = {"big": parent, "small": None}
    watcher = MemoryWatcher(
        probe, costs, pids.get, estimates={"big": 7 * GiB, "small": GiB}, margin=0.1
    )
    assert costs.describe("big")["memory"] == {
        "bytes": 7 * GiB,
        "measured": 0,
        "source": "configured",
    }
    processes = {"big": FakeProcess("big"), "small": FakeProcess("small")}
    from swapcore import GroupPlanner

    planner = GroupPlanner({}, models=list(processes))
    async with BaseRouter(processes, planner, on_event=watcher, costs=costs) as router:
        async with router.acquire("big"):
            pass
        async with router.acquire("small"):  # no process id: nothing measured
            pass
    assert watcher.measured == {"big": {0: 6 * GiB, 1: 2 * GiB}}
    assert costs.estimate("big", "memory") == 8 * GiB  # the measurement replaces the estimate
    assert costs.describe("big")["memory"]["source"] == "measured"
    assert "model 'big' uses 8.00 GiB of GPU memory, 14% over its estimate of 7.00 GiB" in (
        caplog.text
    )


def test_a_probe_failure_is_a_warning_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    probe = FakeGPUProbe({0: GiB})
    probe.fail = RuntimeError("driver went away")
    watcher = MemoryWatcher(probe, SwapCosts(), lambda model: 12345)
    assert watcher.measure("m") is None
    assert "could not measure the GPU memory of 'm': driver went away" in caplog.text


def fake_nvml(processes: dict[int, list[tuple[int, int]]]) -> types.SimpleNamespace:
    """A stand-in for pynvml with two devices and the given (pid, bytes) per device."""

    def memory(handle: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(total=24 * GiB, used=sum(b for _, b in processes[handle]))

    return types.SimpleNamespace(
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetMemoryInfo=memory,
        nvmlDeviceGetName=lambda handle: b"Fake H100",
        nvmlDeviceGetComputeRunningProcesses=lambda handle: [
            types.SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in processes[handle]
        ],
    )


def test_the_nvml_probe_sums_a_process_tree_per_device() -> None:
    nvml = fake_nvml({0: [(10, GiB), (11, 2 * GiB), (99, 5 * GiB)], 1: [(11, 3 * GiB)]})
    probe = NvmlProbe(nvml)
    assert probe.process_memory({10, 11}) == {0: 3 * GiB, 1: 3 * GiB}
    assert [(d.name, d.used_bytes) for d in probe.devices()] == [
        ("Fake H100", 8 * GiB),
        ("Fake H100", 3 * GiB),
    ]


def test_the_real_nvml_probe_or_why_not() -> None:
    probe, reason = NvmlProbe.open()
    if probe is None:
        assert reason.startswith(("no pynvml", "NVML unavailable", "NVML found no GPU"))
        pytest.skip(f"no GPU to measure here ({reason}); the NVML path is tested with a stand-in")
    devices = probe.devices()
    assert devices and all(d.total_bytes > 0 for d in devices)
