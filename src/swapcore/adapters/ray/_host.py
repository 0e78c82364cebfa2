"""One host of the cluster: a Ray Serve replica that owns its models through a swapcore gateway.

Each replica runs the same :class:`~swapcore.adapters.asgi.GatewayApp` that
``swapcore serve`` runs, built from the same llama-swap configuration:
its own router, planner and scheduler over its own model processes. Every
request the front sends it is played into that app in-process, so within
a host every swapcore guarantee holds as it does on one machine
(collation, ``max_wait``, never evicting a busy model, loading state,
errors). The replica tells Ray Serve its state through
``record_routing_stats`` (a :class:`~swapcore.cluster.ReplicaReport`), which
the front's :class:`~swapcore.adapters.ray.SwapcoreRequestRouter` reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from swapcore.adapters.ray._wire import Head, Request, head_message
from swapcore.cluster import report_from_router
from swapcore.events import RequestReleased, RouterEvent, SwapFinished, SwapStarted

__all__ = ["SwapcoreHost"]

logger = logging.getLogger("swapcore.adapters.ray")

_DONE = object()
# How long an abandoned request (the front went away) gets to end before it is cancelled.
_ABANDON_GRACE = 5.0


class SwapcoreHost:
    """A Ray Serve deployment class: one host's models behind a swapcore gateway.

    ``config``: the llama-swap configuration as YAML text (read once by the
    driver, so the hosts need no copy of the file); ``source`` names it in
    messages. ``start_port``: ``"auto"`` (the default) reserves this
    host's own block of ports for ``${PORT}`` (the configuration's own
    ``startPort`` block when no other host on this machine holds it), an
    int uses that first port, None keeps the configuration's.
    ``allow_unsupported`` is as for ``swapcore serve``.

    Use it through :func:`~swapcore.adapters.ray.build_app`, which makes it
    a deployment with the right options; its methods are what the front
    and Ray Serve call.
    """

    async def __init__(  # type: ignore[misc]
        self,
        config: str,
        *,
        source: str = "<config>",
        start_port: int | str | None = "auto",
        allow_unsupported: bool = False,
    ) -> None:
        """Load the configuration, build the gateway and start it (preloads begin)."""
        from swapcore.adapters.asgi import GatewayApp
        from swapcore.adapters.ray._config import host_config

        self._replica = _replica_id()
        parsed = host_config(
            config, source=source, start_port=start_port, allow_unsupported=allow_unsupported
        )
        self._app = GatewayApp.from_config(parsed)
        self._counts = {"loads": 0, "wakes": 0, "evictions": 0, "served": 0, "failed_swaps": 0}
        self._app.router.add_listener(self._count)
        await self._app.startup()
        logger.info("host %s: serving %d models from %s", self._replica, len(parsed.models), source)

    @property
    def replica(self) -> str:
        """This replica's id in Ray Serve (the ``replica`` of its reports)."""
        return self._replica

    def report(self) -> dict[str, Any]:
        """This host's :class:`~swapcore.cluster.ReplicaReport` as data, with its time and counts.

        Beside the report's keys: ``at`` (when it was made, seconds since
        the epoch) and ``counts`` (since the host started: cold ``loads``,
        ``wakes`` from sleep, models ``evictions``, requests ``served``,
        ``failed_swaps``).
        """
        data = report_from_router(self._replica, self._app.router).to_dict()
        data["at"] = time.time()
        data["counts"] = dict(self._counts)
        return data

    def _count(self, event: RouterEvent) -> None:
        counts = self._counts
        if isinstance(event, SwapStarted):
            counts["wakes" if event.wake else "loads"] += 1
            counts["evictions"] += len(event.evict)
        elif isinstance(event, SwapFinished) and event.error is not None:
            counts["failed_swaps"] += 1
        elif isinstance(event, RequestReleased):
            counts["served"] += 1

    def record_routing_stats(self) -> dict[str, Any]:
        """Ray Serve's hook: the report the request router reads (polled by Serve's controller)."""
        return self.report()

    async def check_health(self) -> None:
        """Ray Serve's health check: fails once the gateway has shut down."""
        if self._app.closed:
            raise RuntimeError(f"host {self._replica}: the gateway has shut down")

    async def call(self, request: Request) -> AsyncIterator[Head | bytes]:
        """Serve one HTTP request: the response head first, then the body's bytes as they come.

        The response is the gateway's own, byte for byte. If the caller
        goes away (Ray cancels this generator), the gateway sees the
        client disconnect, as it would over HTTP.
        """
        queue: asyncio.Queue[object] = asyncio.Queue()
        gone = asyncio.Event()
        body_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": request["body"], "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            queue.put_nowait(message)

        task = asyncio.get_running_loop().create_task(
            self._app(_scope(request), receive, send), name="swapcore-ray-call"
        )
        task.add_done_callback(lambda _: queue.put_nowait(_DONE))
        try:
            while True:
                message = await queue.get()
                if message is _DONE:
                    break
                assert isinstance(message, dict)
                if message["type"] == "http.response.start":
                    yield head_message(message, self.report())
                    continue
                chunks = [message.get("body", b"")]
                ended = False
                while not queue.empty():  # send what is already here as one item
                    more = queue.get_nowait()
                    if more is _DONE:
                        ended = True
                        break
                    assert isinstance(more, dict)
                    chunks.append(more.get("body", b""))
                data = b"".join(chunks)
                if data:
                    yield data
                if ended:
                    break
        finally:
            gone.set()
            if not task.done():
                done, _ = await asyncio.wait({task}, timeout=_ABANDON_GRACE)
                if not done:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            elif not task.cancelled() and task.exception() is not None:
                logger.error("host %s: request failed", self._replica, exc_info=task.exception())

    async def __del__(self) -> None:
        """Ray Serve's shutdown hook: end open requests and stop every model process."""
        app = getattr(self, "_app", None)
        if app is not None:
            await app.shutdown()
        from swapcore.adapters.ray._ports import release_ports

        with contextlib.suppress(OSError):
            release_ports()


def _scope(request: Request) -> dict[str, Any]:
    path = request["path"]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request["method"],
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": request["query"],
        "root_path": "",
        "headers": request["headers"],
        "client": request["client"],
        "server": None,
        "state": {},
    }


def _replica_id() -> str:
    from ray import serve

    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # outside a replica (a unit test): a stable local name
        return "local"
