"""``python -m swapcore.fakemodel`` / ``swapcore fake-model``: serve a :class:`FakeModel`."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from swapcore.errors import ConfigError
from swapcore.fakemodel._app import CRASH_EXIT_CODE, FakeModel

__all__ = ["main"]


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
        "--sleep-mode",
        action="store_true",
        help="serve vLLM's sleep mode: POST /sleep?level=N, POST /wake_up, GET /is_sleeping",
    )
    add("--sleep-time", type=float, default=0.05, help="seconds a sleep takes (default 0.05)")
    add("--wake-time", type=float, default=0.2, help="seconds a wake takes (default 0.2)")
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
            sleep_mode=args.sleep_mode,
            sleep_time=args.sleep_time,
            wake_time=args.wake_time,
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
        f" (healthy after {args.load:g} s"
        + (f", sleep mode: wakes in {args.wake_time:g} s" if args.sleep_mode else "")
        + ")",
        file=sys.stderr,
        flush=True,
    )
    server.run()
    return 0 if server.started else 1
