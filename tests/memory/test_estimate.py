"""GGUF estimates: weights exact, KV cache in closed form, options from command lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("gguf", reason="the memory extra (gguf) is not installed")

from engine_helpers import VOCAB_SIZE, write_tiny_llama
from swapcore import ConfigError
from swapcore.cli import main
from swapcore.memory import LlamaOptions, estimate_command, estimate_gguf, parse_llama_options

SHAPES = [
    # n_layer, n_embd, n_head, n_head_kv, ftype
    (2, 64, 4, 4, "f32"),
    (3, 128, 8, 2, "f16"),
    (4, 96, 6, 3, "f32"),
]


def tensor_bytes(
    n_layer: int, n_embd: int, n_head: int, n_head_kv: int, ftype: str
) -> dict[str, int]:
    """The closed form of what write_tiny_llama writes: matrices in ftype, norms in f32."""
    size = 2 if ftype == "f16" else 4
    kv_dim = n_head_kv * (n_embd // n_head)
    n_ff = 4 * n_embd
    layer = 2 * n_embd * 4 + size * (2 * n_embd * n_embd + 2 * kv_dim * n_embd + 3 * n_ff * n_embd)
    return {
        "token_embd": size * VOCAB_SIZE * n_embd,
        "layer": layer,
        "output": n_embd * 4 + size * VOCAB_SIZE * n_embd,
    }


@pytest.mark.parametrize(("n_layer", "n_embd", "n_head", "n_head_kv", "ftype"), SHAPES)
def test_weights_are_exact_and_placed_as_llama_cpp_places_them(
    tmp_path: Path, n_layer: int, n_embd: int, n_head: int, n_head_kv: int, ftype: str
) -> None:
    path = write_tiny_llama(
        tmp_path / "m.gguf", n_layer=n_layer, n_embd=n_embd, n_head=n_head,
        n_head_kv=n_head_kv, ftype=ftype,  # type: ignore[arg-type]
    )  # fmt: skip
    parts = tensor_bytes(n_layer, n_embd, n_head, n_head_kv, ftype)
    full = estimate_gguf(path)
    assert full.weights_bytes == n_layer * parts["layer"] + parts["output"]
    assert full.host_weights_bytes == parts["token_embd"]
    assert full.layers == n_layer and full.n_layer == n_layer
    one = estimate_gguf(path, LlamaOptions(n_gpu_layers=1))
    assert one.weights_bytes == parts["layer"]  # the last block only; output stays in host
    assert (
        one.host_weights_bytes
        == parts["token_embd"] + (n_layer - 1) * parts["layer"] + parts["output"]
    )
    none = estimate_gguf(path, LlamaOptions(n_gpu_layers=0))
    assert (none.weights_bytes, none.kv_cache_bytes, none.overhead_bytes) == (0, 0, 0)


@pytest.mark.parametrize(
    ("ctx", "cache", "per_value"),
    [(512, "f16", 2.0), (1000, "f32", 4.0), (4096, "q8_0", 34 / 32), (2048, "q4_0", 18 / 32)],
)
def test_kv_cache_is_the_closed_form(
    tmp_path: Path, ctx: int, cache: str, per_value: float
) -> None:
    n_layer, n_embd, n_head, n_head_kv = 3, 128, 8, 2
    path = write_tiny_llama(
        tmp_path / "m.gguf", n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_head_kv=n_head_kv
    )
    estimate = estimate_gguf(path, LlamaOptions(n_ctx=ctx, cache_type_k=cache, cache_type_v=cache))
    cells = -(-ctx // 256) * 256  # llama.cpp pads to 256 cells
    closed = n_layer * cells * 2 * n_head_kv * (n_embd // n_head) * per_value
    assert estimate.n_ctx == cells
    assert estimate.kv_cache_bytes == closed
    assert estimate.flash_attn is (cache not in ("f16", "f32"))


def test_the_training_context_is_the_default(tmp_path: Path) -> None:
    path = write_tiny_llama(tmp_path / "m.gguf", n_ctx_train=768)
    assert estimate_gguf(path).n_ctx == 768


def test_command_lines_are_read_like_llama_server(tmp_path: Path) -> None:
    path = write_tiny_llama(tmp_path / "m.gguf")
    options = parse_llama_options(
        f"llama-server --port 8080 -m {path} -c 2048 -ngl 99 -ctk q8_0 --cache-type-v=q8_0"
        " -fa on -np 4 -ub 256"
    )
    assert options == LlamaOptions(
        model=str(path), n_ctx=2048, n_gpu_layers=99, cache_type_k="q8_0",
        cache_type_v="q8_0", flash_attn=True, n_ubatch=256, n_parallel=4,
    )  # fmt: skip
    assert parse_llama_options(["srv", "-fa", "-c", "0", "-ngl", "-1"]) == LlamaOptions(
        flash_attn=True
    )
    estimate = estimate_command(f"llama-server -m {path} -c 1024", n_ctx=512)
    assert estimate.n_ctx == 512
    with pytest.raises(ConfigError, match="-c: expected an integer, got 'lots'"):
        parse_llama_options("srv -c lots")
    with pytest.raises(ConfigError, match="names no model file"):
        estimate_command("srv -c 512")


def test_bad_files_name_themselves(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    with pytest.raises(ConfigError, match=f"{junk}: cannot read it as a GGUF file"):
        estimate_gguf(junk)


def test_the_cli_prints_the_four_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_tiny_llama(tmp_path / "m.gguf")
    assert main(["estimate", str(path), "--ctx", "512", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (
        data["total_bytes"]
        == data["weights_bytes"] + data["kv_cache_bytes"] + data["overhead_bytes"]
    )
    assert data["n_ctx"] == 512
    assert main(["estimate", str(path)]) == 0
    out = capsys.readouterr().out
    for name in ("weights_bytes", "kv_cache_bytes", "overhead_bytes", "total_bytes"):
        assert name in out
    assert main(["estimate", str(tmp_path / "missing.gguf")]) == 2
    assert "missing.gguf: cannot read it as a GGUF file" in capsys.readouterr().err
    assert sys.modules.get("swapcore.memory") is not None


def test_check_shows_the_estimate_of_each_model_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("yaml")
    model = write_tiny_llama(tmp_path / "m.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"junk")
    config = tmp_path / "config.yaml"
    config.write_text(
        "models:\n"
        f'  tiny:\n    cmd: "llama-server --port ${{PORT}} -m {model} -c 1024 -ngl 1"\n'
        f'  junk:\n    cmd: "llama-server --port ${{PORT}} -m {junk}"\n'
        '  gone:\n    cmd: "llama-server --port ${PORT} -m /nowhere/m.gguf"\n'
    )
    assert main(["check", str(config), "--json"]) == 0
    models = {m["id"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    tiny = models["tiny"]["estimate"]
    assert (tiny["n_ctx"], tiny["layers"]) == (1024, 1)
    assert tiny["total_bytes"] == estimate_command(models["tiny"]["cmd"]).total_bytes
    assert "cannot read it as a GGUF file" in models["junk"]["estimate"]["error"]
    assert models["gone"]["estimate"] is None
    assert main(["check", str(config)]) == 0
    text = capsys.readouterr().out
    assert "estimate: 0.01 GiB (weights" in text and "1 of 2 layers, 1024 KV cells" in text
    assert "estimate: unavailable" in text
