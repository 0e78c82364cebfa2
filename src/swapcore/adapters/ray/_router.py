"""Ray Serve's request router for the hosts: a swapcore :class:`~swapcore.cluster.ClusterPolicy`.

Ray Serve builds one request router per deployment in each process that
holds a handle to it (here: each front replica). For each request it asks
:meth:`SwapcoreRequestRouter.choose_replicas`, which ranks the hosts with the
policy over their reports, and sends the request to the first host in the
ranking whose queue has room (Ray's own check against
``max_ongoing_requests``).

Reports reach the router through Serve's controller, polled every
``request_routing_stats_period_s``, so they are up to a period or two old.
The router therefore also remembers what it decided since: when it sends a
model to a host, that model counts as loading there, and what that host's
planner said the load would evict counts as gone, until a report shows the
model there (or, 2 s after the decision, still does not: the request went
elsewhere or failed). Without this, two requests a moment apart
would each load the model on a different host.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ray.serve.request_router import (
    FIFOMixin,
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)

from swapcore.adapters.ray import _registry
from swapcore.cluster import AffinityPolicy, ClusterPolicy, ReplicaReport

__all__ = ["SwapcoreRequestRouter", "merge_decisions"]

logger = logging.getLogger("swapcore.adapters.ray")

# A decision is forgotten after this long even with no newer report (the host may be gone).
_DECISION_TTL = 60.0


# A report made this long after a decision, still without the model, overrides it (the
# request went elsewhere or failed); sooner, the request may simply not have arrived yet.
_CONFIRM_GRACE = 2.0


class _Decision:
    __slots__ = ("at", "evict", "model", "request")

    def __init__(self, model: str, evict: tuple[str, ...], at: float, request: str) -> None:
        self.model = model
        self.evict = evict
        self.at = at
        self.request = request

    def settled_by(self, report_at: float, report: ReplicaReport, now: float) -> bool:
        """Whether a report (made at ``report_at``) already shows this decision, or voids it."""
        if now - self.at > _DECISION_TTL:
            return True
        if report_at <= self.at:
            return False
        return report.holds(self.model) or report_at > self.at + _CONFIRM_GRACE


def merge_decisions(
    report: ReplicaReport, decisions: list[tuple[str, tuple[str, ...]]], extra_requests: int
) -> ReplicaReport:
    """``report`` as it will be once the decisions made since it was taken have happened.

    Each decision ``(model, evict)`` sent ``model`` to this replica: it is
    loading (unless ready), ``evict`` leaves the ready, loading and
    sleeping sets, and ``extra_requests`` more requests are queued.
    """
    ready = set(report.ready)
    loading = set(report.loading)
    sleeping = set(report.sleeping)
    would_evict = dict(report.would_evict)
    for model, evict in decisions:
        for gone in evict:
            ready.discard(gone)
            loading.discard(gone)
            sleeping.discard(gone)
        if model not in ready:
            loading.add(model)
        sleeping.discard(model)
        would_evict.pop(model, None)
    return ReplicaReport(
        replica=report.replica,
        models=report.models,
        ready=ready,
        loading=loading,
        sleeping=sleeping,
        busy=report.busy,
        would_evict=would_evict,
        queued=report.queued + extra_requests,
        in_flight=report.in_flight,
        free_memory=report.free_memory,
    )


class SwapcoreRequestRouter(FIFOMixin, RequestRouter):
    """Ranks the hosts for each request with a swapcore cluster policy.

    Configure it on the host deployment with Ray Serve's
    ``RequestRouterConfig(request_router_class=SwapcoreRequestRouter,
    request_router_kwargs={"policy": ...})``;
    :func:`~swapcore.adapters.ray.build_app` does. ``policy`` is a
    :class:`~swapcore.cluster.ClusterPolicy` (default
    :class:`~swapcore.cluster.AffinityPolicy`). Requests carry their model
    as Ray's ``multiplexed_model_id``; one without a model goes to the
    least loaded host.
    """

    def initialize_state(self, policy: ClusterPolicy | None = None, **kwargs: Any) -> None:
        """Ray Serve's hook: take the ``request_router_kwargs``."""
        if kwargs:
            raise TypeError(f"SwapcoreRequestRouter: unknown options {sorted(kwargs)}")
        if policy is not None and not isinstance(policy, ClusterPolicy):
            raise TypeError(f"policy: must be a ClusterPolicy, not {type(policy).__name__}")
        self._policy: ClusterPolicy = policy if policy is not None else AffinityPolicy()
        self._decisions: dict[str, list[_Decision]] = {}
        self._fresh: dict[str, tuple[float, ReplicaReport]] = {}
        self._raw: dict[str, Mapping[str, Any]] = {}
        _registry.add(self)  # through the module: see _registry

    # ---------------------------------------------------------------- views

    def note_report(self, data: Mapping[str, Any]) -> None:
        """Take a report fresher than Serve's (one a host sent back with a response)."""
        try:
            report = ReplicaReport.from_dict(data)
            at = float(data.get("at", 0.0))
        except (ValueError, TypeError):
            return
        known = self._fresh.get(report.replica)
        if known is None or known[0] < at:
            self._fresh[report.replica] = (at, report)
            self._raw[report.replica] = data

    def reports(self) -> list[ReplicaReport]:
        """Every running host's report, with this router's decisions since applied."""
        return [self._view(replica) for replica in self._replicas_sorted()]

    def snapshot(self) -> list[dict[str, Any]]:
        """Every running host's latest report as sent (``at``, ``counts``), and its ``node``."""
        out = []
        for replica in self._replicas_sorted():
            rid = replica.replica_id.unique_id
            self._report_of(replica)
            raw = self._raw.get(rid)
            entry = dict(raw) if raw is not None else {"replica": rid, "at": None}
            entry["node"] = replica.node_id
            out.append(entry)
        return out

    def _replicas_sorted(self) -> list[RunningReplica]:
        return sorted(self.curr_replicas.values(), key=lambda r: r.replica_id.unique_id)

    def _report_of(self, replica: RunningReplica) -> tuple[float, ReplicaReport] | None:
        rid = replica.replica_id.unique_id
        best = self._fresh.get(rid)
        stats = replica.routing_stats
        if stats:
            try:
                at = float(stats.get("at", 0.0))
                if best is None or best[0] < at:
                    best = (at, ReplicaReport.from_dict(stats))
                    self._fresh[rid] = best
                    self._raw[rid] = stats
            except (ValueError, TypeError) as exc:
                logger.warning("host %s: unreadable routing stats (%s)", rid, exc)
        return best

    def _view(self, replica: RunningReplica, model: str = "") -> ReplicaReport:
        rid = replica.replica_id.unique_id
        known = self._report_of(replica)
        now = time.time()
        if known is None:
            # Not reported yet (just started): it serves what is asked, with room for it.
            at = 0.0
            report = ReplicaReport(
                rid, models=(model,) if model else (), would_evict={model: ()} if model else {}
            )
        else:
            at, report = known
        decisions = [d for d in self._decisions.get(rid, ()) if not d.settled_by(at, report, now)]
        self._decisions[rid] = decisions
        return merge_decisions(report, [(d.model, d.evict) for d in decisions], len(decisions))

    def _decide(self, replica: RunningReplica, model: str, request: str) -> None:
        """Record that ``request`` for ``model`` goes to ``replica`` (replacing a guess)."""
        for decisions in self._decisions.values():
            decisions[:] = [d for d in decisions if d.request != request or not request]
        view = self._view(replica, model)
        evict = () if view.holds(model) else tuple(view.would_evict.get(model, ()))
        rid = replica.replica_id.unique_id
        self._decisions.setdefault(rid, []).append(_Decision(model, evict, time.time(), request))

    # -------------------------------------------------------------- routing

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        """The candidates in the policy's order, one per rank (Ray tries them in turn)."""
        model = pending_request.metadata.multiplexed_model_id if pending_request else ""
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        views = [self._view(r, model) for r in candidate_replicas]
        if not model:
            ordered = sorted(views, key=lambda v: (v.queued + v.in_flight, v.replica))
            return [[by_id[v.replica]] for v in ordered]
        try:
            ranking = list(self._policy.rank(model, views))
        except Exception:
            logger.exception(
                "cluster policy %r failed for %r; trying every host", self._policy, model
            )
            ranking = sorted(by_id)
        ranks = [[by_id[rid]] for rid in dict.fromkeys(ranking) if rid in by_id]
        if ranks and pending_request is not None:
            # Counted at once: requests routed meanwhile must see it (Ray routes several
            # requests concurrently and calls on_request_routed only once a slot is held).
            self._decide(ranks[0][0], model, pending_request.metadata.internal_request_id)
        return ranks

    def on_request_routed(
        self,
        pending_request: PendingRequest,
        replica_id: ReplicaID,
        result: Any,
    ) -> None:
        """Move the decision to the host Ray chose, if it was not the policy's first."""
        model = pending_request.metadata.multiplexed_model_id
        if not model:
            return
        request = pending_request.metadata.internal_request_id
        rid = replica_id.unique_id
        if any(d.request == request for d in self._decisions.get(rid, ())):
            return
        replica = self.curr_replicas.get(replica_id)
        if replica is not None:
            self._decide(replica, model, request)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        """Forget a dead host's reports and decisions."""
        super().on_replica_actor_died(replica_id)
        self._fresh.pop(replica_id.unique_id, None)
        self._raw.pop(replica_id.unique_id, None)
        self._decisions.pop(replica_id.unique_id, None)
