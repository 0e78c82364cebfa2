"""``swapcore estimate FILE``: the accelerator memory a llama.cpp server needs for a GGUF file."""

from __future__ import annotations

import argparse
import json
from typing import Any

from swapcore.errors import ConfigError

__all__ = ["register"]

_GiB = 1024**3


def register(subparsers: Any) -> None:
    """Add the ``estimate`` subcommand."""
    parser = subparsers.add_parser(
        "estimate",
        help="estimate a model's GPU memory from its GGUF file (weights, KV cache, compute)",
        description=(
            "Estimate the accelerator memory a llama.cpp server needs for a GGUF model file: "
            "its weights (from the tensor table), the KV cache for the context and cache "
            "types, and the compute buffer. Needs the memory extra (the gguf package)."
        ),
    )
    parser.add_argument(
        "file",
        metavar="FILE",
        help="a .gguf model file, or a .safetensors file or directory of shards (vLLM)",
    )
    parser.add_argument("--ctx", type=int, help="context size (-c; default: the model's own)")
    parser.add_argument(
        "--ngl", type=int, help="layers offloaded (-ngl; default: all, as llama-server)"
    )
    parser.add_argument("--cache-type-k", default="f16", help="K cache type (-ctk; f16)")
    parser.add_argument("--cache-type-v", default="f16", help="V cache type (-ctv; f16)")
    parser.add_argument("--flash-attn", action="store_true", help="flash attention on (-fa on)")
    parser.add_argument("--ubatch", type=int, default=512, help="micro-batch (-ub; 512)")
    parser.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=0.9,
        help="vLLM's fraction of the device it claims (safetensors models; 0.9)",
    )
    parser.add_argument(
        "--device-gib", type=float, help="the device's memory in GiB (safetensors models)"
    )
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from swapcore.memory import LlamaOptions, estimate_gguf, estimate_safetensors

    for flag, value in (("--ctx", args.ctx), ("--ubatch", args.ubatch)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag}: must be >= 1, got {value}")
    options = LlamaOptions(
        n_ctx=args.ctx,
        n_gpu_layers=args.ngl if args.ngl is None or args.ngl >= 0 else None,
        cache_type_k=args.cache_type_k,
        cache_type_v=args.cache_type_v,
        flash_attn=args.flash_attn or None,
        n_ubatch=args.ubatch,
    )
    target = Path(args.file)
    try:
        if target.is_dir() or target.suffix == ".safetensors":
            device = None if args.device_gib is None else int(args.device_gib * _GiB)
            estimate = estimate_safetensors(
                target, gpu_memory_utilization=args.gpu_memory_utilization, device_bytes=device
            )
        else:
            estimate = estimate_gguf(args.file, options)
    except ImportError as exc:
        raise ConfigError(str(exc)) from None
    if args.json:
        print(json.dumps(estimate.to_dict(), indent=1))
        return 0
    if estimate.architecture == "safetensors":
        claim = "vLLM claims the total" if args.device_gib else "weights only: give --device-gib"
        print(f"{args.file}: safetensors (vLLM, {claim})")
    else:
        print(
            f"{args.file}: {estimate.architecture}, {estimate.layers} of {estimate.n_layer} "
            f"layers offloaded, {estimate.n_ctx} KV cells, flash attention "
            f"{'on' if estimate.flash_attn else 'off'}"
        )
    for name, value in (
        ("weights_bytes", estimate.weights_bytes),
        ("kv_cache_bytes", estimate.kv_cache_bytes),
        ("overhead_bytes", estimate.overhead_bytes),
        ("total_bytes", estimate.total_bytes),
    ):
        print(f"  {name:<16} {value:>16,}  ({value / _GiB:.2f} GiB)")
    if estimate.host_weights_bytes:
        print(f"  (host memory: {estimate.host_weights_bytes:,} bytes of weights not offloaded)")
    return 0
