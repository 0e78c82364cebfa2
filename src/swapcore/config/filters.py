"""Request filters: parameters removed from, or set in, the JSON body sent upstream.

llama-swap's ``filters`` on a model or a peer. They rewrite the top level of
a JSON request body before it is forwarded, in this order:

1. ``stripParams``: the named parameters are removed;
2. ``setParams``: each parameter is set (added, or its value replaced),
   in sorted key order;
3. ``setParamsByID``: the parameters listed under the model name the client
   asked for (the id or alias in the request's ``model``) are set the same
   way, after ``setParams``, so they win over it.

``model`` is protected: it is never stripped nor set (the gateway routes by
it). A parameter that is present keeps its place in the body; one that is
added goes at the end, as llama-swap's in-place JSON edits do.

:func:`apply_filters` is the rule on a parsed body; the gateway applies the
same rule to the body's bytes without parsing them.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from swapcore.errors import ConfigError

__all__ = ["PROTECTED_PARAMS", "Filters", "apply_filters"]

PROTECTED_PARAMS = frozenset({"model"})
"""Parameters filters never strip nor set: the gateway routes by them."""


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


def _frozen_by_id(value: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    return types.MappingProxyType({key: _frozen(params) for key, params in value.items()})


def _sorted_unique(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError("Filters.strip_params: must be a collection of names, not a string")
    return tuple(sorted(set(value)))


@attrs.frozen(kw_only=True)
class Filters:
    """One model's or peer's request filters, already cleaned.

    ``strip_params``: parameter names removed from the body (sorted, no
    duplicates, never ``model``). ``set_params``: parameters set in every
    request. ``set_params_by_id``: requested model name -> parameters set
    after ``set_params`` when the request names exactly that model. Values
    are JSON values (strings, numbers, booleans, None, lists, mappings with
    string keys). The empty default filters nothing. Naming ``model``
    anywhere raises :class:`~swapcore.ConfigError`.
    """

    strip_params: tuple[str, ...] = attrs.field(default=(), converter=_sorted_unique)
    set_params: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_frozen, eq=True, hash=False
    )
    set_params_by_id: Mapping[str, Mapping[str, Any]] = attrs.field(
        factory=dict, converter=_frozen_by_id, eq=True, hash=False
    )

    def __attrs_post_init__(self) -> None:
        names = [*self.strip_params, *self.set_params]
        for params in self.set_params_by_id.values():
            names.extend(params)
        for name in names:
            if name in PROTECTED_PARAMS:
                raise ConfigError(f"Filters: must not strip or set the protected {name!r}")

    @property
    def empty(self) -> bool:
        """True when these filters change no request."""
        return not (self.strip_params or self.set_params or self.set_params_by_id)

    def assignments(self, requested: str) -> dict[str, Any]:
        """The parameters set for a request naming ``requested``, in the order they are set.

        ``set_params`` in sorted key order, then ``set_params_by_id[requested]``
        in sorted key order; a key in both keeps its first place and takes
        the later value.
        """
        result = {key: self.set_params[key] for key in sorted(self.set_params)}
        by_id = self.set_params_by_id.get(requested)
        if by_id:
            for key in sorted(by_id):
                result[key] = by_id[key]
        return result

    def summary(self) -> dict[str, Any]:
        """The parameters these filters name, as plain data (values left out).

        ``strip_params`` and ``set_params`` list names; ``set_params_by_id``
        maps each requested name to the names it sets. Values are not shown:
        a configuration may set a secret in the body.
        """
        return {
            "strip_params": list(self.strip_params),
            "set_params": sorted(self.set_params),
            "set_params_by_id": {
                name: sorted(params) for name, params in self.set_params_by_id.items()
            },
        }

    def changes(self, requested: str) -> bool:
        """Whether a request naming ``requested`` may be changed at all."""
        return bool(self.strip_params or self.set_params or self.set_params_by_id.get(requested))


def apply_filters(body: Mapping[str, Any], filters: Filters, requested: str) -> dict[str, Any]:
    """The body ``filters`` make of ``body`` for a request naming ``requested``.

    A new dict (``body`` is not changed): the stripped parameters removed,
    then the set ones set, as the module describes. Values are not copied.
    """
    result = {key: value for key, value in body.items() if key not in filters.strip_params}
    result.update(filters.assignments(requested))
    return result
