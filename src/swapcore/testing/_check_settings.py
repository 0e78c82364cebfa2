"""The hypothesis settings the ``check_*`` helpers run with (imports hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

__all__ = ["check_settings"]


def check_settings(max_examples: int) -> settings:
    """No deadline (the machine may be busy), and no explain phase.

    The failure message of a check names the call; hypothesis' explanation
    of the example would only repeat it, at up to a third of a failing run.
    """
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        phases=[phase for phase in settings().phases if phase is not Phase.explain],
    )
