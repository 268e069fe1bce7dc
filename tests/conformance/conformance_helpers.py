"""Protocols, pairs and certificates for suites that run over kernel TCP and udptcp alike.

Everything here uses the loop's own ``create_connection`` / ``create_server``: on a plain
loop that is kernel TCP, on a drop-in loop udptcp. The tests cannot tell which, except
through :func:`is_udptcp`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

# HOST, HOSTNAME_MISMATCH, Certs and Recorder live in the shared support package; tests
# here may import them from either place.
from support.certs import HOST
from support.certs import HOSTNAME_MISMATCH as HOSTNAME_MISMATCH
from support.certs import Certs as Certs
from support.protocols import Recorder

from udptcp.aio.loop import DropInMixin


def is_udptcp() -> bool:
    """True when the running loop sends connections over udptcp."""
    return isinstance(asyncio.get_running_loop(), DropInMixin)


@dataclass
class Pair:
    """A connected client and server, both seen through their protocols."""

    server: asyncio.AbstractServer
    port: int
    client: Recorder
    accepted: Recorder

    @property
    def ct(self) -> asyncio.Transport:
        """The client's transport."""
        assert self.client.transport is not None
        return self.client.transport

    @property
    def st(self) -> asyncio.Transport:
        """The server side's transport."""
        assert self.accepted.transport is not None
        return self.accepted.transport


@contextlib.asynccontextmanager
async def serving(
    factory: Callable[[], asyncio.BaseProtocol], **kw: Any
) -> AsyncIterator[tuple[asyncio.AbstractServer, int]]:
    """``loop.create_server`` on an ephemeral port; closed (clients reset) afterwards."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, HOST, 0, **kw)
    try:
        yield server, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def pair(
    *,
    client: Callable[[], Recorder] = Recorder,
    accepted: Callable[[], Recorder] = Recorder,
    **client_kw: Any,
) -> AsyncIterator[Pair]:
    """A client connected to a one-connection server, both fully set up.

    Whatever is still open at the end is aborted, so a failing test cannot hang.
    """
    loop = asyncio.get_running_loop()
    made: list[Recorder] = []

    def factory() -> Recorder:
        made.append(accepted())
        return made[-1]

    async with serving(factory) as (server, port):
        _, proto = await loop.create_connection(client, HOST, port, **client_kw)
        await wait_until(lambda: made and made[0].made.done())
        p = Pair(server, port, proto, made[0])
        try:
            yield p
        finally:
            for rec in (p.client, p.accepted):
                if rec.transport is not None and not rec.lost.done():
                    rec.transport.abort()


async def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it is true."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)


async def settle(seconds: float = 0.05) -> None:
    """Give the network a moment (for checking that something does *not* happen)."""
    await asyncio.sleep(seconds)
