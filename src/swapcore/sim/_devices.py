"""The simulator's devices (GPUs): where each loaded model sits and each device's peak use.

:class:`DeviceUse` keeps the accounting; the planner only decides. A planner
that places models (one with ``placement_of``, such as
:class:`~swapcore.PlacementPlanner`) is asked where each swap's target goes
right after the swap starts; the shares are added to their devices when
the load (or wake) begins and taken off when the model's stop (or sleep)
ends, as its memory is held from the start of its load to the end of its
stop. A planner that does not place models (max-loaded, memory, groups,
matrix) knows one budget at most, not the devices: the simulator then puts
each model whole on the device with the most room at that moment, as a
server started on one GPU would be, even when that room is too small; only
a model larger than every device is spread over them, the most room first,
what is left going on the device with the most room. A load that takes a
device over its budget is an overcommit: in reality, a start that runs out
of memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

from swapcore.errors import ConfigError
from swapcore.sim.profiles import ModelProfile

__all__ = ["DeviceUse", "check_devices"]

# Shares and budgets are floats here; a device holding exactly its budget must
# not count as over it because of a rounding in the last bit.
_SLACK = 1e-9


def check_devices(devices: object, profiles: Mapping[str, ModelProfile]) -> dict[str, float]:
    """``devices`` as a checked ``{name: budget}``, every model sized and able to fit somewhere.

    Raises :class:`~swapcore.ConfigError` for a device without a positive
    finite budget, a model without a ``size`` or one larger than all the
    devices together.
    """
    if not isinstance(devices, Mapping) or not devices:
        raise ConfigError("devices: must map at least one device to its budget")
    budgets: dict[str, float] = {}
    for name, budget in devices.items():
        if (
            isinstance(budget, bool)
            or not isinstance(budget, (int, float))
            or not budget > 0
            or budget == float("inf")
        ):
            raise ConfigError(f"devices.{name}: must be a finite number > 0, got {budget!r}")
        budgets[str(name)] = float(budget)
    total = sum(budgets.values())
    for model, profile in profiles.items():
        if profile.size is None:
            raise ConfigError(
                f"models.{model}.size: required when devices are set (in the budgets' unit)"
            )
        if profile.size > total * (1 + _SLACK):
            raise ConfigError(
                f"models.{model}.size: {profile.size:g} exceeds what all devices together "
                f"can hold ({total:g}); the model could never load"
            )
    return budgets


@attrs.define(eq=False, slots=True)
class DeviceUse:
    """Each device's use and peak, the shares of every loaded model, overcommits and splits."""

    budgets: dict[str, float]
    placement_of: Callable[[str], Mapping[str, float]] | None = None
    use: dict[str, float] = attrs.Factory(dict)
    peak: dict[str, float] = attrs.Factory(dict)
    held: dict[str, Mapping[str, float]] = attrs.Factory(dict)
    pending: dict[str, Mapping[str, float]] = attrs.Factory(dict)
    overcommits: int = 0
    splits: int = 0

    def __attrs_post_init__(self) -> None:
        self.use = dict.fromkeys(self.budgets, 0.0)
        self.peak = dict.fromkeys(self.budgets, 0.0)

    def swap_started(self, model: str) -> None:
        """Read where the planner put the swap's target (nothing when it does not place)."""
        if self.placement_of is not None:
            placement = self.placement_of(model)
            if placement:
                self.pending[model] = dict(placement)

    def load(self, model: str, size: float) -> None:
        """``model`` begins to load or wake: its shares occupy their devices from now."""
        placement = self.pending.pop(model, None) or self._server_places(size)
        use, peak, budgets = self.use, self.peak, self.budgets
        over = False
        for device, share in placement.items():
            use[device] += share
            if use[device] > peak[device]:
                peak[device] = use[device]
            if use[device] > budgets[device] * (1 + _SLACK):
                over = True
        self.overcommits += over
        self.splits += len(placement) > 1
        self.held[model] = placement

    def release(self, model: str) -> None:
        """``model`` stopped or fell asleep: its devices are free of it."""
        for device, share in self.held.pop(model, {}).items():
            self.use[device] -= share

    def forget(self, model: str) -> None:
        """A swap to ``model`` loaded nothing (it was ready): drop the placement read."""
        self.pending.pop(model, None)

    def _server_places(self, size: float) -> dict[str, float]:
        """Where a server left to itself puts a model: see the module's docstring."""
        room = {d: self.budgets[d] - self.use[d] for d in self.budgets}
        most = max(room, key=lambda d: room[d])  # the first of equals
        if size <= max(self.budgets.values()):
            return {most: size}
        placement: dict[str, float] = {}
        left = size
        for device in sorted(room, key=lambda d: -room[d]):
            if room[device] <= 0 or left <= 0:
                break
            share = min(room[device], left)
            placement[device] = share
            left -= share
        if left > 0:
            placement[most] = placement.get(most, 0.0) + left
        return placement
