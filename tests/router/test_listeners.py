"""BaseRouter.add_listener: more event listeners beside ``on_event``, added and removed."""

from __future__ import annotations

import logging

import pytest
from router_helpers import OneAtATime, bounded

from swapcore import BaseRouter, ConfigError
from swapcore.events import RequestGranted, RouterEvent, SwapStarted
from swapcore.testing.fakes import FakeProcess


def granted(events: list[RouterEvent]) -> list[str]:
    return [e.model for e in events if isinstance(e, RequestGranted)]


async def test_listeners_get_every_event_after_on_event_in_order() -> None:
    calls: list[tuple[str, RouterEvent]] = []
    procs = {m: FakeProcess(m) for m in "ab"}
    router = BaseRouter(procs, OneAtATime(), on_event=lambda e: calls.append(("on_event", e)))
    router.add_listener(lambda e: calls.append(("first", e)))
    router.add_listener(lambda e: calls.append(("second", e)))
    async with router, router.acquire("a"):
        pass
    names = [name for name, _ in calls]
    assert names == ["on_event", "first", "second"] * (len(calls) // 3)
    assert [e for name, e in calls if name == "first"] == [
        e for name, e in calls if name == "on_event"
    ]
    assert any(isinstance(e, SwapStarted) for _, e in calls)


async def test_a_listener_without_on_event_and_its_removal() -> None:
    events: list[RouterEvent] = []
    procs = {m: FakeProcess(m) for m in "ab"}
    async with BaseRouter(procs, OneAtATime()) as router:
        remove = router.add_listener(events.append)  # added to a running router
        async with router.acquire("a"):
            pass
        remove()
        remove()  # harmless
        async with router.acquire("b"):
            pass
        assert router._on_event is None  # no listener left: no event is built
    assert granted(events) == ["a"]


async def test_a_raising_listener_is_logged_and_stops_no_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[RouterEvent] = []

    def broken(event: RouterEvent) -> None:
        raise RuntimeError("listener bug")

    procs = {m: FakeProcess(m) for m in "a"}
    router = BaseRouter(procs, OneAtATime(), on_event=broken)
    router.add_listener(broken)
    router.add_listener(events.append)
    with caplog.at_level(logging.ERROR, logger="swapcore"):
        async with router:
            async with router.acquire("a"):
                pass
            await bounded(router.unload("a"))
    assert granted(events) == ["a"]
    assert "listener bug" in caplog.text


def test_a_listener_must_be_callable() -> None:
    router = BaseRouter({"a": FakeProcess("a")}, OneAtATime())
    with pytest.raises(ConfigError, match="listener: must be callable"):
        router.add_listener("not a function")  # type: ignore[arg-type]
