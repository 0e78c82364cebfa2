"""Memory checks for planners that declare sizes, one budget or several devices.

A :class:`~swapcore.SwapPlanner` *declares sizes* when it has a ``sizes``
mapping (model id -> size, a number > 0) and either

- ``budget``: one number (>= 0, or ``math.inf`` for no limit) that the
  running models' sizes share (:class:`BudgetedPlanner`, as
  :class:`~swapcore.MemoryBudgetPlanner`); or
- ``devices``: a mapping of device names to budgets, with
  ``placement_of(model)`` (where ``model`` is: device -> its share of the
  size, empty when never placed) and ``free(running)`` (each device's room
  with ``running`` loaded where they are) (:class:`PlacingPlanner`, as
  :class:`~swapcore.planners.placement.PlacementPlanner`). An optional
  ``split`` attribute (default True) says whether a model may spread over
  several devices.

A planner with both ``budget`` and ``devices`` is checked as a devices
planner. How a model fits:

- one budget: ``target`` fits beside the models ``kept`` when their sizes
  and its size add up to at most the budget; it fits *alone* when its size
  is at most the budget;
- devices: it fits in the room ``free(kept)`` when one device has room for
  its whole size or, with ``split``, when the devices' positive rooms add
  up to its size; it fits *alone* when its size is at most the largest
  device budget (the sum of all device budgets with ``split``). A model
  put to sleep may have to wake on the devices it slept on (the
  placement planner's rule): with ``sleep_rules`` set, a target with a
  placement fits only where each of its shares fits on its device, so the
  checks never blame a planner for waking a model where it slept.

The rules, one label each (messages start with it):

- ``memory: within budget``: after every swap the running models' sizes
  add up to at most the budget; with devices, the shares
  (``placement_of``) of the running models on each device add up to at
  most its budget, and each running model's shares add up to its size;
- ``memory: never refuses a fitting model``: ``eviction_for`` does not
  raise for a target that fits alone;
- ``memory: minimal eviction``: it evicts nothing when the target fits
  beside every running model (or is running), and no model of an
  eviction could have stayed: with it kept (the other evicted models
  gone), the target would not fit.

Numbers compare exactly, as the decimals they print as (``0.1 + 0.2`` fits
a budget of ``0.3``); only shares reported by ``placement_of`` get a
relative slack of 1e-9 (they may be floats rounded from exact shares).
Models without a size are outside these rules (a planner raising for them
breaks the ``no exception`` rule of
:func:`~swapcore.testing.planner_checks.check_planner`). On devices, the
minimal eviction is checked only when every running model other than the
target has a placement (the planner would locate the others itself).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Protocol, runtime_checkable

import attrs

from swapcore.planners.base import SwapPlanner

__all__ = ["BudgetedPlanner", "PlacingPlanner", "budget_violations", "memory_violations"]

Size = float | Fraction
"""A model's size or a budget: a number (int, float or Fraction)."""

_SLACK = Fraction(1, 10**9)


@runtime_checkable
class BudgetedPlanner(Protocol):
    """A planner whose running models share one budget (see the module docstring)."""

    @property
    def sizes(self) -> Mapping[str, Size]:
        """Each model's size."""

    @property
    def budget(self) -> Size:
        """The most the running models' sizes may add up to (``math.inf``: no limit)."""


@runtime_checkable
class PlacingPlanner(Protocol):
    """A planner placing models on devices, each with its own budget (module docstring)."""

    @property
    def sizes(self) -> Mapping[str, Size]:
        """Each model's size."""

    @property
    def devices(self) -> Mapping[str, Size]:
        """Each device's budget."""

    def placement_of(self, model: str) -> Mapping[str, Size]:
        """Where ``model`` is: device -> its share of the size (empty: never placed)."""

    def free(self, running: Iterable[str]) -> Mapping[str, Size]:
        """Each device's room with ``running`` loaded where they are."""


