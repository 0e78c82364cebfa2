"""One waiting caller, as the scheduler sees it."""

from __future__ import annotations

import attrs

__all__ = ["Request"]


@attrs.define(eq=False, slots=True)
class Request:
    """One caller waiting to be served by ``model``.

    Equality is identity: two requests for the same model are different
    callers. ``id`` is a unique integer chosen by the driver, ``arrived`` the
    clock value at arrival, and ``priority`` overrides the model's configured
    priority for this request when not None (higher is served first).
    """

    model: str
    id: int = attrs.field(kw_only=True)
    arrived: float = attrs.field(kw_only=True)
    priority: int | None = attrs.field(default=None, kw_only=True)
