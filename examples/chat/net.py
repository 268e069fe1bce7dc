"""Plain TCP or udptcp, chosen by name: the only place the chat picks its transport.

Both offer the asyncio streams API (``open_connection`` / ``start_server``), so the rest of
the chat is written once. ``config`` (a :class:`udptcp.Config`) only applies to udptcp.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal, cast

import udptcp

__all__ = ["TRANSPORTS", "Transport", "open_connection", "server_address", "start_server"]

Transport = Literal["udptcp", "tcp"]
TRANSPORTS: tuple[Transport, ...] = ("udptcp", "tcp")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def check_transport(name: str) -> Transport:
    """``name`` as a :data:`Transport`, or ``ValueError``."""
    if name not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {name!r}")
    return cast(Transport, name)


async def open_connection(
    transport: Transport, host: str, port: int, *, config: udptcp.Config | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect; raises ``ConnectionRefusedError``, ``TimeoutError`` or another ``OSError``."""
    if transport == "udptcp":
        return await udptcp.open_connection(host, port, config=config)
    return await asyncio.open_connection(host, port)


async def start_server(
    transport: Transport,
    handler: Handler,
    host: str,
    port: int,
    *,
    config: udptcp.Config | None = None,
) -> asyncio.AbstractServer:
    """Listen on ``host``/``port`` and call ``handler`` for every connection."""
    if transport == "udptcp":
        return await udptcp.start_server(handler, host, port, config=config)
    return await asyncio.start_server(handler, host, port)


def server_address(server: asyncio.AbstractServer) -> tuple[str, int]:
    """The first address a server returned by :func:`start_server` listens on."""
    sockets = getattr(server, "sockets", ())
    if not sockets:
        raise RuntimeError("the server has no sockets (closed?)")
    name = sockets[0].getsockname()
    return str(name[0]), int(name[1])
