"""The gateway's route table: which endpoint a method and path reach, matched by Starlette.

Internal to :mod:`swapcore.adapters.asgi`. Each entry is a Starlette
:class:`~starlette.routing.Route` (its path syntax and convertors, e.g.
``{model:path}`` for model names with slashes) with the endpoint it names
and the methods that endpoint answers. Entries are tried in order and the
first whose path matches decides: with a method it answers, that endpoint;
with another, ``405`` listing the methods it does answer. A few entries
(``decisive=False``) give way to later ones on another method: ``GET
/v1/audio/voices`` is routed by ``?model=``, while ``POST /v1/audio/...``
falls through to the inference routes. No entry matching is ``404``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import attrs
from starlette.routing import Match, Route

from swapcore.adapters._errors import GatewayHTTPError, check_method

__all__ = ["INFERENCE_PATHS", "MODEL_GET_PATHS", "PUBLIC", "Endpoint", "RouteEntry", "match_route"]

INFERENCE_PATHS = frozenset(
    {
        "/completion",
        "/infill",
        "/rerank",
        "/reranking",
        "/sdapi/v1/txt2img",
        "/sdapi/v1/img2img",
        "/audioapi/v1/tasks/run",
    }
)
"""POST paths outside ``/v1/`` routed by their body's model: llama.cpp's,
stable-diffusion.cpp's and audio.cpp's. Every ``POST /v1/...`` is routed so
too, and llama-swap's versionless ``/v/...`` paths reach the upstream
without their ``/v``."""
MODEL_GET_PATHS = frozenset({"/props", "/v1/audio/voices", "/sdapi/v1/loras"})
"""GET paths routed by their ``?model=`` query parameter (as llama-swap routes them)."""


class Endpoint(enum.Enum):
    """What a request reaches (the gateway's handler for it)."""

    HEALTH = "health"
    UI = "ui"
    ROOT = "root"
    MODELS = "models"
    MODEL = "model"
    RUNNING = "running"
    METRICS = "metrics"
    UNLOAD = "unload"
    UNLOAD_MODEL = "unload_model"
    API_UNLOAD = "api_unload"
    API_UNLOAD_MODEL = "api_unload_model"
    API_LOAD_MODEL = "api_load_model"
    OPERATOR = "operator"
    MODEL_GET = "model_get"
    UPSTREAM = "upstream"
    INFERENCE = "inference"
    VERSIONLESS = "versionless"


PUBLIC = frozenset({Endpoint.HEALTH, Endpoint.UI, Endpoint.ROOT})
"""Endpoints answered before the API-key check (``/ui`` asks for the key itself)."""


async def _unused(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    raise AssertionError("the route table only matches; the gateway handles")


@attrs.frozen
class RouteEntry:
    """One route: Starlette's matcher, the endpoint, its methods (None: any), and whether a
    path match with another method is a 405 here (``decisive``) or tries the next routes."""

    route: Route
    endpoint: Endpoint
    methods: tuple[str, ...] | None
    decisive: bool = True


def _entry(
    path: str, endpoint: Endpoint, methods: Sequence[str] | None, *, decisive: bool = True
) -> RouteEntry:
    listed = None if methods is None else tuple(methods)
    route = Route(path, _unused, methods=None if listed is None else list(listed))
    return RouteEntry(route, endpoint, listed, decisive)


_GET = ("GET", "HEAD")
_ROUTES: tuple[RouteEntry, ...] = (
    _entry("/health", Endpoint.HEALTH, _GET),
    _entry("/ui", Endpoint.UI, _GET),
    _entry("/ui/", Endpoint.UI, _GET),
    _entry("/ui/index.html", Endpoint.UI, _GET),
    _entry("/", Endpoint.ROOT, _GET),
    _entry("/v1/models", Endpoint.MODELS, _GET),
    _entry("/models", Endpoint.MODELS, _GET),
    _entry("/v1/models/{model:path}", Endpoint.MODEL, _GET),
    _entry("/running", Endpoint.RUNNING, _GET),
    _entry("/metrics", Endpoint.METRICS, _GET),
    _entry("/unload", Endpoint.UNLOAD, ("POST", "GET")),  # GET: llama-swap's own method
    _entry("/unload/{model:path}", Endpoint.UNLOAD_MODEL, ("POST",)),
    _entry("/api/models/unload", Endpoint.API_UNLOAD, ("POST",)),
    _entry("/api/models/unload/{model:path}", Endpoint.API_UNLOAD_MODEL, ("POST",)),
    _entry("/api/models/load/{model:path}", Endpoint.API_LOAD_MODEL, ("POST",)),
    _entry("/logs", Endpoint.OPERATOR, _GET),
    _entry("/logs/stream", Endpoint.OPERATOR, ("GET",)),
    _entry("/logs/stream/{source:path}", Endpoint.OPERATOR, ("GET",)),
    _entry("/api/events", Endpoint.OPERATOR, ("GET",)),
    *(_entry(path, Endpoint.MODEL_GET, _GET, decisive=False) for path in sorted(MODEL_GET_PATHS)),
    _entry("/upstream", Endpoint.UPSTREAM, None),
    _entry("/upstream/{rest:path}", Endpoint.UPSTREAM, None),
    _entry("/v1/{rest:path}", Endpoint.INFERENCE, ("POST",)),
    *(_entry(path, Endpoint.INFERENCE, ("POST",)) for path in sorted(INFERENCE_PATHS)),
    _entry("/v/{rest:path}", Endpoint.VERSIONLESS, ("POST",)),
)


def match_route(method: str, path: str) -> Endpoint:
    """The endpoint ``method`` and ``path`` reach; a 405 or 404 :class:`GatewayHTTPError` else."""
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for entry in _ROUTES:
        found, _ = entry.route.matches(scope)
        if found is Match.NONE:
            continue
        if entry.methods is None or method in entry.methods:
            return entry.endpoint
        if entry.decisive:
            check_method(method, *entry.methods)  # raises 405 with Allow
    raise GatewayHTTPError(
        404, f"no route for {path}", kind="invalid_request_error", code="not_found"
    )
