"""How soon the web UI shows a swap after the router reports it, in a real headless browser.

    python benchmarks/bench_ui.py [--swaps N] [--json PATH]

Starts ``swapcore serve`` on two fake models in one swap group (each swap
evicts the other), opens ``/ui`` in Debian's chromium (selenium), and sends
``N`` requests alternating between the models. For every swap the page
records when it drew the swap's ``loading`` span (browser wall clock); the
event carries when the router started the swap (server wall clock, the same
machine). The table gives the delay between the two: the event's trip
through ``/api/events`` plus the page's handling and drawing. Target (issue
13): the UI shows a swap within 1 s of the event.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
healthCheckTimeout: 15
startPort: {start}
models:
  a:
    cmd: "{fake} --port ${{PORT}} --load 0.05"
    proxy: "http://127.0.0.1:${{PORT}}"
  b:
    cmd: "{fake} --port ${{PORT}} --load 0.05"
    proxy: "http://127.0.0.1:${{PORT}}"
groups:
  chat: {{swap: true, members: [a, b]}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"bench_ui: {url} did not answer within {timeout:g} s")


def chat(url: str, model: str) -> None:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(
        f"{url}/v1/chat/completions", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        reply.read()


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or ""), options=options)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--swaps", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        raise SystemExit("bench_ui: needs chromium and chromium-driver (apt-get install them)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    fake = f"{shlex.quote(sys.executable)} -m swapcore.fakemodel"
    config = workdir / "config.yaml"
    config.write_text(CONFIG.format(start=free_port(), fake=fake))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env_path = str(ROOT / "src")
    log = (workdir / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "swapcore", "serve", str(config), "--port", str(port)],
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONPATH": env_path},
    )
    driver = None
    try:
        wait_for(f"{url}/health")
        driver = browser()
        driver.get(f"{url}/ui")
        deadline = time.monotonic() + 20
        while driver.find_element("id", "connection").text != "live":
            if time.monotonic() > deadline:
                raise SystemExit("bench_ui: the page did not connect to /api/events")
            time.sleep(0.05)
        for i in range(args.swaps):
            chat(url, "ab"[i % 2])
        time.sleep(1.0)  # let the last events reach the page
        shown = driver.execute_script("return window.swapcoreUI.shown")
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)
        log.close()
    delays = [(s["shownAt"] - s["at"]) * 1000 for s in shown if s["kind"] == "loading"]
    if not delays:
        raise SystemExit("bench_ui: the page drew no swap")
    ordered = sorted(delays)
    row = {
        "swaps": len(delays),
        "p50_ms": statistics.median(delays),
        "p95_ms": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max_ms": max(delays),
    }
    print(f"{'swaps drawn':<14}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    print(f"{row['swaps']:<14}{row['p50_ms']:>10.1f}{row['p95_ms']:>10.1f}{row['max_ms']:>10.1f}")
    if args.json:
        args.json.write_text(
            json.dumps({"python": platform.python_version(), "ui": row}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
