"""Memory estimates from model files: what a model server will need before it starts.

:func:`estimate_gguf` reads a GGUF file's metadata and tensor table (the
``gguf`` package, the ``memory`` extra) and estimates the accelerator memory
a llama.cpp server needs for it: weights, KV cache and compute buffer.
:func:`estimate_command` does the same for a server command line, reading
the options that change the answer (``-m``, ``-c``, ``-ngl``, ``-ctk``,
``-ctv``, ``-fa``, ``-ub``). :func:`estimate_safetensors` reads a vLLM
model's weights from its safetensors headers and applies vLLM's
``--gpu-memory-utilization`` rule. See ``docs/memory.md``.
"""

from __future__ import annotations

from swapcore.memory._estimate import (
    Estimate,
    LlamaOptions,
    estimate_command,
    estimate_gguf,
    parse_llama_options,
)
from swapcore.memory._probe import Device, GPUProbe, NvmlProbe, process_tree
from swapcore.memory._safetensors import estimate_safetensors, safetensors_weights
from swapcore.memory._watch import MemoryWatcher

__all__ = [
    "Device",
    "Estimate",
    "GPUProbe",
    "LlamaOptions",
    "MemoryWatcher",
    "NvmlProbe",
    "estimate_command",
    "estimate_gguf",
    "estimate_safetensors",
    "parse_llama_options",
    "process_tree",
    "safetensors_weights",
]
