"""``swapcore serve`` with ``gpus:``: the demo's four fake models placed on two fake GPUs.

Real subprocesses on 127.0.0.1 (the gateway and fake models). The fake
models use no GPU; each reports the ``CUDA_VISIBLE_DEVICES`` it was started
with, which is what a real engine would run on. Every wait is bounded.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from test_serve import Serve, chat, marker, model_pids  # noqa: F401

from swapcore.config import demo_yaml
from system_helpers import port_block

httpx = pytest.importorskip("httpx")
pytest.importorskip("aiohttp")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")

GIB = 1 << 30
# Ports go to the models in sorted id order.
ORDER = ("embed-small", "llama-8b", "mistral-24b", "qwen-7b")


def gpu_demo(mark: str, start_port: int) -> str:
    text = demo_yaml("gpus", python=sys.executable, load=0.05, start_port=start_port)
    return text.replace("--model-name ${MODEL_ID}", f"--model-name {mark}-${{MODEL_ID}}")


def visible(start_port: int, model: str) -> Any:
    port = start_port + ORDER.index(model)
    stats = httpx.get(f"http://127.0.0.1:{port}/fake/stats", timeout=5).json()
    return stats["visible_devices"], stats["pid"]


def listing(url: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    body = httpx.get(f"{url}/running", timeout=5).json()
    return {entry["model"]: entry for entry in body["running"]}, body["evictions"]


def test_three_models_fill_two_gpus_and_the_big_one_evicts_with_a_reason(
    marker: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    start = port_block(len(ORDER))
    path = tmp_path / "gpus.yaml"
    path.write_text(gpu_demo(marker, start))
    serve = Serve(tmp_path, str(path))
    try:
        serve.wait_healthy()
        for model in ("embed-small", "qwen-7b", "llama-8b"):
            chat(serve.url, model)
        running, evictions = listing(serve.url)
        assert evictions == []
        assert {m: running[m]["placement"] for m in ("embed-small", "qwen-7b", "llama-8b")} == {
            "embed-small": {"0": 2 * GIB},
            "qwen-7b": {"0": 14 * GIB},
            "llama-8b": {"1": 16 * GIB},
        }
        assert visible(start, "embed-small")[0] == "0"
        assert visible(start, "llama-8b")[0] == "1"
        qwen_devices, qwen_pid = visible(start, "qwen-7b")
        assert qwen_devices == "0"

        # 30 GiB: 8 + 8 free is not enough; the least recently used chat model
        # (qwen, cost 1) goes to sleep, the embedder (cost 10) stays.
        chat(serve.url, "mistral-24b")
        running, evictions = listing(serve.url)
        assert running["mistral-24b"]["placement"] == {"0": 22 * GIB, "1": 8 * GIB}
        assert visible(start, "mistral-24b")[0] == "0,1"
        assert running["qwen-7b"]["state"] == "sleeping"
        [eviction] = evictions
        assert eviction["model"] == "mistral-24b"
        assert eviction["evicted"] == eviction["asleep"] == ["qwen-7b"]
        assert eviction["reason"] == (
            "needs 30 GiB on one device, or over several; GPU 0 has 8 GiB free after keeping "
            "embed-small, qwen-7b, GPU 1 has 8 GiB free after keeping llama-8b; evicting "
            "qwen-7b makes room: 22 GiB on GPU 0 + 8 GiB on GPU 1"
        )

        # qwen's server sleeps holding GPU 0: it wakes there, so mistral must go.
        chat(serve.url, "qwen-7b")
        running, evictions = listing(serve.url)
        assert visible(start, "qwen-7b") == ("0", qwen_pid)
        assert running["qwen-7b"]["placement"] == {"0": 14 * GIB}
        assert "mistral-24b" not in running or running["mistral-24b"]["state"] != "ready"
        assert evictions[0]["model"] == "qwen-7b" and evictions[0]["evicted"] == ["mistral-24b"]
        assert "evicting mistral-24b makes room: 14 GiB on GPU 0" in evictions[0]["reason"]
        assert "swap to 'mistral-24b' evicts qwen-7b: needs 30 GiB" in serve.stderr
    finally:
        assert serve.stop() == 0
    assert not model_pids(marker)
