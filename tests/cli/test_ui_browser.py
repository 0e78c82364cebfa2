"""The web UI at ``/ui`` in a real headless browser (Debian's chromium and its driver).

A real ``swapcore serve`` with fake models on 127.0.0.1. The page is driven
with selenium: it lists the models, follows a swap live (rows and the
timeline), and its Unload and Load buttons act. A screenshot is kept as a
test artefact (``$SWAPCORE_ARTIFACTS``, default ``test-artifacts/``). Every
wait is bounded; how fast the page follows events is measured in
``benchmarks/bench_ui.py``, not asserted here.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_serve import Serve, chat, fake_config, marker  # noqa: F401

from system_helpers import port_block

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if os.environ.get("SWAPCORE_REQUIRE_BROWSER") == "1":  # CI: a missing browser is a failure
    assert CHROMIUM and DRIVER, "SWAPCORE_REQUIRE_BROWSER=1 but chromium or chromedriver is missing"
    from selenium import webdriver
else:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("SWAPCORE_ARTIFACTS", ROOT / "test-artifacts"))
BOUND = 20.0  # seconds any wait may take on a busy machine; nothing asserts a duration


def browser() -> Any:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    return webdriver.Chrome(service=Service(DRIVER or ""), options=options)


def until(predicate: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + BOUND
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {BOUND:g} s waiting for {what}")
        time.sleep(0.05)


# Read in one script: the page redraws rows as events arrive, so an element found in
# one call may be gone by the next.
def row_state(driver: Any, model: str) -> str | None:
    state: str | None = driver.execute_script(
        'const row = document.querySelector(`#models tr[data-model="${arguments[0]}"]`);'
        "return row ? row.dataset.state : null;",
        model,
    )
    return state


def kinds(driver: Any, model: str) -> list[str]:
    found: list[str] = driver.execute_script(
        'return [...document.querySelectorAll(`#timeline rect[data-model="${arguments[0]}"]`)]'
        ".map((rect) => rect.dataset.kind);",
        model,
    )
    return found


def press(driver: Any, action: str, model: str) -> None:
    """Click a row's button as a user would (found afresh, since rows are redrawn)."""
    from selenium.common.exceptions import StaleElementReferenceException

    def click() -> bool:
        try:
            selector = f'button[data-action="{action}"][data-model="{model}"]'
            button = driver.find_element("css selector", selector)
            if not button.is_enabled():
                return False
            button.click()
        except StaleElementReferenceException:
            return False
        return True

    until(click, f"the {action} button of {model}")


@pytest.fixture
def served(marker: str, tmp_path: Path) -> Iterator[Serve]:  # noqa: F811
    path = tmp_path / "config.yaml"
    path.write_text(fake_config(marker, port_block(3), load=0.3))
    serve = Serve(tmp_path, str(path))
    try:
        serve.wait_healthy()
        yield serve
    finally:
        assert serve.stop() == 0


@pytest.fixture
def driver() -> Iterator[Any]:
    chrome = browser()
    try:
        yield chrome
    finally:
        chrome.quit()


def test_the_page_follows_a_swap_and_its_buttons_act(served: Serve, driver: Any) -> None:
    root = httpx.get(f"{served.url}/", follow_redirects=False, timeout=5)
    assert root.status_code in (302, 307) and root.headers["location"] == "/ui"
    driver.get(f"{served.url}/ui")
    until(lambda: driver.find_element("id", "connection").text == "live", "the event stream")
    until(lambda: {row_state(driver, m) for m in "abc"} == {"stopped"}, "three stopped rows")

    chat(served.url, "a")
    until(lambda: row_state(driver, "a") == "ready", "a ready on the page")
    assert "loading" in kinds(driver, "a") and "ready" in kinds(driver, "a")

    chat(served.url, "b")  # a swap: b evicts a (one group, swap: true)
    until(lambda: row_state(driver, "b") == "ready", "b ready on the page")
    until(lambda: row_state(driver, "a") == "stopped", "a stopped on the page")
    swaps = driver.find_element("id", "swaps-list").text
    assert "loaded b evicting a" in swaps
    shown = driver.execute_script("return window.swapcoreUI.shown")
    assert [(s["model"], s["kind"]) for s in shown if s["kind"] == "loading"][-2:] == [
        ("a", "loading"),
        ("b", "loading"),
    ]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "ui-after-swap.png"))

    press(driver, "unload", "b")
    until(lambda: row_state(driver, "b") == "stopped", "b unloaded by its button")
    running = httpx.get(f"{served.url}/running", timeout=5).json()["running"]
    assert all(entry["model"] != "b" for entry in running)

    press(driver, "load", "c")
    until(lambda: row_state(driver, "c") == "ready", "c loaded by its button")
    until(lambda: driver.find_element("id", "log").text.strip(), "log lines")
