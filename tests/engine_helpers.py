"""A real inference engine for tests: a tiny random-weight llama GGUF and its server.

``write_tiny_llama`` writes a llama-architecture GGUF file with the ``gguf``
package: a few layers of small seeded random weights and a byte-level
SentencePiece ("llama") vocabulary of 260 tokens. llama.cpp loads it in
milliseconds on a CPU and generates real tokens; the output rows of the
printable ASCII bytes are weighted up, so what it generates is printable text
(valid UTF-8, one character per token) rather than stray bytes or an early
end-of-sequence.

``engine_command`` serves such a file with llama-cpp-python's OpenAI-compatible
server (``python -m llama_cpp.server``), which answers ``GET /v1/models``,
``POST /v1/chat/completions`` (streamed as server-sent events ending in
``data: [DONE]``) and ``/v1/completions``; it has no ``/health``. It loads the
model before it starts listening, so the first answer to ``/v1/models``
means the model is loaded.

Both need optional test dependencies (llama-cpp-python with its ``server``
extra, and gguf): ``requires_engine`` skips a test when they are absent.
``EngineServer`` runs the server as a subprocess for a test.

Measured with llama-cpp-python 0.3.36 (CPU build) on 2 shared cores:

- Writing the default file (2 layers, 64 wide, 0.63 MiB as f32): ~0.2 s.
- ``llama_cpp.Llama(path)`` in-process: ~10 ms; the first generation a few ms.
- ``engine_command`` from spawn to the first 200 from ``/v1/models``:
  0.5-1.0 s (median 0.95 s under load), nearly all of it Python importing
  llama_cpp, fastapi, pydantic and sse_starlette (``import llama_cpp.server.app,
  uvicorn`` alone takes 0.5-0.9 s). On SIGTERM, uvicorn shuts down in
  0.1-0.2 s and re-raises the signal: the exit status is -15, not 0.

With ``--verbose true`` llama.cpp logs on stderr (the examples are the
default file with ``n_ctx=256``); these lines give the buffer sizes, always
in MiB with two decimals, the name padded with spaces::

    print_info: file size   = 0.63 MiB (32.00 BPW)
    load_tensors:   CPU_Mapped model buffer size =     0.63 MiB
    llama_context:        CPU  output buffer size =     0.00 MiB
    llama_kv_cache:        CPU KV buffer size =     0.12 MiB
    llama_kv_cache: size =    0.12 MiB (   256 cells,   2 layers,  1/1 seqs), \
K (f16):    0.06 MiB, V (f16):    0.06 MiB
    sched_reserve:        CPU compute buffer size =     1.69 MiB

There may be one ``model buffer size`` line per buffer type: an f16 file on
a CPU with AMX logs ``AMX model buffer size =     0.25 MiB`` and
``CPU_Mapped model buffer size =     0.31 MiB`` (the model is their sum).
With a GPU the names are the backend's (e.g. ``CUDA0``). An in-process
``Llama`` also logs ``~llama_context:        CPU compute buffer size is
0.8462 MiB, matches expectation of   0.8462 MiB`` when it is freed; the
server, killed by its re-raised signal, does not. The lines come before
uvicorn's ``INFO:     Uvicorn running on http://127.0.0.1:PORT``, since the
server loads the model before it listens. llama.cpp rounds ``n_ctx`` up to a
multiple of 256 (``--n_ctx 64`` gives 256 KV cells).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from system_helpers import free_port

ENGINE_SKIP_REASON = (
    "needs llama-cpp-python[server] and gguf (optional test dependencies; "
    ".ci/run installs them: pip install -e '.[engine-tests]')"
)

# What `python -m llama_cpp.server` imports (llama-cpp-python's `server` extra),
# and what write_tiny_llama needs.
ENGINE_MODULES = (
    "llama_cpp",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "uvicorn",
    "pydantic_settings",
    "gguf",
    "numpy",
)

ENGINE_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
"""The chat template stored in the file: ``role: content`` lines, then ``assistant: ``."""

# Token ids of the vocabulary: three special tokens, the 256 bytes, then "▁",
# SentencePiece's space (the tokenizer writes every space as "▁").
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
FIRST_BYTE_ID = 3
SPACE_ID = FIRST_BYTE_ID + 256
VOCAB_SIZE = SPACE_ID + 1


def missing_engine_module() -> str | None:
    """The first engine test dependency that cannot be imported, or None."""
    for name in ENGINE_MODULES:
        if importlib.util.find_spec(name) is None:
            return name
    return None


def _skip_reason() -> str:
    missing = missing_engine_module()
    return ENGINE_SKIP_REASON if missing is None else f"{ENGINE_SKIP_REASON}: no module {missing}"


if os.environ.get("SWAPCORE_REQUIRE_ENGINE") == "1" and missing_engine_module() is not None:
    # CI installs the engine: a broken install must fail the run, not skip quietly.
    raise RuntimeError(f"SWAPCORE_REQUIRE_ENGINE=1 but {_skip_reason()}")

requires_engine = pytest.mark.skipif(missing_engine_module() is not None, reason=_skip_reason())
"""Marks a test (or, as ``pytestmark``, a module) that needs the real engine.

