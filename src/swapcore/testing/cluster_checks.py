"""Check a :class:`~swapcore.ClusterPolicy` against the contract the cluster relies on.

Like :func:`~swapcore.testing.check_planner` for planners:
:func:`cluster_policy_violations` checks one ``rank`` call and needs only
the standard library; :func:`check_cluster_policy` drives the policy with
hypothesis-generated, consistent replica reports (the ``testing`` extra).

The contract of ``rank(model, replicas)``, one rule per label used in the
messages:

- ``returns a sequence``: a sequence of replica ids (str), not a string,
  a set or an iterator;
- ``known replicas``: it names only replicas among the reports given;
- ``serves the model``: it names only replicas whose ``models`` include
  ``model``;
- ``no duplicates``: it names each replica once;
- ``deterministic``: the same reports give the same ranking;
- ``no mutation``: the sequence of reports and the reports themselves are
  left as they were;
- ``order independent``: the same reports in another order give the same
  ranking (a policy that means to favour the caller's order may drop it);
- ``no exception``: it does not raise for consistent reports;
- ``no logging``: it emits no ``logging`` record (it runs for every
  request);
- ``prefers a holder`` (opt-in): when a replica reports ``model`` ready,
  the first replica named holds it ready or loading. The default
  :class:`~swapcore.AffinityPolicy` keeps it without ``spill_queue``; a
  policy that loads second copies under load does not.

``returns a sequence`` and ``no exception`` are always checked (the other
rules read the answer); :data:`CLUSTER_RULES` lists every label and
:data:`DEFAULT_CLUSTER_RULES` those checked unless ``rules`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from swapcore.cluster import ClusterPolicy, ReplicaReport
from swapcore.testing._logs import describe_record, recording_logs

__all__ = [
    "CLUSTER_RULES",
    "DEFAULT_CLUSTER_RULES",
    "check_cluster_policy",
    "cluster_policy_violations",
]

CLUSTER_RULES: frozenset[str] = frozenset(
    {
        "returns a sequence",
        "known replicas",
        "serves the model",
        "no duplicates",
        "deterministic",
        "no mutation",
        "order independent",
        "no exception",
        "no logging",
        "prefers a holder",
    }
)
"""Every rule label of the ``ClusterPolicy.rank`` contract."""

DEFAULT_CLUSTER_RULES: frozenset[str] = CLUSTER_RULES - {"prefers a holder"}
"""The rules checked by default: all but the opt-in ``prefers a holder``."""

_ALWAYS = frozenset({"returns a sequence", "no exception"})


def _checked_rules(rules: Iterable[str]) -> frozenset[str]:
    if isinstance(rules, str):
        raise ValueError("rules must be a collection of rule labels, not a string")
    chosen = frozenset(rules)
    unknown = sorted(chosen - CLUSTER_RULES)
    if unknown:
        raise ValueError(
            f"rules: unknown rule label(s) {unknown!r}; known: {sorted(CLUSTER_RULES)}"
        )
    return chosen | _ALWAYS


def cluster_policy_violations(
    policy: ClusterPolicy,
    model: str,
    replicas: Sequence[ReplicaReport],
    *,
    rules: Collection[str] = DEFAULT_CLUSTER_RULES,
) -> list[str]:
    """Check one ``policy.rank(model, replicas)`` call against the contract.

    Calls ``rank`` three times, each with a fresh list of the reports (the
    third in reverse order, for ``order independent``), while recording
    the ``logging`` root. Returns one message per broken rule among
    ``rules``, each starting with the rule's label (see the module
    docstring); an empty list means the call honours the contract. Never
    raises for a misbehaving policy; raises ``ValueError`` for an unknown
    rule label.
    """
    reports = list(replicas)
    return _check_call(policy, model, reports, reports[::-1], _checked_rules(rules))


def _check_call(
    policy: ClusterPolicy,
    model: str,
    reports: list[ReplicaReport],
    shuffled: list[ReplicaReport],
    rules: frozenset[str],
) -> list[str]:
    before = [report.to_dict() for report in reports]
    violations: list[str] = []
    answers: list[object] = []
    with recording_logs() as records:
        for order in (reports, reports, shuffled):
            argument = list(order)
            try:
                answers.append(policy.rank(model, argument))
            except Exception as exc:
                return [f"no exception: raised {type(exc).__name__}: {exc}"]
            if "no mutation" in rules and not violations:
                changed = _mutation(order, argument, before if order is reports else None)
                if changed:
                    violations.append(f"no mutation: {changed}")
    if "no mutation" in rules and not violations:
        changed = _mutation(reports, reports, before)
        if changed:
            violations.append(f"no mutation: {changed}")
    first, again, other = (_ranking(answer) for answer in answers)
    if first is None:
        violations.insert(
            0,
            f"returns a sequence: returned {type(answers[0]).__name__} {answers[0]!r}, "
            "not a sequence of replica ids",
        )
        return violations
    ranking = first
    if "deterministic" in rules and again != ranking:
        violations.append(
            f"deterministic: ranked {list(ranking)!r}, then {answers[1]!r}, for the same reports"
        )
    if "order independent" in rules and other != ranking:
        violations.append(
            f"order independent: ranked {list(ranking)!r}, but {answers[2]!r} for the same "
            f"reports in the order {[r.replica for r in shuffled]!r}"
        )
    by_id: dict[str, list[ReplicaReport]] = {}
    for report in reports:
        by_id.setdefault(report.replica, []).append(report)
    unknown = [r for r in ranking if r not in by_id]
    if "known replicas" in rules and unknown:
        violations.append(f"known replicas: named {unknown!r}, which no report describes")
    strangers = [r for r in ranking if r in by_id and not any(model in x.models for x in by_id[r])]
    if "serves the model" in rules and strangers:
        violations.append(f"serves the model: named {strangers!r}, which do not serve {model!r}")
    duplicates = list(dict.fromkeys(r for r in ranking if ranking.count(r) > 1))
    if "no duplicates" in rules and duplicates:
        violations.append(f"no duplicates: named {duplicates!r} more than once")
    if "no logging" in rules and records:
        violations.append(
            f"no logging: logged {len(records)} record(s) in 3 calls, "
            f"first: {describe_record(records[0])!r}"
        )
    if "prefers a holder" in rules:
        violations.extend(_holder_violations(model, reports, ranking, by_id))
    return violations


def _holder_violations(
    model: str,
    reports: list[ReplicaReport],
    ranking: tuple[str, ...],
    by_id: dict[str, list[ReplicaReport]],
) -> list[str]:
    holders = sorted(r.replica for r in reports if model in r.ready)
    if not holders:
        return []
    if not ranking:
        return [f"prefers a holder: named no replica, though {holders!r} hold {model!r} ready"]
    if not any(r.holds(model) for r in by_id.get(ranking[0], [])):
        return [
            f"prefers a holder: ranked {ranking[0]!r} first, which does not hold {model!r}, "
            f"though {holders!r} hold it ready"
        ]
    return []


def _mutation(
    given: list[ReplicaReport], argument: list[ReplicaReport], before: Sequence[object] | None
) -> str | None:
    """What the call changed: the list it was passed, or a report in it; None when nothing."""
    if len(argument) != len(given) or any(a is not b for a, b in zip(argument, given, strict=True)):
        return (
            f"changed the list of reports from {[r.replica for r in given]!r} "
            f"to {[getattr(r, 'replica', r) for r in argument]!r}"
        )
    if before is not None:
        for report, old in zip(given, before, strict=True):
            if report.to_dict() != old:
                return (
                    f"changed the report of {report.replica!r} from {old!r} to {report.to_dict()!r}"
                )
    return None


def _ranking(value: object) -> tuple[str, ...] | None:
    """``value`` as a tuple of replica ids, or None when it is not a sequence of str."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes, bytearray)):
        return None
    items = tuple(value)
    return items if all(isinstance(item, str) for item in items) else None


