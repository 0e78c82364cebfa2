"""FileWatcher and ConfigReloader in process: what a reload keeps, replaces and refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swapcore import ProcessState
from swapcore.cli._reload import ConfigReloader, FileWatcher
from swapcore.config import build_router, load_config
from swapcore.config.build import build_costs
from swapcore.process import Process
from swapcore.testing.fakes import FakeProcess

pytest.importorskip("aiohttp")
pytest.importorskip("yaml")

from swapcore.adapters.asgi import GatewayApp


def _yaml(*, a_cmd: str = "srv-a --port ${PORT}", extra_model: str = "", alias: str = "x") -> str:
    return f"""\
startPort: 7100
models:
  a:
    cmd: {a_cmd}
    aliases: [{alias}]
  b:
    cmd: srv-b --port ${{PORT}}
{extra_model}"""


def _bump(path: Path) -> None:
    """Give the file a new modification time (the content is already new)."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))


async def test_the_watcher_calls_once_per_settled_change_of_content(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("one")
    calls: list[str] = []

    async def changed() -> None:
        calls.append(path.read_text())

    watcher = FileWatcher(path, changed, interval=0.01)
    assert not await watcher.poll()  # nothing changed
    path.write_text("two!")
    _bump(path)
    assert not await watcher.poll()  # changed: wait one look for it to settle
    assert await watcher.poll()
    assert calls == ["two!"]
    assert not await watcher.poll()
    _bump(path)  # touched, same content
    assert not await watcher.poll() and not await watcher.poll()
    path.unlink()  # an editor replacing the file
    assert not await watcher.poll() and not await watcher.poll()
    path.write_text("three")
    assert not await watcher.poll()
    assert await watcher.poll()
    assert calls == ["two!", "three"]


async def _gateway(path: Path) -> tuple[ConfigReloader, GatewayApp, dict[str, Process]]:
    config = load_config(path)
    processes: dict[str, Process] = {m: FakeProcess(m) for m in config.models}
    costs = build_costs(config)
    router = build_router(config, processes=processes, costs=costs)
    app = GatewayApp(router, config=config, manage_router=False)
    reloader = ConfigReloader(
        path, config, router=router, app=app, costs=costs, processes=processes
    )
    return reloader, app, processes


async def test_a_reload_keeps_unchanged_models_and_replaces_changed_ones(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(_yaml())
    reloader, app, processes = await _gateway(path)
    a, b = processes["a"], processes["b"]
    async with app.router as router:
        async with router.acquire("b"):
            pass
        path.write_text(
            _yaml(
                a_cmd="srv-a --port ${PORT} --fast",
                alias="y",
                extra_model="  c:\n    cmd: srv-c --port ${PORT}\n",
            )
        )
        assert await reloader.reload()
        assert router.models == ("a", "b", "c")
        assert processes["b"] is b and processes["a"] is not a  # the mapping follows
        assert b.state is ProcessState.READY  # kept running
        assert app.config is reloader.config and app.config.resolve_model("y") == "a"
        assert app.config.resolve_model("x") is None
        assert reloader.reloads == 1
        if app.metrics is not None:  # the added model's requests are counted
            text = app.metrics.exposition().decode()
            assert 'swapcore_requests_total{model="c",outcome="served",reason=""} 0.0' in text
    # The new processes were never started: nothing asked for a or c.
    assert processes["a"].state is ProcessState.STOPPED
    assert processes["c"].state is ProcessState.STOPPED


async def test_an_invalid_file_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(_yaml())
    reloader, app, _ = await _gateway(path)
    before = app.config
    async with app.router as router:
        path.write_text(_yaml() + "  c:\n    cmd: srv --port ${PORT}\n    ttl: -5\n")
        assert not await reloader.reload()
        assert router.models == ("a", "b") and app.config is before
        assert reloader.failures == 1 and reloader.reloads == 0
        path.write_text(
            _yaml().replace("startPort: 7100", "startPort: 7100\nswapcore: {scheduler: cost-aware}")
        )
        assert not await reloader.reload()
        assert app.config is before
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("models.c.ttl" in line for line in errors), errors
    assert any("swapcore.scheduler" in line and "restart" in line for line in errors), errors