It skips when an engine dependency is missing, unless ``SWAPCORE_REQUIRE_ENGINE=1``
(``.ci/run`` sets it), which makes importing this module fail instead.
"""


def write_tiny_llama(
    path: str | Path,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int | None = None,
    n_ff: int | None = None,
    n_ctx_train: int = 512,
    seed: int = 0,
    ftype: Literal["f32", "f16"] = "f32",
) -> Path:
    """Write a random-weight llama GGUF file at ``path`` and return its path.

    ``n_head_kv`` defaults to ``n_head`` (fewer KV heads is grouped-query
    attention), ``n_ff`` to ``4 * n_embd``. ``ftype="f16"`` stores the
    matrices as float16 (norm vectors stay float32, as llama.cpp's converters
    do). The same arguments always write the same bytes.
    """
    import gguf
    import numpy as np

    n_head_kv = n_head if n_head_kv is None else n_head_kv
    n_ff = 4 * n_embd if n_ff is None else n_ff
    if min(n_layer, n_embd, n_head, n_head_kv, n_ff, n_ctx_train) < 1:
        raise ValueError("write_tiny_llama: every size must be >= 1")
    if n_embd % n_head or (n_embd // n_head) % 2:
        raise ValueError(
            f"write_tiny_llama: n_embd {n_embd} must be n_head {n_head} x an even size"
        )
    if n_head % n_head_kv:
        raise ValueError(
            f"write_tiny_llama: n_head {n_head} must be a multiple of n_head_kv {n_head_kv}"
        )
    if ftype not in ("f32", "f16"):
        raise ValueError(f"write_tiny_llama: ftype must be 'f32' or 'f16', not {ftype!r}")
    head_dim = n_embd // n_head
    matrix_dtype = np.float16 if ftype == "f16" else np.float32
    rng = np.random.default_rng(seed)

    def matrix(rows: int, cols: int, scale: float = 0.02) -> Any:
        # numpy shape (rows, cols) is GGUF/ggml shape {cols, rows}: cols is the input size.
        return (rng.standard_normal((rows, cols)) * scale).astype(matrix_dtype)

    def ones(size: int) -> Any:
        return np.ones(size, dtype=np.float32)

    path = Path(path)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("swapcore tiny test llama")
    writer.add_context_length(n_ctx_train)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(
        gguf.LlamaFileType.MOSTLY_F16 if ftype == "f16" else gguf.LlamaFileType.ALL_F32
    )
    _add_byte_vocab(writer, gguf)

    writer.add_tensor("token_embd.weight", matrix(VOCAB_SIZE, n_embd, scale=1.0))
    for layer in range(n_layer):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", ones(n_embd))
        writer.add_tensor(f"{block}.attn_q.weight", matrix(n_head * head_dim, n_embd))
        writer.add_tensor(f"{block}.attn_k.weight", matrix(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"{block}.attn_v.weight", matrix(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"{block}.attn_output.weight", matrix(n_embd, n_head * head_dim))
        writer.add_tensor(f"{block}.ffn_norm.weight", ones(n_embd))
        writer.add_tensor(f"{block}.ffn_gate.weight", matrix(n_ff, n_embd))
        writer.add_tensor(f"{block}.ffn_up.weight", matrix(n_ff, n_embd))
        writer.add_tensor(f"{block}.ffn_down.weight", matrix(n_embd, n_ff))
    writer.add_tensor("output_norm.weight", ones(n_embd))
    output = matrix(VOCAB_SIZE, n_embd)
    # Logits are output @ h with h of RMS 1: rows of printable ASCII bytes with
    # 25x the scale take the argmax and nearly all of the sampled mass, so the
    # model "speaks" printable ASCII and hardly ever ends on its own (1,500
    # tokens sampled at temperature 0.8 over 3 seeds: all printable, no end).
    printable = slice(FIRST_BYTE_ID + 0x20, FIRST_BYTE_ID + 0x7F)
    output[printable] = matrix(0x7F - 0x20, n_embd, scale=0.5)
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_byte_vocab(writer: Any, gguf: Any) -> None:
    """A SentencePiece-style vocabulary: <unk>, <s>, </s>, <0x00>..<0xFF>, then "▁"."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{byte:02X}>" for byte in range(256)] + ["\u2581"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL]
    assert len(tokens) == len(types) == VOCAB_SIZE
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_unk_token_id(UNK_ID)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    # No "▁" before the text: the prompt stays one token per byte.
    writer.add_add_space_prefix(False)
    writer.add_chat_template(ENGINE_CHAT_TEMPLATE)


