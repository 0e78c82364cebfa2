"""The gateway's view of its models: names, upstream URLs, listings and peers.

Internal to :mod:`swapcore.adapters.asgi`. Pure lookups over the router, the
optional configuration and the constructor's options; no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from swapcore.adapters._errors import GatewayHTTPError
from swapcore.errors import ConfigError
from swapcore.process import Process, ProcessState

if TYPE_CHECKING:
    from swapcore.config.filters import Filters
    from swapcore.config.schema import GatewayConfig, ModelConfig, PeerConfig
    from swapcore.router import BaseRouter

__all__ = ["Catalog", "Upstreams", "split_upstream_path"]

Upstreams: TypeAlias = "Mapping[str, str] | Callable[[str], str]"
"""Model id -> the upstream server's base URL, as a mapping or a function."""

_SHOWN = frozenset(
    {ProcessState.STARTING, ProcessState.READY, ProcessState.STOPPING, ProcessState.SLEEPING}
)


class Catalog:
    """Resolves request names to local models or peers, and describes the models.

    Arguments as for :class:`~swapcore.adapters.asgi.GatewayApp` (already
    defaulted from the config there); invalid ones raise ``ConfigError``.
    """

    def __init__(
        self,
        router: BaseRouter,
        config: GatewayConfig | None,
        *,
        upstreams: Upstreams | None,
        peers: Mapping[str, PeerConfig],
        send_loading_state: bool | None,
    ) -> None:
        if not (upstreams is None or callable(upstreams) or _is_url_map(upstreams)):
            raise ConfigError("upstreams: must map model ids to base URLs, or be callable")
        for key, peer in peers.items():
            if getattr(peer, "name", None) != key:
                raise ConfigError(f"peers[{key!r}]: must be a PeerConfig named {key!r}")
        if send_loading_state is not None and not isinstance(send_loading_state, bool):
            raise ConfigError("send_loading_state: must be a bool or None")
        self._router = router
        self._config = config
        self._upstreams = upstreams
        self._peers: tuple[PeerConfig, ...] = tuple(peers.values())
        self._send_loading_state = send_loading_state
        self._created = int(time.time())

    # ------------------------------------------------------------ resolving

    def resolve_local(self, name: str) -> str | None:
        """The local model id ``name`` denotes (an id or an alias), if the router handles it."""
        config = self._config
        model = (config.resolve_model(name) if config is not None else None) or name
        return model if self._router.handles(model) else None

    def resolve_peer(self, name: str) -> tuple[PeerConfig, str] | None:
        """``(peer, model)`` for ``peer/model``, or for a bare model exactly one peer serves.

        The same rule as :meth:`GatewayConfig.resolve_peer
        <swapcore.config.GatewayConfig.resolve_peer>`; call
        :meth:`resolve_local` first (local names win).
        """
        for peer in self._peers:
            prefix = f"{peer.name}/"
            if name.startswith(prefix) and name[len(prefix) :] in peer.models:
                return peer, name[len(prefix) :]
        found = [peer for peer in self._peers if name in peer.models]
        if len(found) == 1:
            return found[0], name
        return None

    def use_model_name(self, model: str) -> str | None:
        """The name to write into the forwarded body (``useModelName``), or None."""
        entry = self._entry(model)
        return entry.use_model_name if entry is not None else None

    def filters(self, model: str) -> Filters | None:
        """The local model's request filters (None without a configuration)."""
        entry = self._entry(model)
        return entry.filters if entry is not None else None

    def loads_visibly(self, model: str) -> bool:
        """Whether waiting streaming chat requests for ``model`` get loading progress."""
        if self._send_loading_state is not None:
            return self._send_loading_state
        entry = self._entry(model)
        return entry is not None and entry.send_loading_state

    def upstream_base(self, model: str, process: Process) -> str:
        """The base URL to forward to: ``upstreams``, the process' ``url``, the config's proxy.

        Raises a 500 :class:`GatewayHTTPError` when none is known.
        """
        url = self._given_upstream(model)
        if url is None:
            url = getattr(process, "url", None)
        if not isinstance(url, str) or not url:
            url = self._config_proxy(model)
        if url is None:
            raise GatewayHTTPError(
                500, f"no upstream URL for model {model!r}", kind="server_error", code="no_upstream"
            )
        return url

    # -------------------------------------------------------------- listing

    def model_list(self) -> list[dict[str, Any]]:
        """``/v1/models`` entries, sorted by id: listed models, aliases on request, peers."""
        config = self._config
        with_aliases = config is not None and config.include_aliases_in_list
        data: list[dict[str, Any]] = []
        for model in self._router.models:
            entry = self._entry(model)
            if entry is not None and entry.unlisted:
                continue
            data.append(self._record(model, entry))
            if entry is not None and with_aliases:
                data += [self._record(alias, entry) for alias in entry.aliases]
        for peer in self._peers:
            for model in peer.models:
                record = self._record(f"{peer.name}/{model}", None)
                record["name"] = f"{peer.name}: {model}"
                record["meta"] = {"llamaswap": {"peerID": peer.name}}
                data.append(record)
        data.sort(key=lambda record: str(record["id"]))
        return data

    def running(self) -> list[dict[str, Any]]:
        """``/running`` entries: models alive (running or asleep), being swapped in, or queued for.

        Each has its tier (``state``) and its swap costs (learned or configured);
        under a placement planner (``gpus:``), ``placement`` maps each device
        it is on to its bytes there.
        """
        running = []
        costs = self._router.costs
        placement_of = getattr(self._router.planner, "placement_of", None)
        for model, snap in self._router.snapshot().models.items():
            if snap.state not in _SHOWN and not snap.swapping and not snap.queued:
                continue
            record: dict[str, Any] = {
                "model": model,
                "state": snap.state.value,
                "in_flight": snap.in_flight,
                "queued": snap.queued,
                "waiting": snap.waiting,
                "costs": costs.describe(model),
            }
            if placement_of is not None and snap.state is not ProcessState.SLEEPING:
                record["placement"] = {d: round(b) for d, b in placement_of(model).items()}
            proxy = self._given_upstream(model) or self._config_proxy(model)
            if proxy is not None:
                record["proxy"] = proxy
            entry = self._entry(model)
            if entry is not None:
                record["ttl"] = entry.ttl
                if entry.name.strip():
                    record["name"] = entry.name.strip()
                if entry.description.strip():
                    record["description"] = entry.description.strip()
            running.append(record)
        return running

    def evictions(self) -> list[dict[str, Any]]:
        """The recent swaps that evicted models, newest first, each with the planner's reason."""
        now, monotonic = time.time(), time.monotonic()
        return [
            {
                "model": swap.model,
                "evicted": list(swap.evict),
                "asleep": list(swap.asleep),
                "reason": swap.reason,
                "at": round(now - (monotonic - swap.at), 3),  # wall-clock seconds
            }
            for swap in reversed(self._router.recent_swaps())
            if swap.evict
        ]

    # -------------------------------------------------------------- helpers

    def _entry(self, model: str) -> ModelConfig | None:
        config = self._config
        return config.models.get(model) if config is not None else None

    def _given_upstream(self, model: str) -> str | None:
        upstreams = self._upstreams
        if upstreams is None:
            return None
        if callable(upstreams):
            return str(upstreams(model))
        return upstreams.get(model)

    def _config_proxy(self, model: str) -> str | None:
        entry = self._entry(model)
        return entry.proxy if entry is not None else None

    def _record(self, model_id: str, entry: ModelConfig | None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": model_id,
            "object": "model",
            "created": self._created,
            "owned_by": "swapcore",
        }
        if entry is not None:
            if entry.name.strip():
                record["name"] = entry.name.strip()
            if entry.description.strip():
                record["description"] = entry.description.strip()
            if entry.metadata:
                record["meta"] = {"llamaswap": dict(entry.metadata)}
        return record


def _is_url_map(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def split_upstream_path(
    path: str, resolve: Callable[[str], str | None]
) -> tuple[str, list[str], int] | None:
    """The model an ``/upstream/<model>/<rest>`` path names, or None.

    The shortest run of leading segments that ``resolve`` turns into a
    model wins (a model id may itself contain ``/``). Returns ``(model,
    segments, count)``: the path's segments after ``/upstream/`` and how
    many of them named the model (the rest is what goes upstream).
    """
    segments = path[len("/upstream/") :].split("/")
    for count in range(1, len(segments) + 1):
        name = "/".join(segments[:count])
        model = resolve(name) if name else None
        if model is not None:
            return model, segments, count
    return None
