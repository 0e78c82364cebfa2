"""EventHub: one on_event for a router, many listeners, subscribed and removed at any time."""

from __future__ import annotations

import logging

import pytest

from swapcore import BaseRouter, GroupPlanner
from swapcore.eventhub import EventHub
from swapcore.events import ModelsUnloaded, RouterEvent, SwapFinished, SwapStarted
from swapcore.testing.fakes import FakeProcess


def event(model: str = "a") -> SwapStarted:
    return SwapStarted(1.0, model, ())


def test_listeners_get_each_event_in_subscription_order() -> None:
    got: list[tuple[str, RouterEvent]] = []
    hub = EventHub([lambda e: got.append(("first", e))])
    hub.subscribe(lambda e: got.append(("second", e)))
    hub(event())
    assert got == [("first", event()), ("second", event())]
    assert len(hub) == 2


def test_unsubscribe_removes_one_subscription_and_is_idempotent() -> None:
    got: list[RouterEvent] = []
    hub = EventHub()
    first = hub.subscribe(got.append)
    hub.subscribe(got.append)  # the same function twice: two subscriptions
    first()
    first()
    hub(event())
    assert got == [event()]
    assert len(hub) == 1


def test_a_raising_listener_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got: list[RouterEvent] = []

    def broken(e: RouterEvent) -> None:
        raise ValueError("listener bug")

    hub = EventHub([broken, got.append])
    with caplog.at_level(logging.ERROR, logger="swapcore.eventhub"):
        hub(event())
    assert got == [event()]
    assert "listener bug" in caplog.text


def test_subscribing_inside_a_listener_takes_effect_from_the_next_event() -> None:
    got: list[RouterEvent] = []
    hub = EventHub()
    hub.subscribe(lambda e: hub.subscribe(got.append) if not got and len(hub) == 1 else None)
    hub(event("a"))
    assert got == []
    hub(event("b"))
    assert got == [event("b")]


def test_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="must be callable"):
        EventHub().subscribe(42)  # type: ignore[arg-type]


async def test_a_router_reports_to_listeners_subscribed_after_it_started() -> None:
    hub = EventHub()
    processes = {"a": FakeProcess("a")}
    async with BaseRouter(processes, GroupPlanner({}, models=processes), on_event=hub) as router:
        got: list[RouterEvent] = []
        stop = hub.subscribe(got.append)
        async with router.acquire("a"):
            pass
        stop()
        await router.unload()
    kinds = [type(e) for e in got]
    assert kinds.index(SwapStarted) < kinds.index(SwapFinished)
    assert ModelsUnloaded not in kinds  # reported after the listener left
