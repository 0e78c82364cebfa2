"""GGUF memory estimates beside what llama.cpp itself allocates, shape by shape.

    python benchmarks/bench_estimate.py [--json PATH]

Writes tiny random-weight llama GGUF files in several shapes (layers, width,
heads, KV heads, context, cache type, f32/f16), loads each with
llama-cpp-python (in a subprocess: llama.cpp logs its buffer sizes on
stderr, in MiB with two decimals) and prints its model, KV cache and compute
buffers beside ``swapcore.memory.estimate_gguf``'s. Needs the engine test
dependencies (llama-cpp-python, gguf). Targets (issue 12): weights exact, KV
cache within 1%, compute buffer within 25%.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from engine_helpers import llama_cpp_buffers, write_tiny_llama  # noqa: E402
from swapcore.memory import LlamaOptions, estimate_gguf  # noqa: E402

MiB = 1024 * 1024
SHAPES = [
    (2, 64, 4, 4, 256, "f16", "f32"),
    (2, 256, 8, 8, 4096, "f16", "f32"),
    (4, 256, 8, 2, 2048, "f16", "f16"),
    (2, 128, 4, 4, 8192, "q8_0", "f32"),
    (3, 192, 6, 3, 3072, "q4_0", "f32"),
    (2, 128, 4, 2, 6144, "f32", "f16"),
    (6, 384, 12, 4, 4096, "f16", "f16"),
]


def measure(directory: Path, shape: tuple[Any, ...]) -> dict[str, Any]:
    n_layer, n_embd, n_head, n_head_kv, ctx, cache, ftype = shape
    path = write_tiny_llama(
        directory / "m.gguf", n_layer=n_layer, n_embd=n_embd, n_head=n_head,
        n_head_kv=n_head_kv, n_ctx_train=ctx, ftype=ftype,
    )  # fmt: skip
    found = llama_cpp_buffers(path, n_ctx=ctx, cache=cache)
    est = estimate_gguf(
        path,
        LlamaOptions(n_ctx=ctx, cache_type_k=cache, cache_type_v=cache, flash_attn=cache != "f16"),
    )
    ours = {
        "model": (est.weights_bytes + est.host_weights_bytes) / MiB,
        "kv": est.kv_cache_bytes / MiB,
        "compute": est.overhead_bytes / MiB,
    }
    label = f"{n_layer}L {n_embd}E {n_head}H/{n_head_kv}KV ctx {ctx} {cache} {ftype}"
    return {"shape": label, "llama_cpp_mib": found, "estimate_mib": ours}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        rows = [measure(Path(tmp), shape) for shape in SHAPES]
    print(f"{'shape':<38} {'weights MiB':>18} {'KV MiB':>22} {'compute MiB':>24}")
    print("-" * 106)
    for row in rows:
        cells = []
        for key in ("model", "kv", "compute"):
            real, ours = row["llama_cpp_mib"][key], row["estimate_mib"][key]
            error = (ours - real) / real * 100 if real else 0.0
            cells.append(f"{real:7.2f} / {ours:7.2f} {error:+5.1f}%")
        print(f"{row['shape']:<38} " + "  ".join(cells))
    print("(llama.cpp's figure / the estimate, the estimate's error; llama.cpp rounds to 0.01 MiB)")
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
