"""A fake OpenAI-compatible model server, for demos and tests.

``FakeModel`` is a plain ASGI app with no dependency beyond the standard
library; ``main`` serves it with uvicorn (the ``gateway`` extra)::

    python -m swapcore.fakemodel --port 5800 --load 2     # or: swapcore fake-model ...

Endpoints:

- ``GET /health``: 503 until ``load`` seconds have passed since the app was
  built, then 200 ``{"status": "ok"}``. While loading, every ``/v1`` endpoint
  also answers 503 (as llama.cpp's server does).
- ``GET /v1/models``: the one model.
- ``POST /v1/chat/completions`` and ``POST /v1/completions``: a deterministic
  reply of ``tokens`` tokens (``max_tokens`` caps it) that repeats the last
  user message (the prompt); ``"stream": true`` sends it as server-sent
  events, one token per chunk, each after ``token_delay`` seconds, then
  ``data: [DONE]``. The streamed text equals the non-streamed text.
- ``POST /v1/embeddings``: unit vectors of ``embedding_dim`` dimensions (or the
  request's ``dimensions``) derived from a hash of each input; ``float`` or
  ``base64`` encoding.
- ``POST /fake/crash``: the server exits at once with ``CRASH_EXIT_CODE``,
  without answering. ``crash_after_tokens=N`` does the same after the N-th
  token of a completion (before replying, when not streaming).
- Hangs: ``hang_after_tokens=N`` makes every completion stop after its N-th
  token and send nothing more, keeping the connection open (a non-streamed
  completion never answers); a prompt containing ``HANG_MARKER`` does the
  same for that one request, after its first token. A hung request ends only
  when its client disconnects or the server stops.

A body that is not a JSON object, or lacks a required field, gets an
OpenAI-style 400 error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import math
import os
import signal
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

from swapcore._fake_payloads import (
    _embedding,
    _embedding_inputs,
    _include_usage,
    _reply_tokens,
    _text,
    _usage,
)
from swapcore._fake_wire import (
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
from swapcore.errors import ConfigError

__all__ = ["CRASH_EXIT_CODE", "HANG_MARKER", "FakeModel", "main"]

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
    ``hang_after_tokens`` (None: never),
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
        clock: Callable[[], float] = time.monotonic,
        crash: Callable[[], None] = _crash_now,
    ) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise ConfigError(f"model_name: must be a non-empty string, got {model_name!r}")
        _check_number("load", load, minimum=0.0)
        _check_number("token_delay", token_delay, minimum=0.0)
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
        if handler is None:
            allowed = path in _ROUTES_BY_PATH
            status = 405 if allowed else 404
            message = f"{method} not allowed on {path}" if allowed else f"no route for {path}"
            await _send_error(send, status, message, "invalid_request_error")
            return
        if path.startswith("/v1/") and not self.ready:
            await _send_error(send, 503, "Loading model", "unavailable_error")
            return
        try:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swapcore fake-model",
        description="A fake OpenAI-compatible model server with a configurable load delay.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, required=True, help="port to listen on")
    add("--load", type=float, default=0.0, help="seconds before /health turns 200 (default 0)")
    add("--model-name", default="fake-model", help="the model id (default fake-model)")
    add("--tokens", type=int, default=16, help="tokens per completion (default 16)")
    add("--token-delay", type=float, default=0.0, help="seconds per streamed token (default 0)")
    add("--embedding-dim", type=int, default=8, help="embedding dimensions (default 8)")
    add(
        "--crash-after-tokens",
        type=int,
        default=None,
        metavar="N",
        help=f"exit with code {CRASH_EXIT_CODE} after the N-th token of a completion",
    )
    add(
        "--hang-after-tokens",
        type=int,
        default=None,
        metavar="N",
        help="stop sending after the N-th token of every completion (keep the connection)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a ``FakeModel`` with uvicorn until SIGTERM or SIGINT; returns the exit status.

    A signal makes uvicorn shut down gracefully (open streams get about a
    second) and ``main`` return 0; a port that cannot be bound ends the
    process with a non-zero status (uvicorn's).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        app = FakeModel(
            model_name=args.model_name,
            load=args.load,
            tokens=args.tokens,
            token_delay=args.token_delay,
            embedding_dim=args.embedding_dim,
            crash_after_tokens=args.crash_after_tokens,
            hang_after_tokens=args.hang_after_tokens,
        )
    except ConfigError as exc:
        parser.error(str(exc))
    import uvicorn  # only here: building the app must not need it

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)

    def request_exit(signum: int, frame: object) -> None:
        server.should_exit = True

    # uvicorn swaps in its own handlers while serving and, once shut down, re-raises
    # the signal it caught under the handlers it found: these, so we exit with 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_exit)
    print(
        f"fake-model {args.model_name}: listening on http://{args.host}:{args.port}"
        f" (healthy after {args.load:g} s)",
        file=sys.stderr,
        flush=True,
    )
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    raise SystemExit(main())
