"""``swapcore serve [CONFIG]``: the gateway, on uvicorn.

Loads a llama-swap ``config.yaml`` (or, with no CONFIG, the built-in demo
whose models are ``swapcore fake-model`` processes, so it runs anywhere),
prints its warnings, builds the router and the ASGI app, and serves them with
uvicorn. ``hooks.on_startup.preload`` models load in the background once the
server listens; a one-line banner gives the URL and the models.

SIGINT and SIGTERM shut down gracefully: the server stops accepting
connections and lets open requests finish (up to ``--graceful-timeout``),
then the router shuts down, which stops every model process, and the command
exits with status 0. Logs go through :mod:`logging` on stderr: ``swapcore.*``
at INFO by default (one line per swap), uvicorn's access log with ``-v``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from swapcore.errors import ConfigError, SwapcoreError

if TYPE_CHECKING:
    from swapcore.adapters.asgi import GatewayApp
    from swapcore.config import GatewayConfig
    from swapcore.costs import SwapCosts
    from swapcore.events import RouterEvent
    from swapcore.planners.base import SwapPlanner
    from swapcore.process import Process
    from swapcore.router import BaseRouter

__all__ = ["load_serve_config", "parse_listen", "register", "run_event_loop", "serve"]

logger = logging.getLogger("swapcore.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_GRACEFUL_TIMEOUT = 10
DEFAULT_MAX_BODY_MB = 64
DEFAULT_MAX_BUFFERED_MB = 256
_MiB = 1024 * 1024
_DEMO_START_PORT = 5800
_SERVER_SLACK = 3600  # uvicorn's own cut-off, after ours (see _serve_app)
_T = TypeVar("_T")

_HELP = """\
examples:
  swapcore serve                          # the built-in demo: fake models, no GPU needed
  swapcore serve --demo matrix --port 9000
  swapcore serve config.yaml --host 0.0.0.0 --port 8080
  swapcore serve --config config.yaml --listen :8080   # llama-swap's flags
  swapcore -v serve config.yaml           # uvicorn access log too (-vv: debug)

then:
  curl http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' \\
       -d '{"model": "qwen-7b", "messages": [{"role": "user", "content": "hi"}]}'
