"""The fake model server's answers: reply tokens, message text, embeddings, usage."""

from __future__ import annotations

import hashlib
import itertools
import math
import struct
from typing import Any

from swapcore.fakemodel._wire import _BadRequest


def _reply_tokens(prompt: str, count: int) -> list[str]:
    """``count`` tokens that repeat the prompt: "You said: <prompt> You said: ..."."""
    words = ["You", "said:", *prompt.split()] if prompt.split() else ["You", "said", "nothing."]
    return [("" if i == 0 else " ") + words[i % len(words)] for i in range(count)]


def _text(content: object) -> str:
    """The text of a message content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (p.get("text") for p in content if isinstance(p, dict))
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def _embedding_inputs(raw: object) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        if all(isinstance(x, str) for x in raw):
            return list(raw)
        if all(isinstance(x, int) for x in raw):
            return [" ".join(map(str, raw))]
        if all(isinstance(x, list) and all(isinstance(i, int) for i in x) for x in raw):
            return [" ".join(map(str, x)) for x in raw]
    raise _BadRequest(
        "'input' must be a string, a list of strings or a list of token arrays", param="input"
    )


def _embedding(text: str, dim: int) -> list[float]:
    """A unit vector of ``dim`` float32-exact values derived from sha256 of ``text``."""
    values: list[float] = []
    for block in itertools.count():
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        values += [int.from_bytes(digest[i : i + 4], "big") / 2**31 - 1.0 for i in range(0, 32, 4)]
        if len(values) >= dim:
            break
    values = values[:dim]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # Round through float32 so the float and base64 encodings carry the same numbers.
    packed = struct.pack(f"<{dim}f", *(v / norm for v in values))
    return list(struct.unpack(f"<{dim}f", packed))


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))