def _exact(value: object) -> Fraction | None:
    """``value`` as an exact number (a float as the decimal it prints as), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (Fraction, int)):
        return Fraction(value)
    if isinstance(value, float) and math.isfinite(value):
        return Fraction(repr(value))
    return None


def _show(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


def _size(planner: object, model: str) -> Fraction | None:
    sizes = getattr(planner, "sizes", None)
    size = _exact(sizes.get(model)) if isinstance(sizes, Mapping) else None
    return size if size is not None and size > 0 else None


@attrs.frozen
class _OneBudget:
    planner: SwapPlanner
    budget: Fraction | None  # None: no limit

    def fits_alone(self, size: Fraction) -> bool:
        return self.budget is None or size <= self.budget

    def alone(self) -> str:
        return f"the budget {_show(self.budget)}" if self.budget is not None else "no limit"

    def room(self, target: str, size: Fraction, kept: Sequence[str]) -> tuple[bool, str]:
        """Whether ``target`` fits beside ``kept``, and the arithmetic that says so."""
        held = sum((_size(self.planner, m) or Fraction(0) for m in kept), Fraction(0))
        if self.budget is None:
            return True, "no limit"
        return held + size <= self.budget, (
            f"{_show(held)} + {_show(size)} of budget {_show(self.budget)}"
        )

    def checkable(self, others: Sequence[str]) -> bool:
        return True

    def over(self, running: Sequence[str]) -> list[str]:
        held = sum((_size(self.planner, m) or Fraction(0) for m in running), Fraction(0))
        if self.budget is None or held <= self.budget:
            return []
        return [
            f"memory: within budget: running {list(running)!r} hold {_show(held)}, "
            f"over the budget {_show(self.budget)}"
        ]


@attrs.frozen
class _Devices:
    planner: PlacingPlanner
    budgets: dict[str, Fraction]
    split: bool

    def fits_alone(self, size: Fraction) -> bool:
        room = sum(self.budgets.values(), Fraction(0)) if self.split else max(self.budgets.values())
        return size <= room

    def alone(self) -> str:
        if self.split:
            return f"all devices together ({_show(sum(self.budgets.values(), Fraction(0)))})"
        return f"the largest device ({_show(max(self.budgets.values()))})"

    def room(self, target: str, size: Fraction, kept: Sequence[str]) -> tuple[bool, str]:
        free = {d: _exact(r) or Fraction(0) for d, r in self.planner.free(list(kept)).items()}
        shown = ", ".join(f"{d!r}: {_show(r)}" for d, r in free.items())
        rooms = f"free room beside {list(kept)!r} is {{{shown}}}"
        placed = _shares(self.planner, target)
        if getattr(self.planner, "sleep_rules", None) is not None and placed:
            fits = all(free.get(d, Fraction(0)) >= s * (1 + _SLACK) for d, s in placed.items())
            return fits, f"{rooms}, and {target!r} was on {_shown(placed)}"
        whole = any(r >= size for r in free.values())
        spread = self.split and sum((r for r in free.values() if r > 0), Fraction(0)) >= size
        return whole or spread, rooms

    def checkable(self, others: Sequence[str]) -> bool:
        return all(_shares(self.planner, m) for m in others)

    def over(self, running: Sequence[str]) -> list[str]:
        violations = []
        load = dict.fromkeys(self.budgets, Fraction(0))
        on: dict[str, list[str]] = {d: [] for d in self.budgets}
        for model in running:
            size = _size(self.planner, model)
            if size is None:
                continue
            shares = _shares(self.planner, model)
            total = sum(shares.values(), Fraction(0))
            if abs(total - size) > size * _SLACK or any(d not in load for d in shares):
                violations.append(
                    f"memory: within budget: {model!r} is placed on {_shown(shares)}, "
                    f"not its size {_show(size)} on known devices"
                )
            for device, share in shares.items():
                if device in load:
                    load[device] += share
                    on[device].append(model)
        for device, budget in self.budgets.items():
            if load[device] > budget * (1 + _SLACK):
                violations.append(
                    f"memory: within budget: device {device!r} holds {_show(load[device])} "
                    f"({', '.join(map(repr, on[device]))}), over its budget {_show(budget)}"
                )
        return violations


def _shares(planner: PlacingPlanner, model: str) -> dict[str, Fraction]:
    return {str(d): _exact(s) or Fraction(0) for d, s in planner.placement_of(model).items()}


def _shown(shares: Mapping[str, Fraction]) -> str:
    return "{" + ", ".join(f"{d!r}: {_show(s)}" for d, s in shares.items()) + "}"


_Shape = _OneBudget | _Devices


def _shape(planner: SwapPlanner) -> _Shape | None:
    """How ``planner`` declares sizes, or None when it does not."""
    if not isinstance(getattr(planner, "sizes", None), Mapping):
        return None
    if isinstance(planner, PlacingPlanner) and isinstance(planner.devices, Mapping):
        budgets = {str(d): _exact(b) for d, b in planner.devices.items()}
        exact = {d: b for d, b in budgets.items() if b is not None and b > 0}
        if not exact or len(exact) != len(budgets):
            return None
        return _Devices(planner, exact, bool(getattr(planner, "split", True)))
    if isinstance(planner, BudgetedPlanner):
        budget = planner.budget
        if isinstance(budget, float) and math.isinf(budget) and budget > 0:
            return _OneBudget(planner, None)
        exact_budget = _exact(budget)
        return _OneBudget(planner, exact_budget) if exact_budget is not None else None
    return None


def memory_violations(planner: SwapPlanner, target: str, running: Sequence[str]) -> list[str]:
    """Check one ``planner.eviction_for(target, running)`` answer against the memory rules.

    Checks ``memory: never refuses a fitting model`` and ``memory: minimal
    eviction`` (see the module docstring); ``memory: within budget`` needs
    the swap done: see :func:`budget_violations`. Returns one message per
    broken rule, empty when the planner declares no sizes, when ``target``
    or a running model has none, or when the answer is not a sequence (the
    contract of :func:`~swapcore.testing.planner_checks.planner_violations`
    says so). Calls ``eviction_for`` once with a list copy of ``running``
    (and ``free`` for devices), never the hooks; never raises for a
    misbehaving planner.
    """
    shape = _shape(planner)
    return _answer(shape, planner, target, running)[0] if shape is not None else []


def _answer(
    shape: _Shape, planner: SwapPlanner, target: str, running: Sequence[str]
) -> tuple[list[str], tuple[str, ...] | None]:
    """The memory violations of one answer, and the answer (None: not checked)."""
    others = [m for m in dict.fromkeys(running) if m != target]
    size = _size(planner, target)
    if size is None or any(_size(planner, m) is None for m in others):
        return [], None
    try:
        answer = planner.eviction_for(target, list(running))
    except Exception as exc:
        if not shape.fits_alone(size):
            return [], None
        return [
            f"memory: never refuses a fitting model: raised {type(exc).__name__}: {exc}, "
            f"yet {target!r} (size {_show(size)}) fits {shape.alone()}"
        ], None
    if not isinstance(answer, Sequence) or isinstance(answer, (str, bytes, bytearray)):
        return [], None
    evict = tuple(m for m in dict.fromkeys(answer) if m in others)
    if not evict:
        return [], evict
    if target in running:
        return [f"memory: minimal eviction: evicts {list(evict)!r}, but {target!r} runs"], evict
    try:
        if not shape.checkable(others):
            return [], evict
    except Exception as exc:
        return [f"memory: within budget: placement_of raised {type(exc).__name__}: {exc}"], evict
    try:
        fits, why = shape.room(target, size, others)
        if fits:
            return [
                f"memory: minimal eviction: evicts {list(evict)!r}, but {target!r} "
                f"(size {_show(size)}) fits beside every running model: {why}"
            ], evict
        needless = []
        for model in evict:
            kept = [m for m in others if m not in evict or m == model]
            fits, why = shape.room(target, size, kept)
            if fits:
                needless.append(f"{model!r} could stay ({why})")
    except Exception as exc:
        return [f"memory: minimal eviction: free() raised {type(exc).__name__}: {exc}"], evict
    if needless:
        return [
            f"memory: minimal eviction: evicts {list(evict)!r} for {target!r} "
            f"(size {_show(size)}), but {'; '.join(needless)}"
        ], evict
    return [], evict


def budget_violations(planner: SwapPlanner, running: Sequence[str]) -> list[str]:
    """Check that the models of ``running``, as they stand, are within budget.

    The ``memory: within budget`` rule (see the module docstring): one
    message per broken budget or misplaced model, empty when the planner
    declares no sizes. Models without a size are left out. Call it after
    the planner's ``on_swap_start`` for the swap that made ``running``
    (a devices planner places the target then).
    """
    shape = _shape(planner)
    if shape is None:
        return []
    try:
        return shape.over(list(dict.fromkeys(running)))
    except Exception as exc:
        return [f"memory: within budget: placement_of raised {type(exc).__name__}: {exc}"]
