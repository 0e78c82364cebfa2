"""The GGUF estimate against llama.cpp's own report of its buffers (llama-cpp-python).

llama.cpp logs its model, KV and compute buffer sizes when it loads a file;
each shape here is written with the gguf writer, loaded by llama-cpp-python
in a subprocess (its log goes to the process's stderr), and compared with
``swapcore.memory.estimate_gguf``: weights to llama.cpp's rounding (two
decimals of MiB), the KV cache within 1%, the compute buffer within 25%.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine_helpers import llama_cpp_buffers, requires_engine, write_tiny_llama
from swapcore.memory import LlamaOptions, estimate_gguf

pytestmark = requires_engine

MiB = 1024 * 1024

SHAPES = [
    # n_layer, n_embd, n_head, n_head_kv, ctx, cache, ftype
    (2, 256, 8, 8, 4096, "f16", "f32"),
    (4, 256, 8, 2, 2048, "f16", "f16"),
    (2, 128, 4, 4, 8192, "q8_0", "f32"),
    (3, 192, 6, 3, 3072, "q4_0", "f32"),
    (2, 128, 4, 2, 6144, "f32", "f16"),
]


@pytest.mark.parametrize(
    ("n_layer", "n_embd", "n_head", "n_head_kv", "ctx", "cache", "ftype"), SHAPES
)
def test_the_estimate_matches_what_llama_cpp_allocates(
    tmp_path: Path,
    n_layer: int,
    n_embd: int,
    n_head: int,
    n_head_kv: int,
    ctx: int,
    cache: str,
    ftype: str,
) -> None:
    path = write_tiny_llama(
        tmp_path / "m.gguf", n_layer=n_layer, n_embd=n_embd, n_head=n_head,
        n_head_kv=n_head_kv, n_ctx_train=ctx, ftype=ftype,  # type: ignore[arg-type]
    )  # fmt: skip
    real = llama_cpp_buffers(path, n_ctx=ctx, cache=cache)
    estimate = estimate_gguf(
        path,
        LlamaOptions(n_ctx=ctx, cache_type_k=cache, cache_type_v=cache, flash_attn=cache != "f16"),
    )
    weights = (estimate.weights_bytes + estimate.host_weights_bytes) / MiB
    assert abs(weights - real["model"]) <= 0.01  # llama.cpp prints 2 decimals
    kv = real["kv"]
    assert abs(estimate.kv_cache_bytes / MiB - kv) <= 0.01 * kv
    compute = real["compute"]
    assert abs(estimate.overhead_bytes / MiB - compute) <= 0.25 * compute
