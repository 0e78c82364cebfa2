"""The configuration a host or the front reads: the driver's YAML text, parsed where it runs."""

from __future__ import annotations

from swapcore.config import GatewayConfig
from swapcore.errors import ConfigError

__all__ = ["host_config"]


def host_config(
    text: str,
    *,
    source: str,
    start_port: int | str | None = None,
    allow_unsupported: bool = False,
) -> GatewayConfig:
    """The configuration for one host; ``start_port`` as for :class:`SwapcoreHost`.

    Raises :class:`~swapcore.ConfigError` naming the source and key.
    """
    from swapcore.config._yaml import parse_yaml
    from swapcore.config.loader import parse_config

    data = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration is empty or not a mapping")
    config = parse_config(data, source=source, allow_unsupported=allow_unsupported)
    if start_port is None:
        return config
    if start_port == "auto":
        from swapcore.adapters.ray._ports import reserve_ports

        try:
            first = reserve_ports(config.start_port, len(config.models))
        except OSError as exc:
            raise ConfigError(f"{source}: startPort: {exc}") from None
    elif isinstance(start_port, int) and not isinstance(start_port, bool) and start_port > 0:
        first = start_port
    else:
        raise ConfigError(f"start_port: must be 'auto', a port number or None, not {start_port!r}")
    if first == config.start_port:
        return config
    return parse_config(
        {**data, "startPort": first}, source=source, allow_unsupported=allow_unsupported
    )
