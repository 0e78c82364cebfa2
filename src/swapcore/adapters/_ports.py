"""Is something already listening where a model's server is about to listen?

A server left over from an earlier gateway (or anything else) on a model's
port would answer the new child's health check, and requests would go to a
process nobody manages. Before each spawn, ``SubprocessProcess`` tries to
connect to the proxy's address when it is on this machine; a connection
that succeeds means the port is taken.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

__all__ = ["local_endpoint", "port_in_use", "port_taken_reason"]

# A connect on loopback is answered (accepted or refused) at once; this only
# bounds a pathological case such as a full listen backlog.
_CONNECT_TIMEOUT = 0.5
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def local_endpoint(url: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``url`` when the host is this machine (loopback), else None."""
    parts = urlsplit(url)
    host = parts.hostname
    if host is None:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if host.lower() in _LOCAL_NAMES:
        return host, port
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return (host, port) if address.is_loopback or address.is_unspecified else None


async def port_in_use(host: str, port: int) -> bool:
    """True when a TCP connection to ``host:port`` succeeds (something listens there)."""
    loop = asyncio.get_running_loop()
    try:
        numeric = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return False
        targets: list[tuple[int, Any]] = [(info[0], info[4]) for info in infos]
    else:  # no resolver thread for the usual 127.0.0.1
        targets = [(socket.AF_INET6 if numeric.version == 6 else socket.AF_INET, (host, port))]
    for family, address in targets:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, address), _CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            continue
        finally:
            sock.close()
        return True
    return False


def port_taken_reason(host: str, port: int) -> str:
    """The start error's reason when ``host:port`` is taken: what happened and the fix."""
    return (
        f"port {port} on {host} is already in use by another process, so it was not started "
        f"(a model server left over from an earlier gateway?); stop that process (find it "
        f"with: ss -ltnp 'sport = :{port}' or lsof -i :{port}) or give the model another port"
    )
