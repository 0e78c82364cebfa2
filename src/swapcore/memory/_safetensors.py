"""The safetensors estimate (vLLM): weights from the file headers, and vLLM's memory rule.

A safetensors file starts with an 8-byte little-endian header length and a
JSON header mapping each tensor to its dtype, shape and ``data_offsets``;
the weights are the sum of the tensors' byte ranges, read from the headers
only (no tensor data). A model directory holds one file or several shards.

vLLM does not size its memory by the model: at start it claims
``--gpu-memory-utilization`` (0.9 by default) of the whole device, puts the
weights and its activation peak in it, and gives all the rest to the KV
cache. So the accelerator memory a vLLM server takes is that fraction of
the device, whatever the model; the weights tell whether it can start at
all (they must fit in it).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from swapcore.errors import ConfigError
from swapcore.memory._estimate import Estimate

__all__ = ["estimate_safetensors", "safetensors_weights"]

_MAX_HEADER = 100 * 1024 * 1024  # the format's own limit


def safetensors_weights(path: str | os.PathLike[str]) -> int:
    """The bytes of every tensor in a ``.safetensors`` file or a directory of shards."""
    target = Path(path)
    files = sorted(target.glob("*.safetensors")) if target.is_dir() else [target]
    if not files:
        raise ConfigError(f"{target}: no .safetensors files in this directory")
    return sum(_file_weights(file) for file in files)


def _file_weights(path: Path) -> int:
    try:
        with path.open("rb") as file:
            head = file.read(8)
            if len(head) != 8:
                raise ConfigError(f"{path}: too short for a safetensors file")
            (length,) = struct.unpack("<Q", head)
            if length > _MAX_HEADER:
                raise ConfigError(f"{path}: header of {length} bytes, over the format's limit")
            raw = file.read(length)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    try:
        header = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ConfigError(f"{path}: not a safetensors file (its header is not an object)")
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(v, int) for v in offsets)
            or offsets[1] < offsets[0]
        ):
            raise ConfigError(f"{path}: tensor {name!r} has no valid data_offsets")
        total += offsets[1] - offsets[0]
    return total


def estimate_safetensors(
    path: str | os.PathLike[str],
    *,
    gpu_memory_utilization: float = 0.9,
    device_bytes: int | None = None,
) -> Estimate:
    """What a vLLM server takes for the model at ``path`` (a file or a directory of shards).

    With ``device_bytes`` (the device's total memory), ``total_bytes`` is
    ``gpu_memory_utilization`` of it, vLLM's claim: the weights, then the KV
    cache in what is left (``kv_cache_bytes``). Without it, only the weights
    are known (``total_bytes`` is then a lower bound). Raises
    :class:`~swapcore.ConfigError` when the weights do not fit the claim.
    """
    if not 0 < gpu_memory_utilization <= 1:
        raise ConfigError(
            f"gpu_memory_utilization: must be in (0, 1], got {gpu_memory_utilization!r}"
        )
    weights = safetensors_weights(path)
    kv = 0
    if device_bytes is not None:
        claim = int(device_bytes * gpu_memory_utilization)
        if weights > claim:
            raise ConfigError(
                f"{os.fspath(path)}: {weights:,} bytes of weights do not fit "
                f"{gpu_memory_utilization:g} of a {device_bytes:,}-byte device"
            )
        kv = claim - weights
    return Estimate(
        weights_bytes=weights,
        kv_cache_bytes=kv,
        overhead_bytes=0,
        host_weights_bytes=0,
        n_ctx=0,
        layers=0,
        n_layer=0,
        architecture="safetensors",
        flash_attn=False,
    )
