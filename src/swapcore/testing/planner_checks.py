"""Check a :class:`~swapcore.SwapPlanner` against the contract the scheduler relies on.

Like ``trio.testing.check_one_way_stream``, these helpers test *your*
implementation of a swapcore seam. :func:`planner_violations` checks one
call and needs nothing but the standard library; :func:`check_planner`
drives the planner with hypothesis-generated requests over your models.

The contract of ``eviction_for(target, running)``, one rule per label used
in the messages:

- ``returns a sequence``: a sequence of model ids (not a string, not a set);
- ``subset of running``: every model it names is in ``running``;
- ``never the target``: it does not contain ``target``;
- ``no duplicates``: it names each model once;
- ``deterministic``: the same arguments give the same answer (no hook
  called in between);
- ``stable result``: a result it returned does not change afterwards;
- ``no mutation``: ``running`` is left as it was;
- ``no logging``: it emits no ``logging`` record (it runs speculatively for
  every queued request on every queue drain; log in ``on_swap_start``);
- ``no exception``: it does not raise for a known target and running set.

And of ``residency_for(target, evict, sleeping)`` (sleep or stop), checked
by :func:`check_planner` on every answer of ``eviction_for``:

- ``residency: returns an Eviction``, naming every evicted model exactly
  once (``covers the eviction``);
- ``residency: sleeps only sleepers``: with ``sleep_rules``, only models
  with a sleep level go to sleep (none without rules);
- ``residency: host budget``: the sleepers (those already asleep, the
  target among them, plus the new ones) hold no more than the host budget;
- ``residency: deterministic`` and ``residency: no exception``.

A planner that declares sizes (one budget, as
:class:`~swapcore.MemoryBudgetPlanner`, or devices, as
:class:`~swapcore.planners.placement.PlacementPlanner`) is also checked
against ``memory: within budget``, ``memory: never refuses a fitting
model`` and ``memory: minimal eviction``: see
:mod:`swapcore.testing.memory_checks`, which defines the shape and the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import cast

import attrs
from hypothesis import given
from hypothesis import strategies as st

from swapcore.planners.base import SwapPlanner
from swapcore.planners.residency import Eviction
from swapcore.testing._check_settings import check_settings
from swapcore.testing._logs import describe_record as _describe
from swapcore.testing._logs import recording_logs as _recording_logs
from swapcore.testing.memory_checks import _answer, _shape, budget_violations, memory_violations

__all__ = ["check_planner", "planner_violations", "residency_violations"]


def planner_violations(planner: SwapPlanner, target: str, running: Sequence[str]) -> list[str]:
    """Check one ``planner.eviction_for(target, running)`` call against the contract.

    Calls ``eviction_for`` twice, each time with a fresh list copy of
    ``running``, while recording the ``logging`` root. Returns one message per
    broken rule, each starting with the rule's label (see the module
    docstring); an empty list means the call honours the contract. Never
    raises for a misbehaving planner; the planner's hooks are not called.
    A result that changes only when *other* arguments are asked later
    (``stable result``) needs a sequence of calls: :func:`check_planner`
    checks that.
    """
    return _check_call(planner, target, running).violations


@attrs.frozen
class _Call:
    """One checked call: what it broke, and its result as returned and as copied then."""

    violations: list[str]
    result: Sequence[str] | None = None
    copy: tuple[str, ...] = ()

    def changed(self) -> bool:
        return self.result is not None and tuple(self.result) != self.copy


def _check_call(planner: SwapPlanner, target: str, running: Sequence[str]) -> _Call:
    expected = tuple(running)
    violations: list[str] = []
    results: list[tuple[object, tuple[object, ...] | None]] = []  # (result, copy at return)
    mutated = False
    with _recording_logs() as records:
        for _ in range(2):
            argument = list(expected)
            try:
                result = planner.eviction_for(target, argument)
            except Exception as exc:
                violations.append(f"no exception: raised {type(exc).__name__}: {exc}")
                return _Call(violations)
            if argument != list(expected) and not mutated:
                mutated = True
                violations.append(
                    f"no mutation: changed running from {list(expected)!r} to {argument!r}"
                )
            results.append((result, tuple(result) if _is_sequence(result) else None))

    (first, evict), (_, again) = results
    if evict is None or not _is_sequence(first):
        violations.append(
            f"returns a sequence: returned {type(first).__name__} {first!r}, "
            "not a sequence of model ids"
        )
        return _Call(violations)
    call = _Call(violations, cast("Sequence[str]", first), cast("tuple[str, ...]", evict))
    if again != evict:
        shown = list(again) if again is not None else again
        violations.append(
            f"deterministic: returned {list(evict)!r}, then {shown!r} for the same arguments"
        )
    if call.changed():
        violations.append(
            f"stable result: the result {list(evict)!r} changed to {list(call.result or ())!r} "
            "after a later call"
        )
    foreign = [m for m in evict if m not in expected]
    if foreign:
        violations.append(f"subset of running: named {foreign!r}, which are not running")
    if target in evict:
        violations.append(f"never the target: the result contains the target {target!r}")
    duplicates = list(dict.fromkeys(m for m in evict if evict.count(m) > 1))
    if duplicates:
        violations.append(f"no duplicates: named {duplicates!r} more than once")
    if records:
        violations.append(
            f"no logging: logged {len(records)} record(s) in 2 calls, "
            f"first: {_describe(records[0])!r}"
        )
    return call


def _is_sequence(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))


def _format_failure(
    planner: SwapPlanner, target: str, running: Sequence[str], violations: list[str]
) -> str:
    lines = [
        f"{type(planner).__name__} breaks the SwapPlanner contract in "
        f"eviction_for({target!r}, {list(running)!r}):",
        *(f"  - {violation}" for violation in violations),
    ]
    return "\n".join(lines)


def check_planner(
    planner: SwapPlanner | Callable[[], SwapPlanner],
    models: Iterable[str],
    *,
    max_examples: int = 200,
    exercise_hooks: bool = True,
) -> None:
    """Drive a planner with generated requests and assert the ``eviction_for`` contract.

    ``planner`` is a :class:`~swapcore.SwapPlanner`, or a zero-argument
    factory returning a fresh one per example (use a factory when the planner
    keeps state, so that a failure replays the same way while hypothesis
    shrinks it). ``models`` are the model ids to draw targets and running
    sets from. Each example asks for a few (target, running) pairs in turn
    and checks each call with :func:`planner_violations`; with
    ``exercise_hooks`` it also calls ``on_swap_start(target, running)`` and
    ``on_serve(target, now)`` after some calls, as a router would after a real
    swap, so state-dependent planners are checked in many states.

    Each answer is also split with ``residency_for`` over a generated set
    of sleeping models (see :func:`residency_violations`): give the planner
    ``sleep_rules`` with host sizes and a budget to check its sleeping.

    A planner that declares sizes (a ``sizes`` mapping and a ``budget`` or
    ``devices``: :mod:`swapcore.testing.memory_checks`) is also held to the
    memory rules: every answer with :func:`memory_violations`, and, with
    ``exercise_hooks``, each example first swaps to a generated sequence of
    targets from nothing running, as a router would (``eviction_for``,
    then ``on_swap_start``, ``residency_for`` and ``on_serve``; the evicted
    models leave, the target runs), checking :func:`budget_violations`
    after every swap.

    Raises ``AssertionError`` naming the broken rules and the call's
    arguments (hypothesis reports the shrunk example), or when a hook
    raises. Raises ``ValueError`` for an empty ``models``. Runs hypothesis
    with ``max_examples`` examples and no deadline; do not call it from
    inside another ``@given`` test.
    """
    if isinstance(models, str):
        raise ValueError("models must be a collection of model ids, not a string")
    model_ids = list(dict.fromkeys(models))
    if not model_ids:
        raise ValueError("check_planner needs at least one model id")
    make_planner: Callable[[], SwapPlanner]
    if isinstance(planner, SwapPlanner):
        fixed = planner
        make_planner = lambda: fixed  # noqa: E731
    else:
        make_planner = planner

    model = st.sampled_from(model_ids)
    call = st.tuples(
        model,
        st.lists(model, unique=True, max_size=len(model_ids)),
        st.booleans() if exercise_hooks else st.just(False),
        st.lists(model, unique=True, max_size=len(model_ids)),
    )

    @check_settings(max_examples)
    @given(
        swaps=st.lists(st.integers(0, len(model_ids) - 1), max_size=12)
        if exercise_hooks
        else st.just([]),
        calls=st.lists(call, min_size=1, max_size=8),
    )
    def run(swaps: list[int], calls: list[tuple[str, list[str], bool, list[str]]]) -> None:
        subject = make_planner()
        failure = _memory_run(subject, model_ids, swaps) or _contract_run(subject, calls)
        if failure is not None:
            raise AssertionError(failure)

    run()


def _contract_run(
    subject: SwapPlanner, calls: list[tuple[str, list[str], bool, list[str]]]
) -> str | None:
    """Ask for each (target, running) in turn; the failure message of the first bad call."""
    earlier: list[tuple[str, list[str], _Call]] = []
    for now, (target, running, swap, asleep) in enumerate(calls):
        call = _check_call(subject, target, running)
        call.violations.extend(memory_violations(subject, target, running))
        if not call.violations and call.result is not None:
            # Sleepers are never running; the target may be one of them.
            sleeping = [m for m in asleep if m not in running]
            call.violations.extend(residency_violations(subject, target, list(call.copy), sleeping))
        # The scheduler keeps the evict set of a swap in flight while it asks
        # about other requests: an answer must not change under its feet.
        for old_target, old_running, old in earlier:
            if old.changed():
                call.violations.append(
                    f"stable result: the result {list(old.copy)!r} of "
                    f"eviction_for({old_target!r}, {old_running!r}) changed to "
                    f"{list(old.result or ())!r} after this call"
                )
                break
        if call.violations:
            return _format_failure(subject, target, running, call.violations)
        earlier.append((target, running, call))
        if swap:
            _call_hook(subject, target, list(running), float(now))
    return None


def _memory_run(subject: SwapPlanner, models: list[str], picks: list[int]) -> str | None:
    """Swap to one model after another from nothing running, as a router would.

    Each pick chooses the target among the models not running (by index,
    wrapping), so every step is a real swap. After each answer of
    ``eviction_for`` it calls ``on_swap_start``,
    ``residency_for`` and ``on_serve``, drops the evicted models and marks
    the target running, then checks the memory rules. Returns the failure
    message of the first broken rule; does nothing for a planner that
    declares no sizes.
    """
    shape = _shape(subject)
    if shape is None:
        return None
    running: list[str] = []
    sleeping: list[str] = []
    done: list[str] = []
    for now, pick in enumerate(picks):
        idle = [m for m in models if m not in running]
        if not idle:
            break
        target = idle[pick % len(idle)]
        where = f"eviction_for({target!r}, {running!r})"
        violations, evict = _answer(shape, subject, target, running)
        if not violations and evict is not None:
            eviction = _call_hook(subject, target, list(running), float(now), evict, sleeping)
            asleep = eviction.sleep if isinstance(eviction, Eviction) else ()
            sleeping = [m for m in sleeping if m != target] + [m for m in asleep if m in evict]
            running = [m for m in running if m not in evict] + [target]
            where = f"the swap to {target!r}, leaving {running!r} running"
            violations = budget_violations(subject, running)
        if violations:
            lines = [
                f"{type(subject).__name__} breaks the memory rules in {where} "
                f"(swaps so far, from nothing running: {done!r}):",
                *(f"  - {violation}" for violation in violations),
            ]
            return "\n".join(lines)
        done.append(target)
    return None


def residency_violations(
    planner: SwapPlanner, target: str, evict: Sequence[str], sleeping: Sequence[str]
) -> list[str]:
    """Check one ``planner.residency_for(target, evict, sleeping)`` call (rules above).

    The host budget is checked only when ``sleeping`` itself fits it (a
    state the rules could have reached).
    """
    answers = []
    for _ in range(2):
        try:
            answers.append(planner.residency_for(target, list(evict), list(sleeping)))
        except Exception as exc:
            return [f"residency: no exception: raised {type(exc).__name__}: {exc}"]
    answer = answers[0]
    if not isinstance(answer, Eviction):
        return [f"residency: returns an Eviction: returned {type(answer).__name__} {answer!r}"]
    violations = []
    if answers[1] != answer:
        violations.append(f"residency: deterministic: returned {answer!r}, then {answers[1]!r}")
    if sorted(answer.models) != sorted(evict):
        violations.append(
            f"residency: covers the eviction: returned {answer!r} for evicting {list(evict)!r}"
        )
    rules = planner.sleep_rules
    sleepers = [m for m in answer.sleep if rules is None or rules.level(m) is None]
    if sleepers:
        violations.append(f"residency: sleeps only sleepers: {sleepers!r} may not sleep")
    budget = rules.host_budget if rules is not None else None
    if rules is not None and budget is not None and rules.held_by(sleeping) <= budget:
        held = rules.held_by([*sleeping, *answer.sleep])
        if held > budget:
            violations.append(
                f"residency: host budget: sleepers {[*sleeping, *answer.sleep]!r} would hold "
                f"{held}, over {budget}"
            )
    return violations


def _call_hook(
    planner: SwapPlanner,
    target: str,
    running: list[str],
    now: float,
    evict: Sequence[str] | None = None,
    sleeping: Sequence[str] = (),
) -> Eviction | None:
    """Tell the planner a swap to ``target`` started and served, as a router would.

    With ``evict``, also ask ``residency_for`` between the two, and return its answer.
    """
    hook = "on_swap_start"
    eviction = None
    try:
        planner.on_swap_start(target, running)
        if evict is not None:
            hook = "residency_for"
            eviction = planner.residency_for(target, list(evict), list(sleeping))
        hook = "on_serve"
        planner.on_serve(target, now)
    except Exception as exc:
        raise AssertionError(
            f"{type(planner).__name__}.{hook} raised {type(exc).__name__}: {exc} "
            f"(target {target!r}, running {running!r})"
        ) from exc
    return eviction
