"""The exception tree: one root, configuration errors, and request outcomes."""

from __future__ import annotations

__all__ = [
    "ConcurrencyLimitExceeded",
    "ConfigError",
    "LeaseExpired",
    "MatrixSyntaxError",
    "ModelNotFound",
    "ModelUnloaded",
    "PolicyError",
    "RouterNotRunning",
    "RouterShutdown",
    "RoutingError",
    "SwapFailed",
    "SwapcoreError",
]


class SwapcoreError(Exception):
    """Root of every error swapcore raises on purpose."""


class ConfigError(SwapcoreError, ValueError):
    """Invalid configuration; the message names the offending set, group or key."""


class MatrixSyntaxError(ConfigError):
    """A swap-matrix DSL expression that does not parse or resolve.

    ``set_name`` is the set whose expression is wrong; ``position`` is the
    0-based character offset of the problem in that expression, or None when
    the problem has no single position (an empty expression, a cycle).
    """

    def __init__(self, message: str, *, set_name: str, position: int | None = None) -> None:
        super().__init__(message)
        self.set_name = set_name
        self.position = position


class RoutingError(SwapcoreError):
    """The outcome of a request that could not be served."""


class ModelNotFound(RoutingError, LookupError):
    """The requested model is not handled by this router (HTTP 404)."""


class ConcurrencyLimitExceeded(RoutingError):
    """The model already has as many admitted requests as its limit allows (HTTP 429)."""


class SwapFailed(RoutingError):
    """The swap that would have served the request failed (HTTP 502).

    The process error is attached as ``__cause__``.
    """


class ModelUnloaded(RoutingError):
    """The model was unloaded while the request waited for it."""


class RouterShutdown(RoutingError):
    """The router is shutting down and serves no more requests (HTTP 503)."""


class PolicyError(RoutingError):
    """A planner or scheduler hook failed while deciding this request (HTTP 500).

    The hook's exception is attached as ``__cause__`` (none when the hook
    returned an invalid answer); the message names the class, the method
    and its arguments, e.g. ``planner MyPlanner.eviction_for('a', ['b'])
    raised ValueError: boom``. Only the request the call was made for
    fails; the router keeps serving the others.
    """


class LeaseExpired(RoutingError):
    """A granted lease was held longer than its ``lease_timeout`` (HTTP 504).

    The router took the model back when the timeout passed and cancelled the
    task holding the lease; leaving the ``async with router.acquire(...)``
    block then raises this error instead of that cancellation (the
    ``CancelledError`` is its ``__cause__``).
    """


class RouterNotRunning(SwapcoreError, RuntimeError):
    """The router was used outside its ``async with`` block (a programming error).

    Raised by ``acquire``, ``unload`` and ``preload`` before the router was
    entered, and when entering a router a second time. Once shutdown has
    begun the same calls raise :class:`RouterShutdown` instead.
    """
