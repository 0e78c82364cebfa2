"""The GGUF estimate: weights from the tensor table, KV cache in closed form, compute buffer.

Sources for each part:

- **Weights**: the bytes of every tensor in the file's tensor table (its type
  and shape), placed as llama.cpp places them: the repeating blocks
  ``blk.N.*`` offloaded are the last ``-ngl`` ones; the output layer
  (``output.*``, ``output_norm.*``) only when ``-ngl`` exceeds the block
  count; the token embeddings stay in host memory.
- **KV cache**: per offloaded layer, ``n_ctx`` cells (rounded up to a
  multiple of 256, as llama.cpp pads) of ``n_head_kv * head_dim`` values
  for K and for V, in the cache types ``-ctk``/``-ctv`` (default f16; a
  quantised type takes its block size from ggml's table). ``-np`` splits
  the context between slots and does not change the total.
- **Compute buffer**: llama.cpp sizes it by reserving its worst-case graph
  for a micro-batch of ``b = min(-ub, n_ctx)`` tokens (default 512).
  Without flash attention the attention scores dominate: Ollama's formula
  for llama-family graphs, ``max(4 b (1 + 4 E + C (1 + H)), 4 b (E + V))``
  bytes (E: embedding width, C: context, H: heads, V: vocabulary). With
  flash attention (``-fa on``, needed by a quantised V cache) the scores
  are never materialised: ``max(2 b C + 64 b E, 4 b (E + V))`` bytes, the
  f16 attention mask plus the layer activations, fitted to llama.cpp's own
  reports (CPU backend, 0.3.16-era llama.cpp in llama-cpp-python 0.3.36).
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from swapcore.errors import ConfigError

__all__ = ["Estimate", "LlamaOptions", "estimate_command", "estimate_gguf", "parse_llama_options"]

KV_CELL_ALIGN = 256
"""llama.cpp pads the KV cache to a multiple of this many cells."""
DEFAULT_UBATCH = 512
"""llama.cpp's default micro-batch (``-ub``)."""

# Cache types llama.cpp accepts for -ctk/-ctv: (values per block, bytes per block).
_CACHE_TYPES: Mapping[str, tuple[int, int]] = {
    "f32": (1, 4),
    "f16": (1, 2),
    "bf16": (1, 2),
    "q8_0": (32, 34),
    "q4_0": (32, 18),
    "q4_1": (32, 20),
    "iq4_nl": (32, 18),
    "q5_0": (32, 22),
    "q5_1": (32, 24),
}


@attrs.frozen
class LlamaOptions:
    """The llama.cpp server options that change its memory (from a command line).

    ``n_ctx`` None means the model's training context (llama.cpp's default
    for ``-c 0``); ``n_gpu_layers`` None means every layer (llama-server's
    default offload); ``flash_attn`` None means off (the larger estimate).
    """

    model: str | None = None
    n_ctx: int | None = None
    n_gpu_layers: int | None = None
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    flash_attn: bool | None = None
    n_ubatch: int = DEFAULT_UBATCH
    n_parallel: int = 1


