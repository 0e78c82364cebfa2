"""``swapcore serve --watch-config``: watch the config file, apply each new version.

:class:`FileWatcher` polls the file; :class:`ConfigReloader` loads a new
version and hands it to the running router and app (see the
"Reloading the configuration" section of ``docs/gateway.md``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from swapcore.errors import ConfigError

if TYPE_CHECKING:
    from swapcore.adapters.asgi import GatewayApp
    from swapcore.config import GatewayConfig
    from swapcore.costs import SwapCosts
    from swapcore.process import Process
    from swapcore.router import BaseRouter

__all__ = ["ConfigReloader", "FileWatcher"]

logger = logging.getLogger("swapcore.serve")

DEFAULT_INTERVAL = 1.0
"""Seconds between two looks at the watched file."""


class FileWatcher:
    """Calls ``on_change()`` each time the file at ``path`` has new content.

    Every ``interval`` seconds the file's modification time, size and inode
    are read; once they have changed and then stayed the same for one more
    look (an editor's write is complete), the content is read and
    ``on_change`` is awaited if its SHA-256 differs from the last content
    seen (a ``touch`` does nothing). A file that is missing for a while
    (an editor replacing it) is simply looked at again.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_change: Callable[[], Awaitable[object]],
        *,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self._path = os.fspath(path)
        self._on_change = on_change
        self._interval = interval
        self._seen = self._stamp()
        self._checked = self._seen
        self._digest = self._read_digest()

    async def run(self) -> None:
        """Watch until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.poll()
            except Exception:  # a failed reload must not end the watch
                logger.exception("reloading %s failed", self._path)

    async def poll(self) -> bool:
        """Look at the file once; True when ``on_change`` was called."""
        stamp = self._stamp()
        if stamp != self._seen:
            self._seen = stamp  # changed: act once it has settled
            return False
        if stamp is None or stamp == self._checked:
            return False
        self._checked = stamp
        digest = self._read_digest()
        if digest is None or digest == self._digest:
            return False
        self._digest = digest
        await self._on_change()
        return True

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self._path)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino

    def _read_digest(self) -> bytes | None:
        try:
            with open(self._path, "rb") as file:
                return hashlib.sha256(file.read()).digest()
        except OSError:
            return None


class ConfigReloader:
    """Loads the configuration file again and applies it to a running gateway.

    ``config`` is the configuration running now; ``processes`` the router's
    model processes (kept up to date here, so readers of the mapping see
    the current ones). The new configuration's secrets are added to every
    :class:`~swapcore.adapters.redact.RedactingFilter` of the root logger's
    handlers. A model whose process-defining keys are unchanged
    (:func:`~swapcore.config.build.process_key`) keeps its process object,
    so the router keeps it running.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: GatewayConfig,
        *,
        router: BaseRouter,
        app: GatewayApp,
        costs: SwapCosts,
        processes: dict[str, Process],
        allow_unsupported: bool = False,
    ) -> None:
        self._path = os.fspath(path)
        self.config = config
        self._router = router
        self._app = app
        self._costs = costs
        self._processes = processes
        self._allow_unsupported = allow_unsupported
        self.reloads = 0
        """Configurations applied so far."""
        self.failures = 0
        """Configurations that failed to load and were not applied."""

    async def reload(self) -> bool:
        """Load the file and apply it; False (logged, nothing changed) when it is invalid."""
        try:
            config, processes, planner, options = self._prepare()
        except (ConfigError, OSError) as exc:
            self.failures += 1
            logger.error("the configuration in %s was not applied, it is invalid:", self._path)
            for line in str(exc).splitlines() or [type(exc).__name__]:
                logger.error("  %s", line)
            logger.error("the previous configuration stays in force")
            return False
        from swapcore.config.build import router_kwargs

        old = self.config
        kept = [m for m in config.models if processes[m] is self._processes.get(m)]
        try:
            await self._router.reconfigure(
                processes, planner, scheduler_options=options, **router_kwargs(config)
            )
        except ConfigError as exc:
            self.failures += 1
            logger.error("the configuration in %s was not applied: %s", self._path, exc)
            return False
        self._app.reconfigure(config)
        _redact(config)
        self._processes.clear()
        self._processes.update(processes)
        self.config = config
        self.reloads += 1
        for warning in config.warnings:
            logger.warning("%s", warning)
        added = [m for m in config.models if m not in old.models]
        removed = [m for m in old.models if m not in config.models]
        changed = [m for m in config.models if m in old.models and m not in kept]
        logger.info(
            "configuration reloaded from %s: %d models; added: %s; removed: %s; "
            "restarted once idle: %s",
            self._path,
            len(config.models),
            ", ".join(added) or "none",
            ", ".join(removed) or "none",
            ", ".join(changed) or "none",
        )
        return True

    def _prepare(self) -> tuple[GatewayConfig, dict[str, Process], Any, dict[str, Any]]:
        """Build everything the new configuration needs; raises ConfigError, changes nothing."""
        from swapcore.cli.check import check_commands
        from swapcore.config import load_config
        from swapcore.config.build import (
            build_planner,
            build_processes,
            build_scheduler_factory,
            process_key,
        )

        config = load_config(self._path, allow_unsupported=self._allow_unsupported)
        check_commands(config)
        old = self.config
        if config.swapcore.scheduler != old.swapcore.scheduler:
            raise ConfigError(
                f"swapcore.scheduler: changing it ({old.swapcore.scheduler} to "
                f"{config.swapcore.scheduler}) needs a restart"
            )
        planner = build_planner(config, costs=self._costs)
        router = self._router
        fresh: dict[str, Process] = dict(build_processes(config, planner=lambda: router.planner))
        processes: dict[str, Process] = {}
        for model, process in fresh.items():
            current = self._processes.get(model)
            same = (
                current is not None
                and model in old.models
                and process_key(old, model) == process_key(config, model)
            )
            processes[model] = current if same and current is not None else process
        factory = build_scheduler_factory(config, self._costs)
        options = dict(getattr(factory, "keywords", {}))
        options.pop("costs", None)  # the router's learned costs, the same object
        return config, processes, planner, options


def _redact(config: GatewayConfig) -> None:
    """Have the log filters redact ``config``'s secrets too (new API keys, peer keys)."""
    from swapcore.adapters.redact import RedactingFilter, config_secrets

    secrets = config_secrets(config)
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, RedactingFilter):
                found.add(secrets)
