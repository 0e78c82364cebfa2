"""FaultyPlanner: delegates to its planner, fails on cue, in arming order."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from swapcore import SwapPlanner
from swapcore.testing import FaultyPlanner, InjectedFault
from swapcore.testing.faults import INVALID_ANSWER


class Recording(SwapPlanner):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def eviction_for(self, target: str, running: Sequence[str]) -> Sequence[str]:
        self.calls.append(("eviction_for", target))
        return [m for m in running if m != target]

    def on_swap_start(self, target: str, running: Sequence[str]) -> None:
        self.calls.append(("on_swap_start", target))

    def on_serve(self, model: str, now: float) -> None:
        self.calls.append(("on_serve", model))


def test_it_delegates_until_armed_and_fails_as_armed() -> None:
    inner = Recording()
    planner = FaultyPlanner(inner)
    assert planner.eviction_for("a", ["a", "b"]) == ["b"]
    planner.arm("eviction_for", target="b", times=2)
    planner.arm("eviction_for", invalid=True)
    planner.arm("on_swap_start")
    planner.arm("on_serve", target="a")
    assert planner.armed == 5
    assert planner.eviction_for("a", ["b"]) == [INVALID_ANSWER]  # 'b' faults wait for 'b'
    for _ in range(2):
        with pytest.raises(InjectedFault, match=r"eviction_for\('b'\)"):
            planner.eviction_for("b", ["a"])
    assert planner.eviction_for("b", ["a"]) == ["a"]
    with pytest.raises(InjectedFault, match="on_swap_start"):
        planner.on_swap_start("c", [])
    planner.on_serve("b", 1.0)
    with pytest.raises(InjectedFault, match=r"on_serve\('a'\)"):
        planner.on_serve("a", 2.0)
    assert planner.armed == 0 and planner.injected == 5
    assert inner.calls == [
        ("eviction_for", "a"),
        ("eviction_for", "b"),
        ("on_serve", "b"),
    ]
    planner.arm("on_serve")
    planner.disarm()
    planner.on_serve("a", 3.0)
    assert inner.calls[-1] == ("on_serve", "a")


@pytest.mark.parametrize(
    ("hook", "options", "match"),
    [
        ("evict", {}, "hook must be one of"),
        ("on_serve", {"times": 0}, "times"),
        ("on_serve", {"times": True}, "times"),
        ("on_swap_start", {"invalid": True}, "eviction_for only"),
    ],
)
def test_arming_is_validated(hook: str, options: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FaultyPlanner(Recording()).arm(hook, **options)  # type: ignore[arg-type]
