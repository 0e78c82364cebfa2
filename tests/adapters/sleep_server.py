"""A tiny vLLM-like model server with sleep mode, run as a real subprocess by the tests.

Standard library only, so it starts in a few tens of milliseconds::

    python tests/adapters/sleep_server.py --port 5800 [--refuse-sleep] [--wake STATUS] ...

It serves what ``SubprocessProcess`` and a gateway use of vLLM's sleep mode:
``GET /health`` (200 even while asleep, as vLLM), ``POST /sleep?level=N``,
``POST /wake_up``, ``GET /is_sleeping`` (``{"is_sleeping": bool}``),
SGLang's ``POST /release_memory_occupation`` and
``POST /resume_memory_occupation``, and ``POST /v1/chat/completions``, which
answers 503 while asleep. Each sleep and wake call prints one line
(``sleep level=1 body={}``, ``wake``) so a test can count them in the
process's output.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class State:
    """What the server is doing, shared by the request threads."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.lock = threading.Lock()
        self.sleeping = False
        self.level: int | None = None


def say(line: str) -> None:
    print(line, flush=True)


class Handler(BaseHTTPRequestHandler):
    state: State  # set on the subclass made in main()
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> str:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length).decode() if length else ""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/health":
            self.answer(200, {"status": "ok"})
        elif path == "/is_sleeping":
            self.answer(200, {"is_sleeping": self.state.sleeping})
        else:
            self.answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        body = self.body()
        options = self.state.options
        if parts.path in ("/sleep", "/release_memory_occupation"):
            level = parse_qs(parts.query).get("level", ["1"])[0]
            say(f"sleep path={parts.path} level={level} body={body}")
            if options.refuse_sleep:
                self.answer(500, {"error": "sleep mode is not enabled"})
                return
            time.sleep(options.sleep_time)
            with self.state.lock:
                self.state.sleeping, self.state.level = True, int(level)
            self.answer(200, {})
        elif parts.path in ("/wake_up", "/resume_memory_occupation"):
            say(f"wake path={parts.path}")
            if options.wake == "exit":
                os._exit(3)
            if options.wake == "hang":
                time.sleep(3600)
            time.sleep(options.wake_time)
            if options.wake != "ok":
                self.answer(int(options.wake), {"error": "cannot wake"})
                return
            with self.state.lock:
                self.state.sleeping, self.state.level = False, None
            self.answer(200, {})
        elif parts.path == "/v1/chat/completions":
            if self.state.sleeping:
                self.answer(503, {"error": {"message": "the engine is sleeping"}})
                return
            reply = {"role": "assistant", "content": "awake"}
            self.answer(200, {"object": "chat.completion", "choices": [{"message": reply}]})
        else:
            self.answer(404, {"error": "not found"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--refuse-sleep", action="store_true", help="answer sleep calls with 500")
    parser.add_argument("--sleep-time", type=float, default=0.0, help="seconds a sleep takes")
    parser.add_argument("--wake-time", type=float, default=0.0, help="seconds a wake takes")
    parser.add_argument(
        "--wake",
        default="ok",
        help="ok, an HTTP status to answer with, exit (die without answering) or hang",
    )
    options = parser.parse_args(argv)
    state = State(options)
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", options.port), handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    say(f"listening on {options.port} pid={os.getpid()}")
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
