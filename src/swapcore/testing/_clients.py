"""The ``RouterStateMachine``'s callers and unloads, and the leases they hold.

:class:`ClientBooks` is the machine's lowest layer: it owns the event loop,
starts the clients (each a task in ``router.acquire``) and the unloads, and
keeps the per-model counts the invariant checks compare with the router's.
"""

from __future__ import annotations

import asyncio
import collections

from hypothesis.stateful import RuleBasedStateMachine

from swapcore.errors import LeaseExpired, RoutingError
from swapcore.router import BaseRouter, Lease
from swapcore.testing._virtual_loop import VirtualTimeLoop


class Client:
    """One caller of ``router.acquire``: waits, then holds its lease until released."""

    __slots__ = (
        "cancelled",
        "expired",
        "granted_at",
        "holding",
        "in_handler",
        "lease_timeout",
        "model",
        "number",
        "outcome",
        "priority",
        "release",
        "started",
        "task",
    )

    def __init__(
        self,
        number: int,
        model: str,
        priority: int | None,
        release: asyncio.Future[None],
        lease_timeout: float | None = None,
    ) -> None:
        self.number = number
        self.model = model
        self.priority = priority
        self.release = release  # resolved by `finish`
        self.lease_timeout = lease_timeout  # passed to acquire (None: the router's)
        self.granted_at = 0.0  # the loop's time when it entered its block
        self.expired = False  # its acquire raised LeaseExpired
        self.task: asyncio.Task[None] | None = None
        self.started = False  # its acquire() was entered (the request was submitted)
        self.outcome: str | None = None  # "granted", "cancelled" or a RoutingError's name
        self.holding = False
        self.cancelled = False  # the machine cancelled its task
        self.in_handler = False  # ... from inside a router event handler

    def __repr__(self) -> str:
        state = "holding" if self.holding else self.outcome or "waiting"
        return f"client{self.number}({self.model!r}, {state})"

    @property
    def waiting(self) -> bool:
        """Its request was submitted and has no outcome yet."""
        return self.started and self.outcome is None

    @property
    def live(self) -> bool:
        """Waiting or holding, and not cancelled yet."""
        return self.task is not None and not self.task.done() and not self.cancelled

    def cancel(self) -> None:
        """Cancel its task (once)."""
        if self.task is not None and not self.cancelled:
            self.cancelled = True
            self.task.cancel()


class ClientBooks(RuleBasedStateMachine):
    """The loop, the clients and unloads, and their counts (a base of ``RouterStateMachine``)."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = VirtualTimeLoop()
        self._router: BaseRouter | None = None
        self._clients: list[Client] = []
        self._unloads: list[asyncio.Task[BaseException | None]] = []
        self._held: collections.Counter[str] = collections.Counter()  # by granted model
        self._pending: collections.Counter[str] = collections.Counter()  # by requested model
        self._unloading: collections.Counter[str] = collections.Counter()
        self._stops_done: collections.Counter[str] = collections.Counter()  # stop() returned
        self._violations: list[str] = []

    @property
    def router(self) -> BaseRouter:
        """The router under test (built by the ``start`` initialize rule)."""
        if self._router is None:
            raise RuntimeError("the router is built by the first (initialize) step")
        return self._router

    def held(self, model: str) -> int:
        """Leases on ``model`` the clients hold right now."""
        return self._held[model]

    def _new_client(
        self, model: str, priority: int | None, lease_timeout: float | None = None
    ) -> Client:
        client = Client(
            len(self._clients), model, priority, self.loop.create_future(), lease_timeout
        )
        client.task = self.loop.create_task(self._serve(client))
        self._clients.append(client)
        return client

    async def _serve(self, client: Client) -> None:
        client.started = True
        self._pending[client.model] += 1
        try:
            acquire = self.router.acquire(
                client.model,
                priority=client.priority,
                on_position=self._on_position,
                lease_timeout=client.lease_timeout,
            )
            async with acquire as lease:
                self._granted(client, lease)
                try:
                    await client.release
                finally:
                    self._held[lease.model] -= 1
                    client.holding = False
        except LeaseExpired:
            client.expired = True
            if client.outcome is None:  # expired between its grant and its resumption
                self._resolve(client, "granted")
        except RoutingError as exc:
            self._resolve(client, type(exc).__name__)
        except asyncio.CancelledError:
            if client.outcome is None:
                self._resolve(client, "cancelled")
            raise
        except Exception as exc:
            self._violations.append(f"acquire({client.model!r}) raised {exc!r}")

    def _granted(self, client: Client, lease: Lease) -> None:
        self._resolve(client, "granted")
        client.holding = True
        client.granted_at = self.loop.time()
        self._held[lease.model] += 1

    def _resolve(self, client: Client, outcome: str) -> None:
        if client.outcome is not None:
            self._violations.append(f"{client} resolved twice: then {outcome}")
            return
        client.outcome = outcome
        self._pending[client.model] -= 1

    def _on_position(self, position: int) -> None:
        if position < 1:
            self._violations.append(f"queue position {position} reported (1-based)")

    async def _run_unload(
        self, models: tuple[str, ...], targets: tuple[str, ...], timeout: float | None
    ) -> BaseException | None:
        before = {m: self._stops_done[m] for m in targets}
        try:
            await self.router.unload(*models, timeout=timeout)
        except RoutingError as exc:
            return exc
        finally:
            self._unloading.subtract(targets)
        for model in targets:  # "returns once they are stopped"
            if self._stops_done[model] == before[model]:
                self._violations.append(f"unload{models} returned before {model!r} stopped")
        return None

    def _on_stopped(self, model: str) -> None:
        self._stops_done[model] += 1
