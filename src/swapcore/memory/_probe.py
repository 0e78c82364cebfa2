"""Measuring what model servers really use on the GPU: a small probe protocol, and NVML.

:class:`GPUProbe` is what swapcore asks: the devices (index, name, total
and used bytes) and the memory each device holds for a set of processes.
:class:`NvmlProbe` answers with NVIDIA's management library (the
``nvidia-ml-py`` package, the ``gpu`` extra); ``NvmlProbe.open()`` returns
None, with the reason, where there is no NVML (no package, no driver, no
GPU). Tests use :class:`swapcore.testing.FakeGPUProbe`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

__all__ = ["Device", "GPUProbe", "NvmlProbe", "process_tree"]


@attrs.frozen
class Device:
    """One accelerator: its index, name, total and used memory in bytes."""

    index: int
    name: str
    total_bytes: int
    used_bytes: int


@runtime_checkable
class GPUProbe(Protocol):
    """What swapcore reads from the GPUs."""

    def devices(self) -> list[Device]:
        """Every device, in index order."""
        ...

    def process_memory(self, pids: Collection[int]) -> Mapping[int, int]:
        """Bytes used on each device (by index) by the processes ``pids`` together.

        Devices where they use nothing are left out.
        """
        ...


def process_tree(pid: int) -> set[int]:
    """``pid`` and its live descendants (from ``/proc``; just ``pid`` elsewhere).

    A model server's GPU memory may belong to a worker it forked (vLLM's
    engine core): measure the whole tree.
    """
    found, stack = set(), [pid]
    while stack:
        current = stack.pop()
        if current in found:
            continue
        found.add(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as file:
                    stack.extend(int(child) for child in file.read().split())
        except OSError:
            continue
    return found


class NvmlProbe:
    """A :class:`GPUProbe` over NVML (``pynvml`` from the ``nvidia-ml-py`` package)."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self._handles = [
            nvml.nvmlDeviceGetHandleByIndex(index) for index in range(nvml.nvmlDeviceGetCount())
        ]

    @classmethod
    def open(cls) -> tuple[NvmlProbe | None, str]:
        """The probe, or None with the reason NVML cannot be used here."""
        try:
            import pynvml
        except ImportError:
            return None, "no pynvml: pip install 'swapcore[gpu]' (nvidia-ml-py)"
        try:
            pynvml.nvmlInit()
            probe = cls(pynvml)
        except pynvml.NVMLError as exc:
            return None, f"NVML unavailable: {exc}"
        if not probe._handles:
            return None, "NVML found no GPU"
        return probe, f"NVML: {len(probe._handles)} GPUs"

    def devices(self) -> list[Device]:
        """Every device NVML sees, with its memory."""
        nvml = self._nvml
        out = []
        for index, handle in enumerate(self._handles):
            info = nvml.nvmlDeviceGetMemoryInfo(handle)
            name = nvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            out.append(Device(index, name, int(info.total), int(info.used)))
        return out

    def process_memory(self, pids: Collection[int]) -> Mapping[int, int]:
        """Bytes the processes use on each device (compute contexts NVML reports)."""
        nvml = self._nvml
        wanted = set(pids)
        used: dict[int, int] = {}
        for index, handle in enumerate(self._handles):
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid in wanted and proc.usedGpuMemory:
                    used[index] = used.get(index, 0) + int(proc.usedGpuMemory)
        return used