@attrs.frozen
class Estimate:
    """Accelerator memory a llama.cpp server needs for one model, in bytes.

    ``weights_bytes`` are the tensors placed on the accelerator,
    ``kv_cache_bytes`` the KV cache of the offloaded layers,
    ``overhead_bytes`` the compute buffer; ``total_bytes`` their sum.
    ``host_weights_bytes`` are the tensors left in host memory (the token
    embeddings, and layers not offloaded). ``n_ctx`` is the context in KV
    cells (padded as llama.cpp pads it); ``layers`` the offloaded blocks of
    ``n_layer``.
    """

    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    host_weights_bytes: int
    n_ctx: int
    layers: int
    n_layer: int
    architecture: str
    flash_attn: bool

    @property
    def total_bytes(self) -> int:
        """What the server needs on the accelerator: weights + KV cache + compute buffer."""
        return self.weights_bytes + self.kv_cache_bytes + self.overhead_bytes

    def to_dict(self) -> dict[str, Any]:
        """The estimate as JSON-ready data."""
        data = attrs.asdict(self)
        data["total_bytes"] = self.total_bytes
        return data


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def estimate_gguf(path: str | os.PathLike[str], options: LlamaOptions | None = None) -> Estimate:
    """Estimate a llama.cpp server's accelerator memory for the GGUF file at ``path``.

    Reads the metadata and the tensor table only (the tensor data is
    memory-mapped, never read). Raises :class:`~swapcore.ConfigError`
    naming the file when it cannot be read or lacks what the estimate
    needs, and :class:`ImportError` naming the ``memory`` extra when the
    ``gguf`` package is missing.
    """
    opts = options or LlamaOptions()
    try:
        import gguf
    except ImportError as exc:
        raise ImportError(
            "estimating from a GGUF file needs the gguf package: pip install 'swapcore[memory]'"
        ) from exc
    name = os.fspath(path)
    try:
        reader = gguf.GGUFReader(name)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot read it as a GGUF file: {exc}") from None
    arch = _field(reader, "general.architecture")
    if not isinstance(arch, str):
        raise ConfigError(f"{name}: no general.architecture in the GGUF metadata")

    def need(key: str) -> int:
        value = _field(reader, f"{arch}.{key}")
        if isinstance(value, list):  # per-layer values (some architectures): the largest
            value = max(value) if value else None
        if not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: no {arch}.{key} in the GGUF metadata")
        return int(value)

    n_layer = need("block_count")
    n_embd = need("embedding_length")
    n_head = need("attention.head_count")
    n_head_kv = _field(reader, f"{arch}.attention.head_count_kv", n_head)
    if isinstance(n_head_kv, list):
        n_head_kv = max(n_head_kv)
    key_length = _field(reader, f"{arch}.attention.key_length", n_embd // max(1, n_head))
    value_length = _field(reader, f"{arch}.attention.value_length", key_length)
    n_ctx_train = need("context_length")
    tokens = _field(reader, "tokenizer.ggml.tokens", [])
    n_vocab = int(_field(reader, f"{arch}.vocab_size", len(tokens) if tokens else 0))

    layers = n_layer if opts.n_gpu_layers is None else max(0, min(opts.n_gpu_layers, n_layer))
    output_on_gpu = opts.n_gpu_layers is None or opts.n_gpu_layers > n_layer
    first_offloaded = n_layer - layers
    block = re.compile(r"^blk\.(\d+)\.")
    on_gpu = on_host = 0
    for tensor in reader.tensors:
        size = int(tensor.n_bytes)
        match = block.match(tensor.name)
        if match is not None:
            gpu = int(match.group(1)) >= first_offloaded
        elif tensor.name.startswith("token_embd"):
            gpu = False
        else:
            gpu = output_on_gpu
        if gpu:
            on_gpu += size
        else:
            on_host += size

    n_ctx = opts.n_ctx or n_ctx_train
    cells = math.ceil(n_ctx / KV_CELL_ALIGN) * KV_CELL_ALIGN
    kv = (
        layers
        * cells
        * (
            _cache_bytes(opts.cache_type_k, int(n_head_kv) * int(key_length), "-ctk")
            + _cache_bytes(opts.cache_type_v, int(n_head_kv) * int(value_length), "-ctv")
        )
    )
    flash = bool(opts.flash_attn) or opts.cache_type_v not in ("f16", "f32", "bf16")
    batch = min(opts.n_ubatch, cells)
    if flash:
        graph = 2 * batch * cells + 64 * batch * n_embd
    else:
        graph = 4 * batch * (1 + 4 * n_embd + cells * (1 + n_head))
    overhead = max(graph, 4 * batch * (n_embd + n_vocab)) if layers else 0
    return Estimate(
        weights_bytes=on_gpu,
        kv_cache_bytes=kv,
        overhead_bytes=overhead,
        host_weights_bytes=on_host,
        n_ctx=cells,
        layers=layers,
        n_layer=n_layer,
        architecture=arch,
        flash_attn=flash,
    )


def _cache_bytes(cache_type: str, values: int, flag: str) -> int:
    layout = _CACHE_TYPES.get(cache_type.lower())
    if layout is None:
        raise ConfigError(
            f"{flag}: unknown cache type {cache_type!r} (known: {', '.join(_CACHE_TYPES)})"
        )
    per_block, block_bytes = layout
    if values % per_block:
        raise ConfigError(
            f"{flag} {cache_type}: a row of {values} values is not a multiple of {per_block}"
        )
    return values // per_block * block_bytes


_FLAGS = {
    "-m": "model",
    "--model": "model",
    "-c": "n_ctx",
    "--ctx-size": "n_ctx",
    "--n_ctx": "n_ctx",  # llama-cpp-python's server
    "-ngl": "n_gpu_layers",
    "--gpu-layers": "n_gpu_layers",
    "--n-gpu-layers": "n_gpu_layers",
    "--n_gpu_layers": "n_gpu_layers",
    "-ctk": "cache_type_k",
    "--cache-type-k": "cache_type_k",
    "-ctv": "cache_type_v",
    "--cache-type-v": "cache_type_v",
    "-ub": "n_ubatch",
    "--ubatch-size": "n_ubatch",
    "-np": "n_parallel",
    "--parallel": "n_parallel",
    "-fa": "flash_attn",
    "--flash-attn": "flash_attn",
}
_INTS = ("n_ctx", "n_gpu_layers", "n_ubatch", "n_parallel")


def _is_python(executable: str) -> bool:
    name = os.path.basename(executable)
    return name.startswith("python") or name in ("py", "pypy", "pypy3")


def parse_llama_options(command: str | Sequence[str]) -> LlamaOptions:
    """The memory-relevant options of a llama.cpp server command line.

    Understands ``-m``, ``-c``, ``-ngl``, ``-ctk``, ``-ctv``, ``-ub``,
    ``-np`` and ``-fa`` (``on``/``off``/``auto``, or bare) in their short and
    long forms, as ``--flag value`` or ``--flag=value``; ``python -m
    MODULE`` (as in ``python -m llama_cpp.server --model FILE``) is not a
    model file. A bad number raises
    :class:`~swapcore.ConfigError` naming the flag.
    """
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    found: dict[str, Any] = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        flag, equals, value = arg.partition("=")
        key = _FLAGS.get(flag)
        index += 1
        if key is None:
            continue
        if arg == "-m" and index >= 2 and _is_python(argv[index - 2]):
            index += 1  # python -m MODULE: Python's flag, not a model file
            continue
        if key == "flash_attn":
            if not equals and index < len(argv) and argv[index] in ("on", "off", "auto"):
                value, index = argv[index], index + 1
            found[key] = value in ("", "on")
            continue
        if not equals:
            if index >= len(argv):
                raise ConfigError(f"{flag}: needs a value")
            value, index = argv[index], index + 1
        if key in _INTS:
            try:
                number = int(value)
            except ValueError:
                raise ConfigError(f"{flag}: expected an integer, got {value!r}") from None
            found[key] = None if key == "n_gpu_layers" and number < 0 else number
            if key == "n_ctx" and number == 0:
                found[key] = None  # 0: the model's training context
        else:
            found[key] = value
    return LlamaOptions(**found)


def estimate_command(command: str | Sequence[str], *, n_ctx: int | None = None) -> Estimate:
    """Estimate the memory of the llama.cpp server ``command`` starts (its ``-m`` file).

    ``n_ctx`` overrides the command's context. Raises
    :class:`~swapcore.ConfigError` when the command names no model file.
    """
    options = parse_llama_options(command)
    model = options.model
    if model is None:
        raise ConfigError("the command names no model file (-m PATH)")
    if n_ctx is not None:
        options = attrs.evolve(options, n_ctx=n_ctx)
    return estimate_gguf(model, options)