def _format_failure(
    policy: ClusterPolicy, model: str, reports: list[ReplicaReport], violations: list[str]
) -> str:
    name = type(policy).__name__
    if reports:
        head = [
            f"{name} breaks the ClusterPolicy contract in rank({model!r}, replicas), "
            "the replicas being:",
            *(f"    {report.to_dict()!r}" for report in reports),
        ]
    else:
        head = [f"{name} breaks the ClusterPolicy contract in rank({model!r}, []):"]
    return "\n".join([*head, *(f"  - {violation}" for violation in violations)])


def check_cluster_policy(
    policy: ClusterPolicy,
    *,
    models: Iterable[str] = ("a", "b", "c", "d"),
    replicas: Iterable[str] = ("r0", "r1", "r2", "r3"),
    rules: Collection[str] = DEFAULT_CLUSTER_RULES,
    max_examples: int = 200,
) -> None:
    """Drive ``policy.rank`` with generated clusters and assert the contract.

    Each example draws consistent reports for up to one replica per id in
    ``replicas`` (maybe none) with
    :func:`swapcore.testing.strategies.replica_reports` over ``models``,
    a model to rank them for (served by some of them, or by none), and
    an order to shuffle them into for ``order independent``, then checks
    the call with the rules in ``rules`` (see the module docstring; add
    ``"prefers a holder"`` to check that rule too).

    Raises ``AssertionError`` naming the broken rules, the model and the
    reports (hypothesis reports the shrunk example); ``ImportError``
    without hypothesis (the ``testing`` extra). Raises ``TypeError``
    when ``policy`` is not a :class:`~swapcore.ClusterPolicy`, and
    ``ValueError`` for an empty ``models`` or ``replicas`` or an unknown
    rule label. Runs hypothesis with ``max_examples`` examples and no
    deadline; do not call it from inside another ``@given`` test.
    """
    try:
        from hypothesis import given
        from hypothesis import strategies as st

        from swapcore.testing._check_settings import check_settings
    except ModuleNotFoundError as exc:
        raise ImportError(
            "swapcore.testing.check_cluster_policy needs hypothesis: "
            "pip install 'swapcore[testing]'"
        ) from exc

    from swapcore.testing.strategies import replica_reports

    if not isinstance(policy, ClusterPolicy):
        raise TypeError(f"check_cluster_policy needs a ClusterPolicy, not {type(policy).__name__}")
    checked = _checked_rules(rules)
    if isinstance(models, str) or isinstance(replicas, str):
        raise ValueError("models and replicas must be collections of ids, not strings")
    model_ids = list(dict.fromkeys(models))
    replica_ids = list(dict.fromkeys(replicas))
    if not model_ids or not replica_ids:
        raise ValueError("check_cluster_policy needs at least one model id and one replica id")

    @check_settings(max_examples)
    @given(
        model=st.sampled_from(model_ids),
        cluster=replica_reports(model_ids, replica_ids, min_size=0).flatmap(
            lambda drawn: st.tuples(st.just(drawn), st.permutations(drawn))
        ),
    )
    def run(model: str, cluster: tuple[list[ReplicaReport], list[ReplicaReport]]) -> None:
        reports, shuffled = cluster
        violations = _check_call(policy, model, reports, shuffled, checked)
        if violations:
            raise AssertionError(_format_failure(policy, model, reports, violations))

    run()
