"""The fake model server's ASGI app (see :mod:`swapcore.fakemodel`)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import os
import struct
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from swapcore.errors import ConfigError
from swapcore.fakemodel._payloads import (
    _embedding,
    _embedding_inputs,
    _include_usage,
    _reply_tokens,
    _text,
    _usage,
)
from swapcore.fakemodel._sleep import SLEEP_PATHS, SleepMode
from swapcore.fakemodel._wire import (
    _SSE,
    _BadRequest,
    _lifespan,
    _read_json,
    _Receive,
    _Scope,
    _Send,
    _send_error,
    _send_json,
)

__all__ = ["CRASH_EXIT_CODE", "HANG_MARKER", "FakeModel"]

CRASH_EXIT_CODE = 70
"""Exit status of a deliberate crash (``/fake/crash``, ``crash_after_tokens``)."""
HANG_MARKER = "[[fake-hang]]"
"""In a prompt, makes that completion hang after its first token."""


def _crash_now() -> NoReturn:
    sys.stderr.write(f"fake-model: crashing on purpose (exit code {CRASH_EXIT_CODE})\n")
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)


class FakeModel:
    """An ASGI app that behaves like a small OpenAI-compatible model server.

    Keyword arguments (invalid values raise ``ConfigError`` naming the field):
    ``model_name`` (listed by ``/v1/models``; replies echo the request's
    ``model``, or this), ``load`` (seconds before ``/health`` turns 200),
    ``tokens`` (completion length), ``token_delay`` (seconds before each
    streamed token), ``embedding_dim``, ``crash_after_tokens`` (None: never),
    ``hang_after_tokens`` (None: never), ``sleep_mode`` (serve vLLM's
    ``/sleep``, ``/wake_up`` and ``/is_sleeping``), ``sleep_time`` and
    ``wake_time`` (the seconds a sleep and a wake take),
    ``clock`` (monotonic seconds; inject one to control loading in tests) and
    ``crash`` (called for a deliberate crash; the default ends the process
    with ``os._exit``, so in-process tests inject one that raises).

    Every answer is a deterministic function of the request, apart from the
    ``id`` counter and ``created`` timestamp.
    """

    def __init__(
        self,
        *,
        model_name: str = "fake-model",
        load: float = 0.0,
        tokens: int = 16,
        token_delay: float = 0.0,
        embedding_dim: int = 8,
        crash_after_tokens: int | None = None,
        hang_after_tokens: int | None = None,
        sleep_mode: bool = False,
        sleep_time: float = 0.05,
        wake_time: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        crash: Callable[[], None] = _crash_now,
    ) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise ConfigError(f"model_name: must be a non-empty string, got {model_name!r}")
        _check_number("load", load, minimum=0.0)
        _check_number("token_delay", token_delay, minimum=0.0)
        _check_number("sleep_time", sleep_time, minimum=0.0)
        _check_number("wake_time", wake_time, minimum=0.0)
        if not isinstance(sleep_mode, bool):
            raise ConfigError(f"sleep_mode: must be a bool, got {sleep_mode!r}")
        _check_int("tokens", tokens, minimum=1)
        _check_int("embedding_dim", embedding_dim, minimum=1)
        if crash_after_tokens is not None:
            _check_int("crash_after_tokens", crash_after_tokens, minimum=0)
        if hang_after_tokens is not None:
            _check_int("hang_after_tokens", hang_after_tokens, minimum=0)
        self.model_name = model_name
        self.load = float(load)
        self.tokens = tokens
        self.token_delay = float(token_delay)
        self.embedding_dim = embedding_dim
        self.crash_after_tokens = crash_after_tokens
        self.hang_after_tokens = hang_after_tokens
        self.sleep = (
            SleepMode(model=model_name, sleep_time=float(sleep_time), wake_time=float(wake_time))
            if sleep_mode
            else None
        )
        self._clock = clock
        self._crash = crash
        self._born = clock()
        self._ids = itertools.count(1)

    @property
    def ready(self) -> bool:
        """True once ``load`` seconds have passed since the app was built."""
        return self._clock() - self._born >= self.load

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """The ASGI entry point (HTTP and lifespan; other scopes are refused)."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        handler = _ROUTES.get((method, path))
        if path in SLEEP_PATHS and self.sleep is None:
            handler = None  # vLLM without --enable-sleep-mode has no such route
        if handler is None:
            allowed = path in _ROUTES_BY_PATH and not (path in SLEEP_PATHS and self.sleep is None)
            status = 405 if allowed else 404
            message = f"{method} not allowed on {path}" if allowed else f"no route for {path}"
            await _send_error(send, status, message, "invalid_request_error")
            return
        if path.startswith("/v1/") and not self.ready:
            await _send_error(send, 503, "Loading model", "unavailable_error")
            return
        sleep = self.sleep
        if (
            sleep is not None
            and not sleep.serving
            and path.startswith("/v1/")
            and path != "/v1/models"
        ):
            await _send_error(
                send,
                503,
                f"model {self.model_name} is {sleep.state}; POST /wake_up to serve requests",
                "unavailable_error",
            )
            return
        try:
            if path in SLEEP_PATHS:
                await handler(self, {"query": scope.get("query_string", b"")}, send)
                return
            body = await _read_json(receive) if method == "POST" else {}
            await handler(self, body, send)
        except _BadRequest as exc:
            await _send_error(send, exc.status, str(exc), "invalid_request_error", exc.param)

    # ------------------------------------------------------------ endpoints

    async def _health(self, body: dict[str, Any], send: _Send) -> None:
        if self.ready:
            await _send_json(send, 200, {"status": "ok"})
        else:
            await _send_error(send, 503, "Loading model", "unavailable_error")

    async def _models(self, body: dict[str, Any], send: _Send) -> None:
        model = {"id": self.model_name, "object": "model", "created": 0, "owned_by": "swapcore"}
        await _send_json(send, 200, {"object": "list", "data": [model]})

    async def _chat(self, body: dict[str, Any], send: _Send) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest("'messages' must be a non-empty list", param="messages")
        if not all(isinstance(m, dict) for m in messages):
            raise _BadRequest("each message must be an object", param="messages")
        prompt = next(
            (_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
        )
        prompt_tokens = sum(len(_text(m.get("content")).split()) for m in messages)
        model, count, finish = self._shape(body)
        reply = _reply_tokens(prompt, count)
        rid, created = f"chatcmpl-fake{next(self._ids)}", int(time.time())
        usage = _usage(prompt_tokens, count)
        head = {"id": rid, "object": "chat.completion", "created": created, "model": model}
        head["system_fingerprint"] = "fake"
        hang_at = self._hang_at(prompt)
        if not body.get("stream"):
            self._maybe_crash(count)
            if hang_at is not None and hang_at < count:
                await _hang()
            message = {"role": "assistant", "content": "".join(reply)}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            await _send_json(
                send,
                200,
                {**head, "choices": [choice], "usage": usage},
            )
            return

        def chunk(delta: dict[str, str], reason: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            return {**head, "object": "chat.completion.chunk", "choices": [choice]}

        events = [chunk({"role": "assistant", "content": ""}, None)]
        events += [chunk({"content": token}, None) for token in reply]
        events.append(chunk({}, finish))
        if _include_usage(body):
            events.append(
                {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            )
        await self._stream(send, events, first_token=1, count=count, hang_at=hang_at)

    async def _completions(self, body: dict[str, Any], send: _Send) -> None:
        raw = body.get("prompt", "")
        prompts = [raw] if isinstance(raw, str) else raw
        if not isinstance(prompts, list) or not prompts:
            raise _BadRequest("'prompt' must be a string or a list of strings", param="prompt")
        texts = [_text(p) if isinstance(p, str) else " ".join(map(str, p)) for p in prompts]
        model, count, finish = self._shape(body)
        replies = [_reply_tokens(text, count) for text in texts]
        rid, created = f"cmpl-fake{next(self._ids)}", int(time.time())
        usage = _usage(sum(len(t.split()) for t in texts), count * len(texts))
        head = {"id": rid, "object": "text_completion", "created": created, "model": model}
        hang_at = self._hang_at(" ".join(texts))
        if not body.get("stream"):
            self._maybe_crash(count)
            if hang_at is not None and hang_at < count:
                await _hang()
            choices = [
                {"index": i, "text": "".join(reply), "logprobs": None, "finish_reason": finish}
                for i, reply in enumerate(replies)
            ]
            await _send_json(send, 200, {**head, "choices": choices, "usage": usage})
            return

        def chunk(index: int, text: str, reason: str | None) -> dict[str, Any]:
            choice = {"index": index, "text": text, "logprobs": None, "finish_reason": reason}
            return {**head, "choices": [choice]}

        events = [chunk(i, r[t], None) for t in range(count) for i, r in enumerate(replies)]
        events += [chunk(i, "", finish) for i in range(len(replies))]
        if _include_usage(body):
            events.append({**head, "choices": [], "usage": usage})
        await self._stream(send, events, first_token=0, count=count * len(replies), hang_at=hang_at)

    async def _embeddings(self, body: dict[str, Any], send: _Send) -> None:
        inputs = _embedding_inputs(body.get("input"))
        dim = body.get("dimensions", self.embedding_dim)
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise _BadRequest("'dimensions' must be a positive integer", param="dimensions")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise _BadRequest(
                "'encoding_format' must be 'float' or 'base64'", param="encoding_format"
            )
        data = []
        for index, text in enumerate(inputs):
            vector = _embedding(text, dim)
            embedding: list[float] | str = vector
            if encoding == "base64":
                embedding = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(text.split()) for text in inputs)
        model = body.get("model") or self.model_name
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        reply = {"object": "list", "data": data, "model": model, "usage": usage}
        await _send_json(send, 200, reply)

    async def _sleep(self, body: dict[str, Any], send: _Send) -> None:
        assert self.sleep is not None
        query = urllib.parse.parse_qs(body["query"].decode("latin-1"))
        levels = query.get("level", ["1"])
        if len(levels) != 1 or levels[0] not in ("1", "2"):
            raise _BadRequest(f"level must be 1 or 2, got {', '.join(levels)}", param="level")
        await self.sleep.sleep(int(levels[0]))
        await _send_json(send, 200, {})

    async def _wake_up(self, body: dict[str, Any], send: _Send) -> None:
        assert self.sleep is not None
        await self.sleep.wake()
        await _send_json(send, 200, {})

    async def _is_sleeping(self, body: dict[str, Any], send: _Send) -> None:
        assert self.sleep is not None
        await _send_json(send, 200, {"is_sleeping": self.sleep.sleeping})

    async def _stats(self, body: dict[str, Any], send: _Send) -> None:
        sleep = self.sleep
        stats: dict[str, Any] = {
            "pid": os.getpid(),
            "model": self.model_name,
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        if sleep is not None:
            stats.update(
                sleep_state=sleep.state, level=sleep.level, sleeps=sleep.sleeps, wakes=sleep.wakes
            )
        await _send_json(send, 200, stats)

    async def _fake_crash(self, body: dict[str, Any], send: _Send) -> None:
        self._crash()

    # -------------------------------------------------------------- helpers

    def _shape(self, body: dict[str, Any]) -> tuple[str, int, str]:
        """The reply's model name, token count and finish reason."""
        model = body.get("model") or self.model_name
        if not isinstance(model, str):
            raise _BadRequest("'model' must be a string", param="model")
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if limit is None:
            return model, self.tokens, "stop"
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _BadRequest("'max_tokens' must be a positive integer", param="max_tokens")
        return model, min(limit, self.tokens), "length" if limit < self.tokens else "stop"

    def _hang_at(self, prompt: str) -> int | None:
        """After how many tokens this completion hangs (None: it does not)."""
        if HANG_MARKER in prompt:
            return 1
        return self.hang_after_tokens

    def _maybe_crash(self, count: int) -> None:
        if self.crash_after_tokens is not None and self.crash_after_tokens < count:
            self._crash()

    async def _stream(
        self,
        send: _Send,
        events: list[dict[str, Any]],
        *,
        first_token: int,
        count: int,
        hang_at: int | None = None,
    ) -> None:
        """Send ``events`` as SSE; events ``first_token .. first_token+count-1`` are tokens."""
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        crash_at = self.crash_after_tokens
        try:
            for index, event in enumerate(events):
                token = index - first_token
                if 0 <= token < count:
                    if crash_at is not None and token == crash_at:
                        self._crash()
                    if hang_at is not None and token == hang_at:
                        await _hang()
                    if self.token_delay:
                        await asyncio.sleep(self.token_delay)
                data = b"data: " + json.dumps(event).encode() + b"\n\n"
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        except OSError:
            return  # the client went away; nothing to clean up


async def _hang() -> None:
    """Wait until cancelled: a server that stopped sending but keeps the connection."""
    await asyncio.Event().wait()


_Handler = Callable[[FakeModel, dict[str, Any], _Send], Awaitable[None]]
_ROUTES: dict[tuple[str, str], _Handler] = {
    ("GET", "/health"): FakeModel._health,
    ("GET", "/v1/models"): FakeModel._models,
    ("POST", "/v1/chat/completions"): FakeModel._chat,
    ("POST", "/v1/completions"): FakeModel._completions,
    ("POST", "/v1/embeddings"): FakeModel._embeddings,
    ("POST", "/fake/crash"): FakeModel._fake_crash,
    ("GET", "/fake/stats"): FakeModel._stats,
    ("POST", "/sleep"): FakeModel._sleep,
    ("POST", "/wake_up"): FakeModel._wake_up,
    ("GET", "/is_sleeping"): FakeModel._is_sleeping,
}
_ROUTES_BY_PATH = frozenset(path for _, path in _ROUTES)


def _check_number(field: str, value: object, *, minimum: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not minimum <= value < math.inf
    ):
        raise ConfigError(f"{field}: must be a finite number >= {minimum:g}, got {value!r}")


def _check_int(field: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{field}: must be an int >= {minimum}, got {value!r}")
