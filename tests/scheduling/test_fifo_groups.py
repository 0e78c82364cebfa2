"""FIFOScheduler with the GroupPlanner: llama-swap's default configurations end to end."""

from __future__ import annotations

from test_fifo_doubles import finish_swap, make, req

from swapcore import Group, GroupPlanner
from swapcore.testing.effects import StartSwapCall


def test_no_groups_means_one_model_at_a_time_and_collation() -> None:
    scheduler, effects = make(GroupPlanner({}, models=["A", "B", "C"]))
    for model in "ABCABC":
        scheduler.on_request(req(model))
    for model in "ABC":
        finish_swap(scheduler, effects, model)
        scheduler.on_serve_done(model)
        scheduler.on_serve_done(model)
    assert [r.model for r in effects.served()] == list("AABBCC")
    assert effects.starts == [
        StartSwapCall("A", ()),
        StartSwapCall("B", ("A",)),
        StartSwapCall("C", ("B",)),
    ]


def test_non_exclusive_groups_swap_in_parallel() -> None:
    planner = GroupPlanner(
        {
            "big": Group(["A", "B"], exclusive=False),
            "small": Group(["C", "D"], exclusive=False),
        }
    )
    scheduler, effects = make(planner, models="ABCD", ready=["A", "C"])
    scheduler.on_request(req("A"))  # A busy
    scheduler.on_request(b := req("B"))  # would stop busy A: queued
    scheduler.on_request(d := req("D"))  # stops idle C: starts now
    assert effects.starts == [StartSwapCall("D", ("C",))]
    assert scheduler.queued == (b,)
    scheduler.on_serve_done("A")
    assert scheduler.swaps == {"D": ("C",), "B": ("A",)}
    finish_swap(scheduler, effects, "B")
    finish_swap(scheduler, effects, "D")
    assert effects.served()[1:] == [b, d]


def test_persistent_group_is_never_stopped_and_never_blocks() -> None:
    planner = GroupPlanner(
        {
            "chat": Group(["A", "B"]),
            "embed": Group(["E"], swap=False, exclusive=False, persistent=True),
        }
    )
    scheduler, effects = make(planner, models="ABE", ready=["A", "E"])
    scheduler.on_request(req("E"))  # E busy, but nobody needs to stop it
    scheduler.on_request(b := req("B"))
    assert effects.starts == [StartSwapCall("B", ("A",))]
    assert scheduler.waiters("B") == (b,)
