"""The README's first command runs examples/swap_decisions.py: keep it working."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_example(name: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _row(output: str, pattern: str) -> None:
    assert re.search(pattern, output, flags=re.MULTILINE), f"no line matches {pattern!r}"


def test_swap_decisions_example() -> None:
    done = _run_example("swap_decisions.py")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert out.startswith("Groups (llama-swap `groups:`)\n")
    _row(out, r"^  \(default\) +whisper +\(swap, exclusive\)$")
    # Groups: chat members swap; whisper, in the exclusive default group, stops
    # the chat model but not the persistent embedding pair.
    _row(
        out,
        r"^4  qwen-14b +nomic-embed, llama-8b, bge-rerank +llama-8b +same group 'chat' \(swap\)$",
    )
    _row(
        out,
        r"^7  whisper +nomic-embed, bge-rerank, llama-8b +llama-8b +"
        r"'\(default\)' is exclusive, 'chat' is not persistent$",
    )
    # Matrix: the coder needs its own set, and reloading it costs 4.
    assert (
        "\nSwap matrix (llama-swap `matrix:`)\n  rag    = embed & rerank & (llama | qwen)\n" in out
    )
    _row(out, r"^5  coder-32b +nomic-embed, bge-rerank, qwen-14b +bge-rerank, qwen-14b +set 'code'")
    _row(out, r"^6  llama-8b +nomic-embed, coder-32b +coder-32b +set 'rag' .*cost 4$")
    _row(out, r"^7  whisper +nomic-embed, llama-8b +nomic-embed +set 'speech' .*cost 1$")
