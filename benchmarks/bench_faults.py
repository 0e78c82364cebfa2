"""Recovery from faults, timed: a hung stream in a swap group, and a SIGKILLed gateway.

    python benchmarks/bench_faults.py [--runs 3] [--read 3] [--load 1] [--json PATH]

Runs ``swapcore serve`` (a subprocess, 127.0.0.1 only) on two fake models in
one swapping group, ``a`` and ``b``; ``a`` stops sending after two tokens
(``--hang-after-tokens``) and has ``timeouts.read`` seconds of patience;
``b`` takes ``--load`` seconds to load.

- ``hung-stream``: a streamed request to ``a`` hangs; once it has begun, a
  request to ``b`` is sent. Reported: how long ``b`` took to answer, against
  the bound ``read + load + 2 s`` (issue 10), and that ``a``'s stream ended
  with an ``upstream_timeout`` error event.
- ``sigkill``: with streams open to both models' group, the gateway is
  killed with SIGKILL. Reported: how long until no model process is left
  (polled every 5 ms), and how many were alive 3 s after the kill (must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from system_helpers import model_pids, port_block  # noqa: E402


class Gateway:
    def __init__(self, directory: Path, marker: str, read: float, load: float) -> None:
        fake = f"{shlex.quote(sys.executable)} -m swapcore.fakemodel --tokens 50 --token-delay 0.01"
        config = directory / "faults.yaml"
        config.write_text(
            f"""\
healthCheckTimeout: 30
startPort: {port_block(2)}
models:
  a:
    cmd: "{fake} --port ${{PORT}} --hang-after-tokens 2 --model-name {marker}-a"
    proxy: "http://127.0.0.1:${{PORT}}"
    timeouts:
      read: {read}
  b:
    cmd: "{fake} --port ${{PORT}} --load {load} --model-name {marker}-b"
    proxy: "http://127.0.0.1:${{PORT}}"
"""
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (directory / "serve.log").open("w")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "swapcore", "serve", str(config), "--port", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the gateway did not listen")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        self.log.close()


def _post(url: str, model: str, stream: bool, out: dict[str, Any], timeout: float = 120) -> None:
    import http.client

    payload = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(
            "POST",
            "/v1/chat/completions",
            json.dumps(payload),
            {"content-type": "application/json"},
        )
        response = conn.getresponse()
        out["status"] = response.status
        out["first_byte"] = time.monotonic()
        out["body"] = response.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:  # the sigkill run cuts streams
        out["error"] = repr(exc)
    finally:
        out["done"] = time.monotonic()
        conn.close()


def hung_stream(read: float, load: float) -> dict[str, Any]:
    marker = f"faults-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        gateway = Gateway(Path(tmp), marker, read, load)
        try:
            hung: dict[str, Any] = {}
            thread = threading.Thread(target=_post, args=(gateway.url, "a", True, hung))
            thread.start()
            while "first_byte" not in hung and "done" not in hung:
                time.sleep(0.01)
            time.sleep(0.2)  # a's stream has begun and hangs
            other: dict[str, Any] = {}
            sent = time.monotonic()
            _post(gateway.url, "b", False, other)
            thread.join(60)
            waited = other["done"] - sent
            ended = hung.get("body", "").strip().splitlines()[-1:] or [""]
            return {
                "b_status": other.get("status"),
                "b_answered_after_s": waited,
                "bound_s": read + load + 2,
                "within_bound": other.get("status") == 200 and waited <= read + load + 2,
                "a_ended_with": json.loads(ended[0][6:])["error"]["code"]
                if ended[0].startswith("data: {")
                else ended[0],
            }
        finally:
            gateway.stop()


def sigkill() -> dict[str, Any]:
    marker = f"faults-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        gateway = Gateway(Path(tmp), marker, 600, 0)
        try:
            streams = [{} for _ in range(4)]
            threads = [
                threading.Thread(target=_post, args=(gateway.url, "a", True, out, 10))
                for out in streams
            ]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 20
            while not model_pids(marker) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)
            before = len(model_pids(marker))
            killed = time.monotonic()
            gateway.process.send_signal(signal.SIGKILL)
            gateway.process.wait()
            gone_after = None
            while time.monotonic() - killed < 3.0:
                if not model_pids(marker):
                    gone_after = time.monotonic() - killed
                    break
                time.sleep(0.005)
            time.sleep(max(0.0, 3.0 - (time.monotonic() - killed)))
            left = model_pids(marker)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            for thread in threads:
                thread.join(15)
            return {
                "model_processes_before": before,
                "all_gone_after_s": gone_after,
                "alive_3s_after": len(left),
            }
        finally:
            gateway.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--read", type=float, default=3.0, help="a's timeouts.read (3 s)")
    parser.add_argument("--load", type=float, default=1.0, help="b's load time (1 s)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {"hung-stream": [], "sigkill": []}
    for _ in range(args.runs):
        results["hung-stream"].append(hung_stream(args.read, args.load))
        results["sigkill"].append(sigkill())
    print(
        f"{'run':<4} {'b answered':>11} {'bound':>7} {'a ended with':<18}"
        f" {'kill: gone after':>17} {'alive at 3 s':>13}"
    )
    ok = True
    for i, (h, k) in enumerate(zip(results["hung-stream"], results["sigkill"], strict=True)):
        gone = "-" if k["all_gone_after_s"] is None else f"{k['all_gone_after_s'] * 1000:.0f} ms"
        print(
            f"{i + 1:<4} {h['b_answered_after_s']:>9.2f} s {h['bound_s']:>5.1f} s "
            f"{h['a_ended_with']:<18} {gone:>17} {k['alive_3s_after']:>13}"
        )
        ok &= h["within_bound"] and k["alive_3s_after"] == 0
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