"""


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand."""
    from swapcore.config import DEMO_VARIANTS

    parser = subparsers.add_parser(
        "serve",
        help="serve a llama-swap config.yaml (or the built-in demo) as an OpenAI-style gateway",
        description=(
            "Serve a llama-swap config.yaml as an OpenAI-compatible gateway: models start "
            "on demand and swap by the config's groups or matrix. With no CONFIG, serve the "
            "built-in demo, whose models are fake (no GPU, no weights)."
        ),
        epilog=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "config", metavar="CONFIG", nargs="?", help="llama-swap config.yaml (default: the demo)"
    )
    parser.add_argument(
        "--config",
        "-config",
        dest="config_flag",
        metavar="FILE",
        help="the config file, as llama-swap's -config (instead of CONFIG)",
    )
    parser.add_argument(
        "--host", default=None, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    parser.add_argument("--port", type=int, default=None, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--listen",
        "-listen",
        metavar="HOST:PORT",
        help="address and port, as llama-swap's -listen (':8080' is every interface); "
        "instead of --host and --port",
    )
    parser.add_argument(
        "--watch-config",
        "-watch-config",
        action="store_true",
        help="reload CONFIG when the file changes, as llama-swap's -watch-config, without "
        "dropping requests: unchanged models keep running, changed ones restart once idle",
    )
    parser.add_argument(
        "--demo",
        choices=DEMO_VARIANTS,
        default=None,
        help="which built-in demo to serve when no CONFIG is given (default groups)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=int,
        default=DEFAULT_GRACEFUL_TIMEOUT,
        metavar="SECONDS",
        help="on shutdown, how long open requests may take to finish "
        f"(default {DEFAULT_GRACEFUL_TIMEOUT})",
    )
    parser.add_argument(
        "--max-body-mb",
        type=int,
        default=DEFAULT_MAX_BODY_MB,
        metavar="MIB",
        help=f"largest request body, in MiB; larger ones get 413 (default {DEFAULT_MAX_BODY_MB})",
    )
    parser.add_argument(
        "--max-buffered-mb",
        type=int,
        default=DEFAULT_MAX_BUFFERED_MB,
        metavar="MIB",
        help="most request-body MiB held at once over all requests; beyond it requests get "
        f"503 with Retry-After (default {DEFAULT_MAX_BUFFERED_MB}; 0: no limit)",
    )
    parser.add_argument(
        "--allow-unsupported",
        action="store_true",
        help="start even when the config uses llama-swap keys swapcore does not implement "
        "that would change what is sent upstream or who may call (profiles, selectors, "
        "tailcatKey, an unknown key in filters): they are ignored with a warning",
    )
    parser.add_argument(
        "--costs-file",
        metavar="PATH",
        help="load learned swap costs from PATH at start and save them there as they are "
        "measured (default: swapcore.costs_file in the config; none: not saved)",
    )
    parser.add_argument(
        "--record-trace",
        metavar="PATH",
        help="record every served request to PATH as a JSON Lines trace "
        "(replay it with swapcore simulate; the file is replaced)",
    )
    parser.add_argument(
        "--no-metrics",
        dest="metrics",
        action="store_false",
        help="do not serve Prometheus metrics at /metrics (on by default when "
        "prometheus-client is installed: the metrics extra)",
    )
    parser.set_defaults(handler=_run)


# ----------------------------------------------------------------- configuration


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _demo_start_port(count: int, preferred: int = _DEMO_START_PORT) -> int:
    """``preferred`` when ``count`` ports from it are free, else the start of a free block.

    The demo must start on any machine: if something already listens on
    5800-5803 its models move elsewhere instead of failing to become healthy.
    """
    candidates: list[int] = [preferred, *range(20000, 60000, 97)]
    for start in candidates:
        if all(_port_free("127.0.0.1", start + i) for i in range(count)):
            return start
    return preferred  # give up: let the models report the clash


def load_serve_config(
    path: str | None, demo: str | None, *, allow_unsupported: bool = False
) -> GatewayConfig:
    """The configuration ``serve`` runs: the file at ``path``, or the demo ``demo``.

    ``allow_unsupported`` is passed to :func:`~swapcore.config.load_config`.
    """
    from swapcore.config import demo_config, load_config

    if path is not None:
        if demo is not None:
            raise ConfigError("--demo: only without CONFIG (it selects the built-in demo)")
        return load_config(path, allow_unsupported=allow_unsupported)
    variant: Any = demo or "groups"
    probe = demo_config(variant)
    start = _demo_start_port(len(probe.models))
    return probe if start == probe.start_port else demo_config(variant, start_port=start)


def _configure_logging(verbose: int, config: GatewayConfig) -> None:
    """``swapcore.*`` at INFO by default (one line per swap); more with ``-v``.

    Every handler of the root logger gets a :class:`RedactingFilter` with the
    configuration's secrets, so no query string, API key or secret option
    reaches the log at any verbosity, whichever logger writes it.
    """
    from swapcore.adapters.redact import RedactingFilter, config_secrets

    redacting = RedactingFilter(config_secrets(config))
    for handler in logging.getLogger().handlers:
        handler.addFilter(redacting)
    swapcore_logger = logging.getLogger("swapcore")
    if verbose == 0:
        swapcore_logger.setLevel(logging.INFO)
    # The upstream processes' output is for diagnosis (it is kept for errors anyway).
    if verbose < 2:
        logging.getLogger("swapcore.adapters.subprocess.output").setLevel(logging.WARNING)


# ----------------------------------------------------------------- serving


def _banner(config: GatewayConfig, url: str) -> str:
    listed = [m.id for m in config.models.values() if not m.unlisted]
    hidden = len(config.models) - len(listed)
    models = ", ".join(listed) + (f" (+{hidden} unlisted)" if hidden else "")
    peers = sum(len(p.models) for p in config.peers.values())
    peer_text = f", {peers} peer models" if peers else ""
    router = config.routing.router
    return (
        f"swapcore serving {url} ({config.source}, {router} router{peer_text}): {models}"
        f" - try {url}/v1/models"
    )


@contextlib.contextmanager
def _exit_signals(on_signal: Callable[[int], None]) -> Iterator[None]:
    """Route SIGINT/SIGTERM to ``on_signal`` while serving, then restore the handlers.

    uvicorn installs its own handlers while it serves and, once it has shut
    down, re-raises the signal it caught under the handlers it found: these,
    so the process goes on to stop the models and exit with status 0 instead
    of dying of the signal.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        on_signal(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


async def serve(
    config: GatewayConfig,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    verbose: int = 0,
    graceful_timeout: int = DEFAULT_GRACEFUL_TIMEOUT,
    on_started: Callable[[str], None] | None = None,
    record_trace: str | os.PathLike[str] | None = None,
    gateway_options: Mapping[str, Any] | None = None,
    costs_file: str | os.PathLike[str] | None = None,
    watch: str | os.PathLike[str] | None = None,
    allow_unsupported: bool = False,
    watch_interval: float = 1.0,
) -> int:
    """Serve ``config`` until the server is told to exit; return the exit status.

    Builds the router and the :class:`~swapcore.adapters.asgi.GatewayApp`,
    starts the app (it enters the router and preloads ``config.preload`` in
    the background), runs uvicorn and calls ``on_started(url)`` once it
    listens. When uvicorn returns (a signal, or a failure to bind), the app
    shuts down, which stops every model process before this returns. The app
    runs here rather than in uvicorn's lifespan so that the models are
    stopped even when uvicorn skips the lifespan shutdown (a second Ctrl-C).
    Status 0 after a requested shutdown, 1 when the server could not start.
    ``record_trace``: a path where every served request is written as a
    trace record (:class:`~swapcore.sim.record.TraceRecorder`).
    ``gateway_options``: more keyword arguments for the ``GatewayApp``
    (``max_body_size``, ``max_buffered_bytes``, ...). ``costs_file``
    (default: ``swapcore.costs_file``): the learned swap costs are loaded
    from it at start and saved to it after each measurement (a malformed
    file raises :class:`~swapcore.ConfigError` before anything starts).
    ``watch``: the configuration file to watch (every ``watch_interval``
    seconds); each new valid version (loaded with ``allow_unsupported``)
    is applied without dropping a request, an invalid one is logged and
    ignored (``docs/gateway.md``, "Reloading the configuration").
    """
    from swapcore.adapters.asgi import GatewayApp
    from swapcore.config import build_router
    from swapcore.config.build import build_costs
    from swapcore.sim.record import TraceRecorder

    costs = build_costs(config)
    path = costs_file if costs_file is not None else config.swapcore.costs_file
    if path is not None and costs.load(path):
        logger.info("learned swap costs loaded from %s", os.fspath(path))
    recorder = None if record_trace is None else TraceRecorder(record_trace)
    listeners: list[Callable[[RouterEvent], None]] = []
    if recorder is not None:
        listeners.append(recorder)
    if path is not None:
        listeners.append(_saver(costs, path))
    from swapcore.config.build import build_planner, build_processes

    planner = build_planner(config, costs=costs)
    router: BaseRouter | None = None
    if watch is None:
        processes: dict[str, Process] = dict(build_processes(config, planner=planner))
    else:  # a reload replaces the planner: each start asks the router for the one in use

        def current_planner() -> SwapPlanner:
            return planner if router is None else router.planner

        processes = dict(build_processes(config, planner=current_planner))
    watcher = _memory_watcher(config, costs, processes)
    if watcher is not None:
        listeners.append(watcher)
    try:
        overrides: dict[str, Any] = {"costs": costs, "processes": processes, "planner": planner}
        if listeners:
            overrides["on_event"] = _fan_out(listeners)
        router = build_router(config, **overrides)
        app = GatewayApp(router, config=config, **(gateway_options or {}))
        background = None
        if watch is not None:
            from swapcore.cli._reload import ConfigReloader, FileWatcher

            reloader = ConfigReloader(
                watch,
                config,
                router=router,
                app=app,
                costs=costs,
                processes=processes,
                allow_unsupported=allow_unsupported,
            )
            background = FileWatcher(watch, reloader.reload, interval=watch_interval).run
            logger.info("watching %s for changes", os.fspath(watch))
        return await _serve_app(
            app,
            host=host,
            port=port,
            verbose=verbose,
            graceful_timeout=graceful_timeout,
            on_started=on_started,
            background=background,
        )
    finally:
        if recorder is not None:
            recorder.close()
            logger.info(
                "recorded %d served requests to %s (%d not served)",
                recorder.recorded,
                os.fspath(record_trace or ""),
                recorder.not_served,
            )


def _memory_watcher(
    config: GatewayConfig, costs: SwapCosts, processes: Mapping[str, Any]
) -> Callable[[RouterEvent], None] | None:
    """A :class:`~swapcore.memory.MemoryWatcher` over NVML, or None (logged) without one."""
    from swapcore.memory import MemoryWatcher, NvmlProbe, estimate_command, parse_llama_options

    probe, reason = NvmlProbe.open()
    if probe is None:
        logger.info("GPU memory is not measured: %s", reason)
        return None
    estimates: dict[str, int] = dict(config.gpus.sizes) if config.gpus is not None else {}
    for model in config.models.values():
        if model.id in estimates:
            continue
        try:
            options = parse_llama_options(model.cmd)
            if options.model is not None and os.path.isfile(options.model):
                estimates[model.id] = estimate_command(model.cmd).total_bytes
        except (ConfigError, ImportError, ValueError):
            continue
    logger.info("GPU memory measured after each start (%s)", reason)

    def pid_of(model: str) -> int | None:
        process = processes.get(model)  # a reload may have removed it
        pid: int | None = getattr(process, "pid", None)
        return pid

    return MemoryWatcher(probe, costs, pid_of, estimates=estimates, margin=0.1)


def _saver(costs: SwapCosts, path: str | os.PathLike[str]) -> Callable[[RouterEvent], None]:
    """An ``on_event`` listener that saves ``costs`` after each measurement."""
    from swapcore.events import CostMeasured

    failed = False

    def save(event: RouterEvent) -> None:
        nonlocal failed
        if not isinstance(event, CostMeasured):
            return
        try:
            costs.save(path)
        except OSError as exc:
            if not failed:  # once: the gateway goes on serving without the file
                logger.warning("cannot save learned costs to %s: %s", os.fspath(path), exc)
            failed = True
        else:
            failed = False

    return save


def _fan_out(listeners: Sequence[Callable[[RouterEvent], None]]) -> Callable[[RouterEvent], None]:
    if len(listeners) == 1:
        return listeners[0]

    def each(event: RouterEvent) -> None:
        for listener in listeners:
            listener(event)

    return each


async def _serve_app(
    app: GatewayApp,
    *,
    host: str,
    port: int,
    verbose: int,
    graceful_timeout: int,
    on_started: Callable[[str], None] | None,
    background: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> int:
    import uvicorn

    loop = asyncio.get_running_loop()
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # our logging.basicConfig: one format for every line
        log_level=("warning", "info", "debug")[min(verbose, 2)],
        access_log=verbose > 0,
        lifespan="off",
        # Ours ends every request at graceful_timeout; uvicorn's own cut-off (which
        # would cancel requests and answer them with a plain-text 500) must come later.
        timeout_graceful_shutdown=graceful_timeout + _SERVER_SLACK,
    )
    stop_requested = False
    ending: list[asyncio.Handle] = []
    closing: list[asyncio.Task[None]] = []

    def end_requests() -> None:
        if not closing:
            logger.info("ending the requests still open")
            closing.append(loop.create_task(app.shutdown()))

    def on_exit_signal() -> None:
        """In the loop, after a signal: end what is still open once the graceful time is up."""
        nonlocal stop_requested
        if stop_requested:  # a second signal: end everything now
            end_requests()
            return
        stop_requested = True
        app.close_streams()  # log and event streams never end on their own
        ending.append(loop.call_later(graceful_timeout, end_requests))

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            loop.call_soon_threadsafe(on_exit_signal)

    server = Server(uv_config)

    def on_signal(signum: int) -> None:
        # Outside uvicorn's own handlers (before it serves, after it returns).
        server.should_exit = True
        loop.call_soon_threadsafe(on_exit_signal)

    async def run_server() -> bool:
        try:
            await server.serve()
        except SystemExit:  # uvicorn exits the process when it cannot bind
            return False
        return bool(server.started)

    with _exit_signals(on_signal):
        async with app:
            side = None if background is None else loop.create_task(background())
            serving = asyncio.ensure_future(run_server())
            while not server.started and not serving.done():
                await asyncio.wait((serving,), timeout=0.05)
            if server.started and on_started is not None:
                on_started(f"http://{f'[{host}]' if ':' in host else host}:{port}")
            ok = await serving
            if side is not None:
                side.cancel()
                await asyncio.gather(side, return_exceptions=True)
            for handle in ending:
                handle.cancel()
            logger.info("stopping every model")
        if closing:
            await asyncio.wait(closing)
    if not ok:
        logger.error("the server could not start on %s:%s", host, port)
        return 1
    logger.info("stopped%s", " on a signal" if stop_requested else "")
    return 0


def run_event_loop(main: Coroutine[Any, Any, _T]) -> _T:
    """Run ``main`` on uvloop when it is installed (the ``gateway`` extra), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: _T = uvloop.run(main)
    return result


def _require_gateway_extra() -> None:
    """Fail with one line, not a traceback, when the ``gateway`` extra is missing."""
    missing = []
    for module in ("yaml", "aiohttp", "uvicorn"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append({"yaml": "pyyaml"}.get(module, module))
    if missing:
        raise SwapcoreError(
            f"needs {', '.join(missing)}: install the gateway extra, "
            "pip install 'swapcore[gateway]'"
        )


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` as llama-swap's ``-listen`` takes it: ``:8080`` is every interface.

    ``[::1]:8080`` for an IPv6 address. Raises :class:`~swapcore.ConfigError`
    naming the flag and the value.
    """
    host, colon, port = text.strip().rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--listen: expected HOST:PORT (e.g. :8080 or 127.0.0.1:8080), got {text!r}"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"--listen: write an IPv6 address in brackets ([::1]:8080), got {text!r}")
    return host or "0.0.0.0", int(port)


def _address(args: argparse.Namespace) -> tuple[str, int]:
    """Where to listen: ``--listen``, or ``--host`` and ``--port`` (not both forms)."""
    if args.listen is not None:
        given = [flag for flag, value in (("--host", args.host), ("--port", args.port)) if value]
        if given:
            raise ConfigError(f"--listen: cannot be combined with {' and '.join(given)}")
        return parse_listen(args.listen)
    host = DEFAULT_HOST if args.host is None else args.host
    port = DEFAULT_PORT if args.port is None else args.port
    if not 0 < port < 65536:
        raise ConfigError(f"--port: must be in 1..65535, got {port}")
    return host, port


def _run(args: argparse.Namespace) -> int:
    _require_gateway_extra()
    if args.config_flag is not None:
        if args.config is not None:
            raise ConfigError(
                f"--config: given twice (--config {args.config_flag} and {args.config}); keep one"
            )
        args.config = args.config_flag
    host, port = _address(args)
    if args.graceful_timeout < 0:
        raise ConfigError("--graceful-timeout: must be >= 0")
    if args.max_body_mb < 1:
        raise ConfigError(f"--max-body-mb: must be >= 1, got {args.max_body_mb}")
    if args.max_buffered_mb < 0:
        raise ConfigError(f"--max-buffered-mb: must be >= 0, got {args.max_buffered_mb}")
    if args.watch_config and args.config is None:
        raise ConfigError("--watch-config: needs a CONFIG file to watch (the demo has none)")
    config = load_serve_config(args.config, args.demo, allow_unsupported=args.allow_unsupported)
    from swapcore.cli.check import check_commands

    check_commands(config)
    _configure_logging(int(args.verbose), config)
    for warning in config.warnings:
        print(f"swapcore serve: warning: {warning}", file=sys.stderr)

    def banner(url: str) -> None:
        print(_banner(config, url), flush=True)

    return run_event_loop(
        serve(
            config,
            host=host,
            port=port,
            verbose=int(args.verbose),
            graceful_timeout=args.graceful_timeout,
            on_started=banner,
            record_trace=args.record_trace,
            costs_file=args.costs_file,
            watch=args.config if args.watch_config else None,
            allow_unsupported=args.allow_unsupported,
            gateway_options={
                "max_body_size": args.max_body_mb * _MiB,
                "max_buffered_bytes": args.max_buffered_mb * _MiB or None,
                "metrics": args.metrics,
            },
        )
    )
