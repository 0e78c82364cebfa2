"""Which replica serves a model: :class:`ClusterPolicy` and the default, :class:`AffinityPolicy`."""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Sequence

from swapcore.cluster._report import ReplicaReport

__all__ = ["AffinityPolicy", "ClusterPolicy"]


class ClusterPolicy(abc.ABC):
    """Ranks the replicas (routers) of a cluster for a request to one model.

    Subclass it and implement :meth:`rank`. Like a
    :class:`~swapcore.SwapPlanner`, a policy is a pure decision: it reads
    the reports it is given and returns an answer, with no I/O and no
    state changed. :func:`swapcore.testing.check_cluster_policy` checks a
    policy against this contract.
    """

    @abc.abstractmethod
    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        """The ids of the replicas that may serve ``model``, best first.

        Only replicas whose ``models`` include ``model`` may be named, each
        once; a replica left out is never sent the request. The caller
        sends the request to the first replica that accepts it (Ray Serve
        skips a replica whose queue is full) and fails it when none does.
        """


def _tiebreak(model: str, replica: str) -> bytes:
    """A stable per-(model, replica) order: rendezvous hashing, the same in every process."""
    return hashlib.blake2b(f"{model}\0{replica}".encode(), digest_size=8).digest()


class AffinityPolicy(ClusterPolicy):
    """The default: send a model where it costs least to serve it, then where it least disturbs.

    Replicas are ranked by tier, best first:

    1. the model is ready there;
    2. it is loading there (its swap is in flight: join it);
    3. it is asleep there and waking it evicts nothing;
    4. there is room for it there (loading it evicts nothing);
    5. it is asleep there (waking it evicts something);
    6. loading it there evicts only idle models;
    7. it can be served there only after a wait (every eviction would take
       a busy, loading or stopping model).

    Within tiers 1-4 and 7 the replica with the fewest requests (queued and
    in flight, then queued alone) comes first; within tiers 5-6 the one
    that evicts the fewest models, then the fewest requests. Remaining ties
    are broken by rendezvous hashing of (model, replica), so independent
    callers with the same reports agree, and new models spread evenly over
    equal replicas.

    Why this order (docs/cluster.md says more): a cold load costs tens of
    seconds and a wake from sleep a fraction of that, while a place in a
    ready model's queue costs the requests ahead of it; so a copy that is
    ready or coming beats any new load, a wake beats a cold load, and room
    beats an eviction (which would turn another model's next request into
    a cold load).

    ``spill_queue``: when every replica holding the model (ready or
    loading) has at least this many requests waiting in its queue, replicas
    with room (tiers 3-4) come before them, and a second copy loads where
    nothing is evicted. None (the default) never loads a second copy while
    one is held.
    """

    def __init__(self, *, spill_queue: int | None = None) -> None:
        """A policy; see the class for ``spill_queue``."""
        if spill_queue is not None and (
            isinstance(spill_queue, bool) or not isinstance(spill_queue, int) or spill_queue < 1
        ):
            raise ValueError(
                f"spill_queue: must be None or an int of at least 1, not {spill_queue!r}"
            )
        self._spill_queue = spill_queue

    @property
    def spill_queue(self) -> int | None:
        """The queue depth at which a second copy is loaded where there is room; None: never."""
        return self._spill_queue

    def __repr__(self) -> str:
        return f"AffinityPolicy(spill_queue={self._spill_queue!r})"

    def rank(self, model: str, replicas: Sequence[ReplicaReport]) -> Sequence[str]:
        """The replicas that can serve ``model``, in the tiers the class describes."""
        keyed = []
        seen: set[str] = set()
        for report in replicas:
            if model not in report.models or report.replica in seen:
                continue
            seen.add(report.replica)
            keyed.append((self._key(model, report), report.replica))
        if self._spill_queue is not None:
            holders = [key for key, _ in keyed if key[0] <= 1]
            if holders and all(key[3] >= self._spill_queue for key in holders):
                keyed = [(_spill(key), replica) for key, replica in keyed]
        keyed.sort()
        return [replica for _, replica in keyed]

    def _key(self, model: str, report: ReplicaReport) -> tuple[float, int, int, int, bytes]:
        load = report.queued + report.in_flight
        evict = report.would_evict.get(model)
        if model in report.ready:
            tier, evicted = 0, 0
        elif model in report.loading:
            tier, evicted = 1, 0
        elif evict is None:
            tier, evicted = 6, 0
        elif not evict:
            tier, evicted = (2 if model in report.sleeping else 3), 0
        else:
            tier, evicted = (4 if model in report.sleeping else 5), len(evict)
        return (tier, evicted, load, report.queued, _tiebreak(model, report.replica))


def _spill(key: tuple[float, int, int, int, bytes]) -> tuple[float, int, int, int, bytes]:
    """Holders move after the replicas with room (tiers 2-3 go ahead of 0-1)."""
    tier = key[0]
    if tier in (2, 3):
        return (tier - 3.5, *key[1:])
    return key