def engine_command(
    model_path: str | Path, port: int | str, *, n_ctx: int = 256, extra: Sequence[str] = ()
) -> list[str]:
    """The argv of ``python -m llama_cpp.server`` serving ``model_path`` on 127.0.0.1:``port``.

    CPU only, one thread, a fixed seed, a small context and batch; verbose,
    so the engine logs its buffer sizes on stderr. ``port`` may be the string
    ``"${PORT}"`` for a llama-swap ``cmd``. Run it with ``engine_env()``: the
    server takes settings from the environment too, and ``HOST``/``PORT``
    there override ``--host``/``--port``.
    """
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_batch",
        str(n_ctx),
        "--n_ubatch",
        str(n_ctx),
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
        "--n_gpu_layers",
        "0",
        "--use_mlock",
        "false",
        "--seed",
        "0",
        "--verbose",
        "true",
        *extra,
    ]


def engine_cmd_string(
    model_path: str | Path, *, n_ctx: int = 256, extra: Sequence[str] = ()
) -> str:
    """``engine_command`` as a shell-quoted string with ``--port ${PORT}``, for a ``cmd``."""
    argv = engine_command(model_path, 0, n_ctx=n_ctx, extra=extra)
    quoted = [shlex.quote(arg) for arg in argv]
    quoted[argv.index("--port") + 1] = "${PORT}"
    return " ".join(quoted)


def engine_env() -> dict[str, str]:
    """``os.environ`` without the variables ``llama_cpp.server`` would take as settings.

    Its settings read the environment (any field, case-insensitive, such as
    ``API_KEY`` or ``N_CTX``), ``HOST`` and ``PORT`` even override ``--host``
    and ``--port``, and ``CONFIG_FILE`` replaces the command line altogether.
    """
    from llama_cpp.server.settings import Settings

    names = {name.upper() for name in Settings.model_fields} | {"CONFIG_FILE"}
    return {k: v for k, v in os.environ.items() if k.upper() not in names}


class EngineServer:
    """``engine_command`` run as a subprocess on a free port, its output in ``log_path``.

    ``wait_ready`` waits (bounded) until ``GET /v1/models`` answers; ``close``
    always leaves the process killed and reaped.
    """

    def __init__(
        self,
        model_path: str | Path,
        log_path: str | Path,
        *,
        n_ctx: int = 256,
        extra: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        self._sink = self.log_path.open("w")
        self.process = subprocess.Popen(
            engine_command(model_path, self.port, n_ctx=n_ctx, extra=extra),
            stdout=self._sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=engine_env(),
        )

    @property
    def log(self) -> str:
        """Everything the server wrote so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Return once ``/v1/models`` answers 200; fail if the server exits or time runs out."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"llama_cpp.server exited with {self.process.returncode}:\n{self.log[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"llama_cpp.server not ready after {timeout:g} s:\n{self.log[-3000:]}")

    def close(self, timeout: float = 30.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``) and reap it."""
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=timeout)
        finally:
            self._sink.close()


_LOAD = """
import json, sys
import llama_cpp
args = json.loads(sys.argv[1])
extra = {}
if args["cache"] != "f16":
    types = {"f32": 0, "q8_0": 8, "q4_0": 2}
    extra = {"type_k": types[args["cache"]], "type_v": types[args["cache"]], "flash_attn": True}
llama_cpp.Llama(args["path"], n_ctx=args["ctx"], verbose=True, **extra)
"""
_BUFFERS = {
    # The mapped file is the model: a CPU with AMX also logs an "AMX model buffer",
    # a repacked copy of the f16 matrices for its own kernels, which no GPU backend makes.
    "model": r"^load_tensors: +CPU(?:_Mapped)? model buffer size = +([\d.]+) MiB$",
    "kv": r"^llama_kv_cache: +\S+ KV buffer size = +([\d.]+) MiB$",
    "compute": r"^sched_reserve: +\S+ compute buffer size = +([\d.]+) MiB$",
}


def llama_cpp_buffers(path: str | Path, *, n_ctx: int, cache: str = "f16") -> dict[str, float]:
    """The model, KV and compute buffers (MiB) llama.cpp reports when it loads ``path``.

    Loads the file with llama-cpp-python in a subprocess (llama.cpp logs on
    the process's stderr, in MiB with two decimals); a cache type other than
    f16 (f32, q8_0, q4_0) turns flash attention on, as llama.cpp requires for
    a quantised V cache.
    """
    import json
    import re

    args = json.dumps({"path": str(path), "ctx": n_ctx, "cache": cache})
    run = subprocess.run(
        [sys.executable, "-c", _LOAD, args], capture_output=True, text=True, timeout=120
    )
    if run.returncode:
        raise RuntimeError(f"llama-cpp-python could not load {path}:\n{run.stderr[-2000:]}")
    sizes = {}
    for name, pattern in _BUFFERS.items():
        found = re.findall(pattern, run.stderr, re.M)
        if not found:
            raise RuntimeError(f"no {name} buffer in llama.cpp's log:\n{run.stderr[-2000:]}")
        sizes[name] = float(found[0])
    return sizes
