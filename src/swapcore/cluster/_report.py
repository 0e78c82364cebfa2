"""What one router tells the cluster about itself: :class:`ReplicaReport`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from swapcore.planners.base import SwapPlanner
from swapcore.planners.memory import MemoryBudgetPlanner
from swapcore.planners.placement import PlacementPlanner
from swapcore.process import ProcessState

if TYPE_CHECKING:
    # Only for the annotation: a report is plain data, and importing it (as
    # ``import swapcore`` does) must not load the asyncio router.
    from swapcore.router import BaseRouter

__all__ = ["ReplicaReport", "build_replica_report", "report_from_router"]


def _names(value: Any) -> frozenset[str]:
    if isinstance(value, str):  # frozenset("ab") would be the models "a" and "b"
        raise TypeError(f"expected a collection of model ids, not the string {value!r}")
    return frozenset(value)


def _evictions(value: Mapping[str, Any]) -> Mapping[str, tuple[str, ...]]:
    return {str(model): tuple(evict) for model, evict in value.items()}


def _sizes(value: Mapping[str, Any]) -> Mapping[str, float]:
    return {str(model): float(size) for model, size in value.items()}


@attrs.frozen
class ReplicaReport:
    """One router's state, as a cluster policy sees it.

    - ``replica``: the router's id (unique in the cluster).
    - ``models``: every model it can serve (its configuration's models).
    - ``ready``, ``loading``, ``sleeping``: models whose process is ready,
      starting (a swap in flight), or asleep (a wake costs far less than a
      cold load).
    - ``busy``: models with a request in flight.
    - ``would_evict``: for each model it can serve and does not hold ready
      or loading, what its planner would evict to load it (empty: there is
      room, nothing goes). A model missing here is one it cannot load now
      (it would have to evict a model that is busy, loading or stopping).
    - ``queued``: requests waiting in its queue (not yet served), over all
      models.
    - ``in_flight``: requests being served, over all models.
    - ``free_memory``: memory free before any eviction, in the unit of its
      planner's sizes, when the planner declares sizes
      (:class:`~swapcore.MemoryBudgetPlanner`,
      :class:`~swapcore.planners.placement.PlacementPlanner`: the sum over
      its devices); None when unknown (no sizes, or an infinite budget).
    - ``sizes``: the memory each model needs, in the same unit, when the
      planner declares sizes (empty otherwise). With ``free_memory`` it
      lets a caller that has just sent the replica a load tell which other
      models still fit beside it before the next report.

    A report is plain data: :meth:`to_dict` and :meth:`from_dict` carry it
    across processes (Ray's routing stats).
    """

    replica: str
    models: frozenset[str] = attrs.field(converter=_names)
    ready: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    loading: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    sleeping: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    busy: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    would_evict: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, converter=_evictions)
    queued: int = 0
    in_flight: int = 0
    free_memory: float | None = None
    sizes: Mapping[str, float] = attrs.field(factory=dict, converter=_sizes)

    def holds(self, model: str) -> bool:
        """True when ``model`` is ready or loading here."""
        return model in self.ready or model in self.loading

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-compatible data (sorted lists, so equal reports give equal dicts)."""
        return {
            "replica": self.replica,
            "models": sorted(self.models),
            "ready": sorted(self.ready),
            "loading": sorted(self.loading),
            "sleeping": sorted(self.sleeping),
            "busy": sorted(self.busy),
            "would_evict": {m: list(e) for m, e in sorted(self.would_evict.items())},
            "queued": self.queued,
            "in_flight": self.in_flight,
            "free_memory": self.free_memory,
            "sizes": dict(sorted(self.sizes.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplicaReport:
        """The report :meth:`to_dict` gave; raises ``ValueError`` naming a missing or bad key.

        ``replica`` and ``models`` are required; the other keys default to
        an empty report's values. Unknown keys are ignored (a newer
        version's report still reads).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"replica report: expected a mapping, not {type(data).__name__}")
        if "replica" not in data:
            raise ValueError("replica report: missing key 'replica'")
        replica = data["replica"]
        if not isinstance(replica, str):
            raise ValueError(f"replica report: 'replica' must be a string, not {replica!r}")
        where = f"replica report {replica!r}"
        if "models" not in data:
            raise ValueError(f"{where}: missing key 'models'")
        evictions = data.get("would_evict", {})
        if not isinstance(evictions, Mapping):
            raise ValueError(f"{where}: 'would_evict' must be a mapping, not {evictions!r}")
        free = data.get("free_memory")
        if free is not None and (isinstance(free, bool) or not isinstance(free, (int, float))):
            raise ValueError(f"{where}: 'free_memory' must be a number or null, not {free!r}")
        return cls(
            replica=replica,
            models=_ids(data, "models", where),
            ready=_ids(data, "ready", where),
            loading=_ids(data, "loading", where),
            sleeping=_ids(data, "sleeping", where),
            busy=_ids(data, "busy", where),
            would_evict={
                str(model): _ids(evictions, model, f"{where}: 'would_evict'") for model in evictions
            },
            queued=_count(data, "queued", where),
            in_flight=_count(data, "in_flight", where),
            free_memory=None if free is None else float(free),
            sizes=_size_map(data, where),
        )


def _size_map(data: Mapping[str, Any], where: str) -> dict[str, float]:
    """``data["sizes"]``: model ids to numbers (missing: none)."""
    value = data.get("sizes", {})
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: 'sizes' must be a mapping, not {value!r}")
    for model, size in value.items():
        if not isinstance(model, str) or isinstance(size, bool):
            raise ValueError(f"{where}: 'sizes' must map ids to numbers, not {model!r}: {size!r}")
        if not isinstance(size, (int, float)) or not math.isfinite(size) or size < 0:
            raise ValueError(f"{where}: 'sizes'[{model!r}] must be a number >= 0, not {size!r}")
    return {model: float(size) for model, size in value.items()}


def _ids(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    """``data[key]`` as ids: a list of strings (missing: none)."""
    value = data.get(key, ())
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"{where}: {key!r} must be a list of ids, not {value!r}")
    bad = [item for item in value if not isinstance(item, str)]
    if bad:
        raise ValueError(f"{where}: {key!r} must hold strings, not {bad[0]!r}")
    return tuple(value)


def _count(data: Mapping[str, Any], key: str, where: str) -> int:
    """``data[key]`` as a count: an int of at least 0 (missing: 0)."""
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: {key!r} must be an int of at least 0, not {value!r}")
    return value


def report_from_router(replica: str, router: BaseRouter) -> ReplicaReport:
    """``router``'s report right now, under the id ``replica``.

    ``would_evict`` is its planner's answer for each model it does not
    hold, over the running set its scheduler would pass (the running
    models, stopping ones included, plus the targets of swaps in flight);
    a model whose eviction would take a busy, loading or stopping model is
    left out (it cannot load without waiting), and so is a model that is
    stopping itself or whose planner raises or answers with a model that
    is not running. ``free_memory`` is counted over the same running set:
    a stopping model still holds its memory, a swap's target already
    claims its own (so it is 0 while the two overlap). Call it on the
    router's event loop.
    """
    snapshot = router.snapshot()
    return build_replica_report(
        replica,
        models=router.models,
        running=router.running_models(),
        swapping=[m for m, snap in snapshot.models.items() if snap.swapping],
        sleeping=[m for m in router.models if router.model_state(m) is ProcessState.SLEEPING],
        busy=[m for m, snap in snapshot.models.items() if snap.in_flight],
        planner=router.planner,
        queued=sum(snap.queued + snap.waiting for snap in snapshot.models.values()),
        in_flight=sum(snap.in_flight for snap in snapshot.models.values()),
    )


def build_replica_report(
    replica: str,
    *,
    models: Iterable[str],
    running: Mapping[str, ProcessState],
    swapping: Iterable[str],
    sleeping: Iterable[str],
    busy: Iterable[str],
    planner: SwapPlanner,
    queued: int,
    in_flight: int,
) -> ReplicaReport:
    """The report of a router in the state given; the rules of :func:`report_from_router`.

    ``running`` maps the models starting, ready or stopping to their state,
    ``swapping`` names the targets of the swaps in flight, ``sleeping`` the
    models asleep, ``busy`` those with a request in flight; ``queued`` and
    ``in_flight`` count requests over all models. ``ready`` is the READY
    models; ``loading`` the STARTING ones and the swap targets not ready;
    ``sleeping`` leaves out a model being woken. ``would_evict`` asks
    ``planner.eviction_for(model, live)`` (``live``: the running set the
    scheduler passes, the running models, stopping ones included, plus the
    swap targets, sorted) for each model neither ready, loading nor
    stopping, and leaves out a model whose eviction would take a busy,
    loading or stopping model, or whose planner call raises or names the
    target or a model not running (the router reports that fault when a
    request meets it). ``free_memory`` is read from the planner's sizes over
    ``live``. The live router (:func:`report_from_router`) and the cluster
    simulator (:func:`swapcore.sim.simulate_cluster`) both build their
    reports here.
    """
    names = frozenset(models)
    swapping = set(swapping)
    ready = {m for m, s in running.items() if s is ProcessState.READY}
    loading = ({m for m, s in running.items() if s is ProcessState.STARTING} | swapping) - ready
    stopping = {m for m, s in running.items() if s is ProcessState.STOPPING} - loading
    asleep = set(sleeping) - loading
    busy_set = set(busy)
    blocked = busy_set | loading | stopping
    live = tuple(sorted({*running, *swapping}))
    would_evict: dict[str, tuple[str, ...]] = {}
    for model in sorted(names):
        if model in ready or model in loading or model in stopping:
            continue
        try:
            evict = tuple(planner.eviction_for(model, live))
        except Exception:  # the router reports the fault when a request meets it
            continue
        if model in evict or not set(evict) <= set(live) or blocked.intersection(evict):
            continue
        would_evict[model] = evict
    return ReplicaReport(
        replica=replica,
        models=names,
        ready=ready,
        loading=loading,
        sleeping=asleep,
        busy=busy_set,
        would_evict=would_evict,
        queued=queued,
        in_flight=in_flight,
        free_memory=_free_memory(planner, live),
        sizes=_declared_sizes(planner, names),
    )


def _declared_sizes(planner: SwapPlanner, models: Iterable[str]) -> dict[str, float]:
    """Each model's size when the planner declares sizes (empty when it does not)."""
    if isinstance(planner, (PlacementPlanner, MemoryBudgetPlanner)):
        sizes = planner.sizes
        return {m: float(sizes[m]) for m in models if m in sizes and math.isfinite(sizes[m])}
    return {}


def _free_memory(planner: SwapPlanner, running: Sequence[str]) -> float | None:
    """Memory left beside ``running`` in the planner's unit, or None when it declares no sizes."""
    if isinstance(planner, PlacementPlanner):
        free = float(sum(room for room in planner.free(running).values() if room > 0))
    elif isinstance(planner, MemoryBudgetPlanner) and math.isfinite(planner.budget):
        sizes = planner.sizes
        free = float(planner.budget - sum(sizes.get(m, 0.0) for m in running))
    else:
        return None
    # Below zero while a swap's target is counted beside the models it evicts.
    return max(free, 0.0)
