"""Fixtures of the gateway tests: live upstream servers and gateway benches."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from swapcore.testing.fakes import FakeProcess

try:
    from gateway_harness import Bench
    from upstream_servers import ASGIApp, LiveUpstreams, RawHandler

    from swapcore.fakemodel import FakeModel
except ImportError:  # the gateway extra is missing: the gateway tests skip themselves
    pass


@pytest.fixture
async def live() -> AsyncIterator[LiveUpstreams]:
    upstreams = LiveUpstreams()
    yield upstreams
    await upstreams.close()


@pytest.fixture
async def bench(live: LiveUpstreams) -> AsyncIterator[Callable[..., Awaitable[Bench]]]:
    benches: list[Bench] = []

    async def make(
        models: tuple[str, ...] = ("a", "b"),
        *,
        start: bool = True,
        processes: dict[str, FakeProcess] | None = None,
        upstream_apps: dict[str, ASGIApp] | None = None,
        raw: dict[str, RawHandler] | None = None,
        **options: Any,
    ) -> Bench:
        processes = processes or {m: FakeProcess(m, start_delay=0.01) for m in models}
        if upstream_apps is None:
            upstream_apps = {m: FakeModel(model_name=m, tokens=4) for m in processes}
        urls: dict[str, str] = {}
        served: dict[int, str] = {}  # one server per app object
        for name, app in upstream_apps.items():
            if id(app) not in served:
                served[id(app)] = await live.asgi(app)
            urls[name] = served[id(app)]
        for name, handler in (raw or {}).items():
            urls[name] = await live.raw(handler)
        options.setdefault("upstreams", {m: urls[m] for m in processes if m in urls})
        made = Bench(processes, urls, **options)
        benches.append(made)
        if start:
            await made.app.startup()
        return made

    yield make
    for made in benches:
        await made.close()
