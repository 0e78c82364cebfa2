"""Shared test configuration: hypothesis profiles, and logging left as found.

``HYPOTHESIS_PROFILE=ci`` (set by .ci/run's environment, CI=true) runs more
examples than the default developer profile; neither has a deadline, since
the machine is shared and timing belongs in benchmarks/.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") == "true" else "dev")
)


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """Undo what an in-process ``swapcore`` command does to logging.

    ``main()`` sets the ``swapcore`` loggers' levels and adds filters to the
    root handlers; without this a later test's ``caplog`` would miss records.
    """
    names = ("swapcore", "swapcore.adapters.subprocess.output")
    levels = {name: logging.getLogger(name).level for name in names}
    root = logging.getLogger()
    filters = {handler: list(handler.filters) for handler in root.handlers}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    for handler in root.handlers:
        handler.filters[:] = filters.get(handler, handler.filters)
