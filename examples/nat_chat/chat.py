"""The chat itself: connect through the rendezvous, then lines in both directions.

:func:`chat` is the whole program apart from its arguments: it calls
``udptcp.open_peer_connection`` (the same call on both sides), says which path the
connection took, then copies lines from ``lines`` (standard input) to the peer and the
peer's lines to ``show``, until either side ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import udptcp


async def chat(
    session: str,
    rendezvous: str,
    lines: AsyncIterator[str],
    show: Callable[[str], None],
    *,
    name: str = "peer",
    **connect: Any,
) -> str:
    """Chat with the other peer of ``session``; returns the path taken ("direct" or
    "relayed"). Raises ``udptcp.NATTraversalError`` when no path opens, and
    ``udptcp.SecureHandshakeError`` when ``connect`` has keys the other peer does not match."""
    reader, writer = await udptcp.open_peer_connection(session, rendezvous, **connect)
    path = writer.get_extra_info("path")
    nat = writer.get_extra_info("nat")
    secure = writer.get_extra_info("secure")
    how = f", secure ({secure.pattern})" if secure else ""
    show(
        f"* connected ({path}{how}) to {writer.get_extra_info('peername')}; we are {nat.get('observed_address')}"
    )

    async def send() -> None:
        async for line in lines:
            writer.write(f"{name}: {line.rstrip()}\n".encode())
            await writer.drain()
        writer.write_eof()

    async def receive() -> None:
        while line := await reader.readline():
            show(line.decode(errors="replace").rstrip("\n"))
        show("* the other peer left")

    sender = asyncio.ensure_future(send())
    try:
        await receive()
    finally:
        sender.cancel()
        writer.close()
    return str(path)
