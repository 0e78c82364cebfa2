"""Choosing which of several swapcore routers serves a model (a cluster).

Each router (one host, or one GPU set) describes itself in a
:class:`ReplicaReport`; a :class:`ClusterPolicy` ranks the routers for a
model from their reports. Both are plain data and pure decisions: the Ray
Serve adapter (:mod:`swapcore.adapters.ray`) and the cluster simulator
(:func:`swapcore.sim.simulate_cluster`) drive the same policy.
"""

from swapcore.cluster._policy import AffinityPolicy, ClusterPolicy
from swapcore.cluster._report import ReplicaReport, report_from_router

__all__ = ["AffinityPolicy", "ClusterPolicy", "ReplicaReport", "report_from_router"]
