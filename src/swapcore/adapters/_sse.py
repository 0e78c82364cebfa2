"""Loading progress for streaming chat requests (``sendLoadingState``).

Internal to :mod:`swapcore.adapters.asgi`. While a streaming chat request
waits for its model, the gateway answers 200 with an event stream at once
and sends progress as ``chat.completion.chunk`` events whose delta carries
only ``reasoning_content`` (llama-swap's convention): OpenAI clients parse
them as ordinary chunks with no ``content``, and UIs that show reasoning
show the progress. Once the model is ready, the upstream's own events follow
in the same stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable

from swapcore.adapters._http import SSE_HEADERS, Exchange

__all__ = ["LoadingReporter"]

_ids = itertools.count(1)


class LoadingReporter:
    """Streams ``reasoning_content`` progress chunks while one request waits.

    Nothing is sent until :meth:`begin` (the model is not ready) or
    :meth:`position` (the request is queued). Then a task sends the headers,
    a first line, the queue position whenever it changes and a ``.`` every
    ``tick`` seconds (a keep-alive for proxies). :meth:`finish` stops the
    task and sends a last line, :meth:`stop` stops it without one (an error
    event follows); either way the caller then owns the stream again.
    :meth:`close` cancels the task (a disconnect). No task outlives the
    request: the caller always ends with :meth:`close`. ``hint()``, when
    given, is appended to the first line (what the load will cost).
    """

    __slots__ = (
        "_began",
        "_exchange",
        "_hint",
        "_id",
        "_model",
        "_position",
        "_stopping",
        "_task",
        "_tick",
        "_wake",
    )

    def __init__(
        self,
        exchange: Exchange,
        *,
        model: str,
        tick: float,
        hint: Callable[[], str] | None = None,
    ) -> None:
        self._exchange = exchange
        self._hint = hint
        self._model = model
        self._tick = tick
        self._id = f"swapcore-loading-{next(_ids)}"
        self._began = 0.0
        self._position: int | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """True once progress has begun: the response is an event stream."""
        return self._task is not None

    def begin(self) -> None:
        """Start streaming progress (idempotent; call from the event loop)."""
        if self._task is None and not self._stopping:
            self._began = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="swapcore-loading-state"
            )

    def position(self, position: int) -> None:
        """The request's 1-based queue position changed (the router's ``on_position``)."""
        self._position = position
        self.begin()
        self._wake.set()

    async def finish(self) -> None:
        """Stop the progress and say the model is ready; no-op if nothing began.

        Raises what a progress send raised (the client is gone).
        """
        if await self.stop():
            elapsed = time.monotonic() - self._began
            await self._send(f"\nmodel {self._model} ready after {elapsed:.1f} s\n\n")

    async def close(self) -> None:
        """Cancel the progress task without a word (the client left)."""
        self._stopping = True
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: the client is gone, nothing to report

    async def stop(self) -> bool:
        """Stop the task; False if it never began. Re-raises its error (a failed send)."""
        self._stopping = True
        task = self._task
        if task is None:
            return False
        self._wake.set()
        await asyncio.wait({task})
        task.result()
        return True

    async def _run(self) -> None:
        exchange = self._exchange
        exchange.sse = True
        await exchange.start(200, list(SSE_HEADERS))
        hint = self._hint() if self._hint is not None else ""
        await self._send(f"swapcore: loading model {self._model}{hint}\n", role=True)
        shown: int | None = None
        while True:
            position = self._position
            if position is not None and position != shown:
                shown = position
                await self._send(f"waiting in queue, position {position}\n")
            if self._stopping:
                return
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._tick)
                continue
            await self._send(".")

    async def _send(self, text: str, *, role: bool = False) -> None:
        delta: dict[str, str] = {"role": "assistant"} if role else {}
        delta["reasoning_content"] = text
        chunk = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
        }
        await self._exchange.body(b"data: " + json.dumps(chunk).encode() + b"\n\n")
