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
- Sleep mode (``sleep_mode=True``, ``--sleep-mode``), as vLLM's
  ``--enable-sleep-mode``: ``POST /sleep?level=1`` (or ``2``; anything else
  is a 400 naming ``level``) takes ``sleep_time`` seconds, then the model is
  asleep (sleeping again is a no-op); ``POST /wake_up`` takes ``wake_time``
  seconds (``?tags=...`` is accepted and ignored); ``GET /is_sleeping``
  answers ``{"is_sleeping": bool}`` (true from the start of a sleep to the
  end of a wake). Unless fully awake, every ``/v1`` endpoint but
  ``/v1/models`` answers 503 (vLLM refuses requests to a sleeping engine);
  ``/health`` stays 200, as the process stays up. Without sleep mode the
  three paths are 404. One line per sleep and wake goes to stderr.
- ``GET /fake/stats``: ``{"pid", "model", "visible_devices"}`` (its
  ``CUDA_VISIBLE_DEVICES``, null when unset), plus ``sleep_state``,
  ``level``, ``sleeps`` and ``wakes`` in sleep mode (for tests and demos).
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

from swapcore.fakemodel._app import CRASH_EXIT_CODE, HANG_MARKER, FakeModel
from swapcore.fakemodel._cli import main

__all__ = ["CRASH_EXIT_CODE", "HANG_MARKER", "FakeModel", "main"]
