"""Bounds on a configuration document, so loading any file takes bounded time and memory.

A real ``config.yaml`` is a few KiB with a few hundred values; these limits
are orders of magnitude above that and far below what would hurt. YAML
aliases let a small text describe an exponentially large value ("billion
laughs"), so sizes and depths count every use of an alias as a full copy of
the value it names. Each limit exceeded is a :class:`~swapcore.ConfigError`
naming the document and the limit.
"""

from __future__ import annotations

__all__ = ["MAX_CONFIG_BYTES", "MAX_CONFIG_DEPTH", "MAX_CONFIG_NODES"]

MAX_CONFIG_BYTES = 1 << 20
"""The largest configuration text read, in bytes of UTF-8 (1 MiB)."""
MAX_CONFIG_NODES = 100_000
"""The most values (mappings, lists, keys and scalars) a document may expand to."""
MAX_CONFIG_DEPTH = 100
"""The deepest nesting of mappings and lists a document may expand to."""
