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
model there. Without this, two requests a moment apart would each load the
model on a different host. A request the front tracks (it tells the router
when the host's answer begins, or the request ends without one) keeps its
decision until then however slowly it travels; one sent through some other
handle keeps it until a report made 2 s after the decision still lacks the
model (the request went elsewhere or failed).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
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

__all__ = ["SwapcoreRequestRouter", "merge_decisions", "pack_policy", "unpack_policy"]

logger = logging.getLogger("swapcore.adapters.ray")


def pack_policy(policy: ClusterPolicy) -> str:
    """``policy`` as text, for Ray's JSON-only router kwargs (cloudpickle, so any class works)."""
    from ray import cloudpickle

    dumps: Callable[[object], bytes] = cloudpickle.dumps  # untyped in Ray
    return base64.b64encode(dumps(policy)).decode("ascii")


def unpack_policy(packed: str) -> ClusterPolicy:
    """The policy :func:`pack_policy` packed."""
    from ray import cloudpickle

    policy = cloudpickle.loads(base64.b64decode(packed))
    if not isinstance(policy, ClusterPolicy):
        raise TypeError(f"policy: must be a ClusterPolicy, not {type(policy).__name__}")
    return policy


# A decision is forgotten after this long even with no newer report (the host may be gone);
# so is when a request was first ranked, if Ray never routed it (cancelled, caller gone).
_DECISION_TTL = 60.0


# The parts of Ray Serve's router that _fulfill_next_pending_request relies on (not public API);
# without them the router falls back to Ray's own fulfilment.
_HAS_FULFILMENT_INTERNALS = all(
    hasattr(RequestRouter, name)
    for name in (
        "_get_pending_request_matching_internal_request_id",
        "_cancel_routing_task_for_pending_request",
        "_record_queue_wait_time",
        "_remove_pending_request_from_indices",
    )
)

# How long a request is offered only to the host the policy ranked first. Ray gives up on a
# host whose queue-length probe answers late (0.1 s at first) and tries the next rank: on a
# busy machine that turns a wait of a fraction of a second into a cold load elsewhere
# (30-100 s on real models). After this, every host is offered, in the policy's order.
_PATIENCE = 5.0

# For a request no front tracks: a report made this long after a decision, still without
# the model, overrides it (the request went elsewhere or failed); sooner, the request may
# simply not have arrived yet. A tracked request needs no guess: the front says when.
_CONFIRM_GRACE = 2.0


class _Decision:
    __slots__ = ("at", "evict", "model", "request")

    def __init__(self, model: str, evict: tuple[str, ...], at: float, request: str) -> None:
        self.model = model
        self.evict = evict
        self.at = at
        self.request = request

    def settled_by(
        self, report_at: float, report: ReplicaReport, now: float, *, tracked: bool
    ) -> bool:
        """Whether a report (made at ``report_at``) already shows this decision, or voids it.

        ``tracked``: the front will say when the request's answer begins, so
        no report voids the decision before then (only one that shows it).
        """
        if now - self.at > _DECISION_TTL:
            return True
        if report_at <= self.at:
            return False
        if report.holds(self.model):
            return True
        return not tracked and report_at > self.at + _CONFIRM_GRACE


def merge_decisions(
    report: ReplicaReport, decisions: list[tuple[str, tuple[str, ...]]], extra_requests: int
) -> ReplicaReport:
    """``report`` as it will be once the decisions made since it was taken have happened.

    Each decision ``(model, evict)`` sent ``model`` to this replica: it is
    loading (unless ready), ``evict`` leaves the ready, loading and
    sleeping sets, and ``extra_requests`` more requests are queued. A load
    also takes room: with sizes, the models that no longer fit in what is
    left lose their "room" answer; without, every model does (the room is
    no longer known). Either way they drop out of ``would_evict`` (the
    replica would have to evict something the report cannot say) until a
    report shows the host as it is.
    """
    ready = set(report.ready)
    loading = set(report.loading)
    sleeping = set(report.sleeping)
    would_evict = dict(report.would_evict)
    sizes = report.sizes
    free = report.free_memory
    for model, evict in decisions:
        cold = model not in ready and model not in loading
        for gone in evict:
            if free is not None and gone in sizes and (gone in ready or gone in loading):
                free += sizes[gone]
            ready.discard(gone)
            loading.discard(gone)
            sleeping.discard(gone)
        if model not in ready:
            loading.add(model)
        sleeping.discard(model)
        would_evict.pop(model, None)
        if not cold:
            continue
        if free is not None and model in sizes:
            free = max(free - sizes[model], 0.0)
        for other, other_evict in list(would_evict.items()):
            if other_evict:
                continue
            if free is None or other not in sizes or sizes[other] > free:
                del would_evict[other]
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
        free_memory=free,
        sizes=sizes,
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

    def initialize_state(self, policy: ClusterPolicy | str | None = None, **kwargs: Any) -> None:
        """Ray Serve's hook: take the ``request_router_kwargs``.

        ``policy`` is a :class:`~swapcore.cluster.ClusterPolicy`, or one
        packed by :func:`pack_policy` (Ray requires the kwargs to be JSON).
        """
        if kwargs:
            raise TypeError(f"SwapcoreRequestRouter: unknown options {sorted(kwargs)}")
        if isinstance(policy, str):
            policy = unpack_policy(policy)
        if not _HAS_FULFILMENT_INTERNALS:
            logger.warning(
                "this Ray Serve lacks the routing internals swapcore expects; a host ranked for "
                "one model may serve a request for another (more cold loads)"
            )
        if policy is not None and not isinstance(policy, ClusterPolicy):
            raise TypeError(f"policy: must be a ClusterPolicy, not {type(policy).__name__}")
        self._policy: ClusterPolicy = policy if policy is not None else AffinityPolicy()
        self._decisions: dict[str, list[_Decision]] = {}
        # Requests a front tracks until their answer begins (see track/untrack).
        self._tracked: set[str] = set()
        # When each request being routed was first ranked (see _PATIENCE), oldest first.
        self._first_ranked: OrderedDict[str, float] = OrderedDict()
        # The front calls track/untrack/note_report from its own event loop, and Ray Serve
        # may run this router on another thread's loop.
        self._lock = threading.Lock()
        # Per host: the newest report seen, as (made at, report, the data it came as).
        self._latest: dict[str, tuple[float, ReplicaReport, Mapping[str, Any]]] = {}
        _registry.add(self)  # through the module: see _registry

    # ---------------------------------------------------------------- views

    def note_report(self, data: Mapping[str, Any]) -> None:
        """Take a report fresher than Serve's (one a host sent back with a response)."""
        self._take(data)

    def track(self, request: str) -> None:
        """Hold the decision for ``request`` (Ray's internal id) until :meth:`untrack`."""
        with self._lock:
            self._tracked.add(request)

    def untrack(self, request: str) -> None:
        """The answer to ``request`` has begun, or it ended without one: reports now tell."""
        with self._lock:
            self._tracked.discard(request)
            self._first_ranked.pop(request, None)
            self._forget(request)

    def _take(self, data: Mapping[str, Any]) -> None:
        """Keep ``data`` as its host's report if it is newer than the one kept."""
        try:
            at = float(data.get("at", 0.0))
            replica = data.get("replica")
            known = self._latest.get(replica) if isinstance(replica, str) else None
            if known is None or known[0] < at:
                report = ReplicaReport.from_dict(data)
                self._latest[report.replica] = (at, report, data)
        except (ValueError, TypeError) as exc:
            logger.warning("unreadable host report (%s)", exc)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every running host's latest report as sent (``at``, ``counts``), and its ``node``."""
        out = []
        for replica in sorted(self.curr_replicas.values(), key=lambda r: r.replica_id.unique_id):
            rid = replica.replica_id.unique_id
            known = self._report_of(replica)
            entry = dict(known[2]) if known is not None else {"replica": rid, "at": None}
            entry["node"] = replica.node_id
            out.append(entry)
        return out

    def _report_of(
        self, replica: RunningReplica
    ) -> tuple[float, ReplicaReport, Mapping[str, Any]] | None:
        """The newest report of ``replica``: Serve's routing stats or one a response carried."""
        if replica.routing_stats:
            self._take(replica.routing_stats)
        return self._latest.get(replica.replica_id.unique_id)

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
            at, report, _ = known
        with self._lock:
            decisions = self._decisions.get(rid, [])
            decisions[:] = [
                d
                for d in decisions
                if not d.settled_by(at, report, now, tracked=d.request in self._tracked)
            ]
            pending = [(d.model, d.evict) for d in decisions]
        return merge_decisions(report, pending, len(pending))

    def _forget(self, request: str) -> None:
        """Drop the decision recorded for ``request``, wherever it was (lock held)."""
        if request:
            for decisions in self._decisions.values():
                decisions[:] = [d for d in decisions if d.request != request]

    def _decide(self, view: ReplicaReport, model: str, request: str) -> None:
        """Record that ``request`` for ``model`` goes to the host ``view`` shows."""
        evict = () if view.holds(model) else tuple(view.would_evict.get(model, ()))
        decision = _Decision(model, evict, time.time(), request)
        with self._lock:
            self._decisions.setdefault(view.replica, []).append(decision)

    # -------------------------------------------------------------- routing

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        """The candidates in the policy's order, one per rank (Ray tries them in turn)."""
        model = pending_request.metadata.multiplexed_model_id if pending_request else ""
        request = pending_request.metadata.internal_request_id if pending_request else ""
        with self._lock:  # a retry is ranked afresh, not pulled to its own earlier guess
            self._forget(request)
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        views = {r.replica_id.unique_id: self._view(r, model) for r in candidate_replicas}
        if not model:
            ordered = sorted(views.values(), key=lambda v: (v.queued + v.in_flight, v.replica))
            return [[by_id[v.replica]] for v in ordered]
        try:
            ranking = list(self._policy.rank(model, list(views.values())))
        except Exception:
            logger.exception(
                "cluster policy %r failed for %r; trying every host", self._policy, model
            )
            ranking = sorted(by_id)
        ranks = [[by_id[rid]] for rid in dict.fromkeys(ranking) if rid in by_id]
        if ranks and pending_request is not None:
            # Counted at once: requests routed meanwhile must see it (Ray routes several
            # requests concurrently and calls on_request_routed only once a slot is held).
            self._decide(views[ranks[0][0].replica_id.unique_id], model, request)
            pending_request.routing_context.should_backoff = True  # Ray sleeps between tries
            if self._patient(request):
                return ranks[:1]
        return ranks

    def _patient(self, request: str) -> bool:
        """Whether ``request`` is still offered only to the first host (see ``_PATIENCE``)."""
        now = time.monotonic()
        with self._lock:
            first_ranked = self._first_ranked
            while first_ranked and now - next(iter(first_ranked.values())) > _DECISION_TTL:
                first_ranked.popitem(last=False)  # a request Ray dropped unrouted
            first = first_ranked.setdefault(request, now)
        return now - first < _PATIENCE

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
        with self._lock:
            self._first_ranked.pop(request, None)
            if any(d.request == request for d in self._decisions.get(rid, ())):
                return
            self._forget(request)
        logger.debug("request %s for %r went to %s, not the policy's first", request, model, rid)
        replica = self.curr_replicas.get(replica_id)
        if replica is not None:
            self._decide(self._view(replica, model), model, request)

    def _fulfill_next_pending_request(
        self, replica: RunningReplica, request_metadata: Any = None
    ) -> None:
        """Give the host to the request it was ranked for, or to one for the same model.

        Ray's FIFO default hands a free replica to the oldest pending request
        when the one it was chosen for is gone, whatever its model: a host
        ranked for one model would then serve another. Here a host ranked
        for a model only ever serves that model (the other request is routed
        on its own).
        """
        model = getattr(request_metadata, "multiplexed_model_id", "") if request_metadata else ""
        if not model or not _HAS_FULFILMENT_INTERNALS:
            super()._fulfill_next_pending_request(replica, request_metadata)
            return
        pending = self._get_pending_request_matching_internal_request_id(request_metadata)
        if pending is None:
            by_model = getattr(self, "_pending_requests_by_model_id", {}).get(model, ())
            pending = next((pr for pr in by_model if not pr.future.done()), None)
        if pending is None:
            return
        self._cancel_routing_task_for_pending_request(pending)
        self._record_queue_wait_time(pending)
        pending.future.set_result(replica)
        self._remove_pending_request_from_indices(pending)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        """Forget a dead host's reports and decisions."""
        super().on_replica_actor_died(replica_id)
        self._latest.pop(replica_id.unique_id, None)
        with self._lock:
            self._decisions.pop(replica_id.unique_id, None)
