"""The group planner: llama-swap's ``groups`` eviction policy.

Each model belongs to exactly one named :class:`Group`. A group's flags say
what loading one of its members does to the rest:

- ``swap``: members of the same group stop each other (one member at a time);
- ``exclusive``: loading a member stops every non-persistent *other* group;
- ``persistent``: other groups' exclusive loads never stop this group.

Models in no group form the reserved group ``"(default)"`` (swap and
exclusive), so a configuration without groups runs one model at a time.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from swapcore.errors import ConfigError
from swapcore.planners.base import SwapPlanner

__all__ = ["DEFAULT_GROUP", "Group", "GroupPlanner"]

DEFAULT_GROUP = "(default)"
"""Name of the group that holds every model no configured group claims."""

_log = logging.getLogger("swapcore.groups")

_FIELDS = ("members", "swap", "exclusive", "persistent")


def _to_members(value: Iterable[str]) -> tuple[str, ...]:
    """Normalise ``members`` to a tuple of distinct non-empty strings, order kept."""
    # A bare string is iterable, and "qwen" would silently become four one-letter
    # models; YAML users write `members: qwen` by mistake often enough to name it.
    if isinstance(value, (str, bytes)):
        raise ConfigError("members must be a list of model names, not a string")
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise ConfigError(f"members must be a list of model names, got {type(value).__name__}")
    members = tuple(value)
    seen: set[str] = set()
    for member in members:
        if not isinstance(member, str) or not member:
            raise ConfigError(f"members must be non-empty strings, got {member!r}")
        if member in seen:
            raise ConfigError(f"duplicate member {member!r}")
        seen.add(member)
    return members


def _is_flag(_instance: object, attribute: attrs.Attribute[bool], value: object) -> None:
    # `swap: "false"` from a hand-written dict would be truthy; refuse non-bools.
    if not isinstance(value, bool):
        raise ConfigError(f"{attribute.name} must be true or false, got {value!r}")


@attrs.frozen
class Group:
    """One named group's membership and flags (the group's name is its key).

    ``members`` is normalised to a tuple of distinct non-empty strings in the
    given order; a bare string, a non-string member or a duplicate member
    raises :class:`~swapcore.ConfigError`, as does a non-bool flag. The
    defaults (``swap=True, exclusive=True, persistent=False``) are llama-swap's.
    """

    members: tuple[str, ...] = attrs.field(converter=_to_members)
    swap: bool = attrs.field(default=True, validator=_is_flag)
    exclusive: bool = attrs.field(default=True, validator=_is_flag)
    persistent: bool = attrs.field(default=False, validator=_is_flag)

    @classmethod
    def from_config(cls, name: str, raw: Mapping[str, object]) -> Group:
        """Build a group from its llama-swap config mapping (``members``, flags).

        Missing keys take the defaults (``members`` defaults to no members, as
        in llama-swap). Unknown keys and invalid values raise
        :class:`~swapcore.ConfigError` whose message starts with
        ``group '<name>': ``.
        """
        if not isinstance(raw, Mapping):
            raise ConfigError(f"group {name!r}: expected a mapping, got {type(raw).__name__}")
        unknown = [key for key in raw if key not in _FIELDS]
        if unknown:
            raise ConfigError(
                f"group {name!r}: unknown key {unknown[0]!r} (expected one of {', '.join(_FIELDS)})"
            )
        fields: dict[str, Any] = {"members": (), **raw}
        try:
            return cls(**fields)
        except ConfigError as exc:
            raise ConfigError(f"group {name!r}: {exc}") from None


_IMPLICIT_DEFAULT = Group((), swap=True, exclusive=True, persistent=False)


class GroupPlanner(SwapPlanner):
    """Evicts by group membership, exactly as llama-swap's ``groups`` config does.

    ``groups`` maps group names to :class:`Group` objects, or to their
    llama-swap config mappings (``{"members": [...], "swap": ...}``), whose
    errors then name the group. ``models`` lists the models known at
    construction; those in no group join ``"(default)"`` (swap, exclusive).
    A model seen only at query time, as target or as running, is treated as
    a member of ``"(default)"`` too, without changing the planner.

    Declaring a group named ``"(default)"`` configures that group explicitly:
    its flags replace the defaults, its members come first and every
    ungrouped model still joins it. (llama-swap silently overwrote such a
    group, dropping its members from every group.)

    For a target T in group G, a running model M != T is evicted when M is in
    G and G.swap is true, or M is in another group H, G.exclusive is true and
    H.persistent is false. So a member of a non-exclusive group never stops
    other groups, even exclusive ones (kept for compatibility).

    Raises :class:`~swapcore.ConfigError` for a model in two groups (naming
    the model and both groups), an empty or non-string group name, and any
    invalid group. The planner is immutable after construction.
    """

    def __init__(
        self,
        groups: Mapping[str, Group | Mapping[str, object]],
        *,
        models: Iterable[str] = (),
    ) -> None:
        if not isinstance(groups, Mapping):
            raise ConfigError(
                f"groups must be a mapping of names to groups, got {type(groups).__name__}"
            )
        declared: dict[str, Group] = {}
        for name, group in groups.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"group names must be non-empty strings, got {name!r}")
            if isinstance(group, Group):
                declared[name] = group
            elif isinstance(group, Mapping):
                declared[name] = Group.from_config(name, group)
            else:
                raise ConfigError(
                    f"group {name!r}: expected a Group or a mapping, got {type(group).__name__}"
                )

        group_of: dict[str, str] = {}
        for name, group in declared.items():
            for member in group.members:
                first = group_of.setdefault(member, name)
                if first != name:
                    raise ConfigError(
                        f"model {member!r} is in more than one group: {first!r} and {name!r}"
                    )

        ungrouped = [m for m in dict.fromkeys(_to_models(models)) if m not in group_of]
        default = declared.get(DEFAULT_GROUP, _IMPLICIT_DEFAULT)
        if ungrouped:
            default = attrs.evolve(default, members=(*default.members, *ungrouped))
            for member in ungrouped:
                group_of[member] = DEFAULT_GROUP
        if default.members or DEFAULT_GROUP in declared:
            declared[DEFAULT_GROUP] = default

        self._groups: Mapping[str, Group] = types.MappingProxyType(declared)
        self._group_of = group_of
        # The whole decision reduces to "which groups does a target in G stop?",
        # computed once here: eviction_for runs for every queued request on every
        # queue drain, so it must be a couple of dict lookups per running model.
        flags = {**declared, DEFAULT_GROUP: default}
        self._victims: dict[str, frozenset[str]] = {
            name: frozenset(
                other
                for other, other_group in flags.items()
                if (other == name and group.swap)
                or (other != name and group.exclusive and not other_group.persistent)
            )
            for name, group in flags.items()
        }

    @property
    def groups(self) -> Mapping[str, Group]:
        """Every group by name (read-only), in declaration order.

        Includes ``"(default)"`` with its full membership when it has members
        or was declared; it is last unless it was declared.
        """
        return self._groups

    def group_of(self, model: str) -> str:
        """Return the name of ``model``'s group; ``"(default)"`` for any ungrouped model."""
        return self._group_of.get(model, DEFAULT_GROUP)

    def eviction_for(self, target: str, running: Sequence[str]) -> tuple[str, ...]:
        """Return the running models that must stop before ``target`` loads.

        Pure and silent. The result keeps ``running``'s order, holds each
        model once and never contains ``target``.
        """
        victims = self._victims[self._group_of.get(target, DEFAULT_GROUP)]
        if not victims:
            return ()
        group_of = self._group_of.get
        evict = [m for m in running if m != target and group_of(m, DEFAULT_GROUP) in victims]
        if len(evict) > 1 and len(set(evict)) != len(evict):
            evict = list(dict.fromkeys(evict))
        return tuple(evict)

    def eviction_reason(self, target: str, model: str) -> str | None:
        """Explain why loading ``target`` stops ``model``, or return None if it does not.

        Pure; meant for explanations (CLI, logs, examples), not the hot path.
        """
        if model == target:
            return None
        target_group, model_group = self.group_of(target), self.group_of(model)
        if model_group not in self._victims[target_group]:
            return None
        if model_group == target_group:
            return f"same group {target_group!r} (swap)"
        return f"{target_group!r} is exclusive, {model_group!r} is not persistent"

    def on_swap_start(self, target: str, running: Sequence[str]) -> None:
        """Log one INFO line on ``swapcore.groups`` naming target, group and evict set."""
        if _log.isEnabledFor(logging.INFO):
            evict = self.eviction_for(target, running)
            _log.info(
                "swap to %r (group %r): evict %s",
                target,
                self.group_of(target),
                ", ".join(map(repr, evict)) if evict else "nothing",
            )

    def __repr__(self) -> str:
        groups = ", ".join(
            f"{name!r}: {len(group.members)} members" for name, group in self._groups.items()
        )
        return f"GroupPlanner({{{groups}}})"


def _to_models(models: Iterable[str]) -> list[str]:
    """Validate the ``models=`` argument: an iterable of non-empty strings."""
    if isinstance(models, (str, bytes)):
        raise ConfigError("models must be a collection of model names, not a string")
    result = list(models)
    for model in result:
        if not isinstance(model, str) or not model:
            raise ConfigError(f"models must be non-empty strings, got {model!r}")
    return result
