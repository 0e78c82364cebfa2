"""vLLM models: weights from safetensors headers (no tensor data read), vLLM's memory claim."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from swapcore import ConfigError
from swapcore.cli import main
from swapcore.memory import estimate_safetensors, safetensors_weights

GiB = 1024**3


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], int]]) -> Path:
    """A safetensors file as the format lays it out: header length, JSON header, data.

    ``tensors`` maps a name to (dtype, shape, bytes per element).
    """
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape, width) in tensors.items():
        size = width
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return path


def test_weights_are_the_tensor_bytes_of_every_shard(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    write_safetensors(
        model / "model-00001-of-00002.safetensors",
        {"embed.weight": ("BF16", [1000, 64], 2), "layers.0.q.weight": ("BF16", [64, 64], 2)},
    )
    write_safetensors(
        model / "model-00002-of-00002.safetensors", {"lm_head": ("F32", [1000, 64], 4)}
    )
    expected = 1000 * 64 * 2 + 64 * 64 * 2 + 1000 * 64 * 4
    assert safetensors_weights(model) == expected
    assert safetensors_weights(model / "model-00002-of-00002.safetensors") == 1000 * 64 * 4
    estimate = estimate_safetensors(model, gpu_memory_utilization=0.5, device_bytes=GiB)
    assert estimate.weights_bytes == expected
    assert estimate.total_bytes == GiB // 2  # vLLM claims its fraction of the device
    assert estimate.kv_cache_bytes == GiB // 2 - expected
    assert estimate_safetensors(model).total_bytes == expected  # weights only


def test_weights_that_do_not_fit_the_claim_are_an_error(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", {"w": ("F32", [1024, 1024], 4)})
    with pytest.raises(ConfigError, match=re.escape("do not fit 0.5 of a 4,000,000-byte device")):
        estimate_safetensors(path, gpu_memory_utilization=0.5, device_bytes=4_000_000)
    with pytest.raises(ConfigError, match="gpu_memory_utilization: must be in"):
        estimate_safetensors(path, gpu_memory_utilization=1.5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01", "too short"),
        (struct.pack("<Q", 5) + b"{oops", "its header is not JSON"),
        (struct.pack("<Q", 2) + b"[]", "its header is not an object"),
        (struct.pack("<Q", 25) + b'{"w": {"dtype": "F32"}}  ', "tensor 'w' has no valid"),
    ],
)
def test_malformed_files_name_the_problem(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=message):
        safetensors_weights(path)


def test_a_directory_without_shards_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no \.safetensors files"):
        safetensors_weights(tmp_path)


def test_the_cli_reads_a_safetensors_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", {"w": ("F16", [1024, 512], 2)})
    assert main(["estimate", str(path), "--device-gib", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["weights_bytes"] == 1024 * 512 * 2
    assert data["total_bytes"] == int(0.9 * GiB)
