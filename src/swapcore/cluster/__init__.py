"""Choosing which of several swapcore routers serves a model (a cluster).

Each router (one host, or one GPU set) describes itself in a
:class:`ReplicaReport`; a :class:`ClusterPolicy` ranks the routers for a
model from their reports. Both are plain data and pure decisions: the Ray
Serve adapter (:mod:`swapcore.adapters.ray`) and the cluster simulator
(:func:`swapcore.sim.simulate_cluster`) drive the same policy, and build
their reports with the same :func:`build_replica_report`.
"""

from swapcore.cluster._policy import AffinityPolicy, ClusterPolicy
from swapcore.cluster._report import ReplicaReport, build_replica_report, report_from_router

__all__ = [
    "AffinityPolicy",
    "ClusterPolicy",
    "ReplicaReport",
    "build_replica_report",
    "report_from_router",
]
