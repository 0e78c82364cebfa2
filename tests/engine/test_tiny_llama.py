"""The tiny random-weight llama GGUF in a real inference engine (llama-cpp-python).

The file is written in several shapes and loaded in-process by ``llama_cpp.Llama``;
then ``python -m llama_cpp.server`` serves it as a real subprocess on a free
127.0.0.1 port, and the ``openai`` package and httpx talk to it: the model
list, a plain chat completion and a streamed one (real server-sent events).
Every wait is bounded, and the server is always killed and reaped.
"""

from __future__ import annotations

import json
import re
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine_helpers import (
    EOS_ID,
    VOCAB_SIZE,
    EngineServer,
    requires_engine,
    write_tiny_llama,
)

pytestmark = requires_engine
httpx = pytest.importorskip("httpx")

REQUEST_TIMEOUT = 30.0
PRINTABLE = set(string.printable) - set("\t\n\r\x0b\x0c")
MAX_TOKENS = 12


# ------------------------------------------------------------------ the file


SHAPES = {
    "2-layers-f32": {},
    "2-layers-f16": {"ftype": "f16"},
    "gqa-8-heads-2-kv": {"n_layer": 3, "n_head": 8, "n_head_kv": 2},
    "1-layer-mqa-f16": {"n_layer": 1, "n_head": 4, "n_head_kv": 1, "ftype": "f16"},
    "wider-128": {"n_embd": 128, "n_head": 8, "n_ff": 320, "n_ctx_train": 1024},
}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_the_file_loads_and_generates(
    shape: dict[str, Any], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import llama_cpp

    path = write_tiny_llama(tmp_path / "tiny.gguf", **shape)
    llm = llama_cpp.Llama(str(path), n_ctx=64, n_threads=1, seed=0, verbose=True)
    try:
        n_head = shape.get("n_head", 4)
        expected = {
            "general.architecture": "llama",
            "llama.block_count": str(shape.get("n_layer", 2)),
            "llama.embedding_length": str(shape.get("n_embd", 64)),
            "llama.attention.head_count": str(n_head),
            "llama.attention.head_count_kv": str(shape.get("n_head_kv", n_head)),
            "llama.feed_forward_length": str(shape.get("n_ff", 4 * shape.get("n_embd", 64))),
            "llama.context_length": str(shape.get("n_ctx_train", 512)),
            "general.file_type": "1" if shape.get("ftype") == "f16" else "0",
        }
        assert {key: llm.metadata.get(key) for key in expected} == expected
        assert llm.n_vocab() == VOCAB_SIZE
        assert llm.token_bos() == 1
        assert llm.token_eos() == EOS_ID
        # Byte-level vocabulary: text round-trips through the tokenizer.
        tokens = llm.tokenize(b"hi there", add_bos=False)
        assert len(tokens) == len(b"hi there")
        assert llm.detokenize(tokens) == b"hi there"

        out = llm("The tiny model says", max_tokens=MAX_TOKENS, temperature=0.0)
        assert isinstance(out, dict)  # not streamed
        text = out["choices"][0]["text"]
        assert out["usage"]["completion_tokens"] == MAX_TOKENS
        assert len(text) == MAX_TOKENS
        assert set(text) <= PRINTABLE
        # Greedy decoding is deterministic.
        again = llm("The tiny model says", max_tokens=MAX_TOKENS, temperature=0.0)
        assert isinstance(again, dict)
        assert again["choices"][0]["text"] == text
    finally:
        llm.close()
    log = capfd.readouterr().err
    ftype = "F16" if shape.get("ftype") == "f16" else "all F32"
    assert re.search(rf"^print_info: file type += {ftype} *$", log, re.M), log[-2000:]


def test_the_same_arguments_write_the_same_bytes(tmp_path: Path) -> None:
    first = write_tiny_llama(tmp_path / "a.gguf", seed=3)
    second = write_tiny_llama(tmp_path / "b.gguf", seed=3)
    other = write_tiny_llama(tmp_path / "c.gguf", seed=4)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    f16 = write_tiny_llama(tmp_path / "d.gguf", seed=3, ftype="f16")
    assert f16.stat().st_size < first.stat().st_size


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_embd": 60, "n_head": 8}, "n_embd 60 must be n_head 8 x an even size"),
        ({"n_head": 4, "n_head_kv": 3}, "n_head 4 must be a multiple of n_head_kv 3"),
        ({"n_layer": 0}, "every size must be >= 1"),
        ({"ftype": "q4"}, "ftype must be 'f32' or 'f16', not 'q4'"),
    ],
)
def test_impossible_shapes_are_refused(
    kwargs: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        write_tiny_llama(tmp_path / "bad.gguf", **kwargs)
    assert not (tmp_path / "bad.gguf").exists()


# ------------------------------------------------------------------ the server


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineServer]:
    directory = tmp_path_factory.mktemp("engine")
    model = write_tiny_llama(directory / "tiny.gguf")
    server = EngineServer(model, directory / "server.log", extra=("--model_alias", "tiny"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()


def test_the_server_lists_its_model(engine: EngineServer) -> None:
    openai = pytest.importorskip("openai")
    listed = httpx.get(f"{engine.url}/v1/models", timeout=REQUEST_TIMEOUT)
    assert listed.status_code == 200
    assert [m["id"] for m in listed.json()["data"]] == ["tiny"]
    client = openai.OpenAI(
        base_url=f"{engine.url}/v1", api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT
    )
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_a_chat_completion_through_openai(engine: EngineServer) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(
        base_url=f"{engine.url}/v1", api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT
    )
    completion = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=MAX_TOKENS,
        temperature=0.0,
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == MAX_TOKENS
    assert len(choice.message.content or "") == MAX_TOKENS


def test_a_streamed_chat_completion_through_openai(engine: EngineServer) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(
        base_url=f"{engine.url}/v1", api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT
    )
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=MAX_TOKENS,
        temperature=0.0,
        stream=True,
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    # One token per chunk: the text arrives in as many pieces as tokens.
    assert len(pieces) == MAX_TOKENS
    assert all(len(piece) == 1 for piece in pieces)
    assert chunks[-1].choices[0].finish_reason == "length"
    # The same greedy prompt, not streamed, gives the same text.
    plain = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=MAX_TOKENS,
        temperature=0.0,
    )
    assert "".join(pieces) == plain.choices[0].message.content


def test_server_sent_events_through_httpx(engine: EngineServer) -> None:
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": MAX_TOKENS,
        "stream": True,
    }
    events: list[str] = []
    with httpx.stream(
        "POST", f"{engine.url}/v1/chat/completions", json=body, timeout=REQUEST_TIMEOUT
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events.extend(
            line.removeprefix("data: ")
            for line in response.iter_lines()
            if line.startswith("data:")
        )
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    content = [c["choices"][0]["delta"].get("content") for c in chunks]
    assert len([piece for piece in content if piece]) == MAX_TOKENS
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_the_engine_logs_its_buffer_sizes(engine: EngineServer) -> None:
    # The formats the module docstring of engine_helpers records.
    log = engine.log
    assert re.search(r"^load_tensors: +\S+ model buffer size = +[\d.]+ MiB$", log, re.M)
    assert re.search(r"^llama_kv_cache: +CPU KV buffer size = +[\d.]+ MiB$", log, re.M)
    assert re.search(r"^sched_reserve: +CPU compute buffer size = +[\d.]+ MiB$", log, re.M)
    assert re.search(r"^llama_kv_cache: size = +[\d.]+ MiB \( *256 cells, +2 layers,", log, re.M)


def test_the_server_stops_on_sigterm(tmp_path: Path) -> None:
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    server = EngineServer(model, tmp_path / "server.log")
    try:
        server.wait_ready()
        server.process.terminate()
        status = server.process.wait(timeout=REQUEST_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("llama_cpp.server did not exit on SIGTERM")
    finally:
        server.close()
    # uvicorn shuts down, then re-raises the signal: the exit status says SIGTERM.
    assert status in (0, -15), server.log[-2000:]
    assert "Application shutdown complete." in server.log
