"""Protocols and helpers shared by the asyncio end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

# Echo and Recorder live in the shared support package; tests here may import them from
# either place.
from support.protocols import Echo as Echo
from support.protocols import Recorder

import udptcp

#: Short timers so failure paths finish quickly.
FAST = udptcp.Config(rto_initial=0.05, rto_min=0.05, syn_retries=2, msl=0.05)


async def serve(
    factory: Callable[[], asyncio.BaseProtocol], host: str = "127.0.0.1", **kw: Any
) -> tuple[udptcp.Server, int]:
    """Start a udptcp server on an ephemeral UDP port; return it and the port."""
    server = await udptcp.create_server(factory, host, 0, **kw)
    return server, server.sockets[0].getsockname()[1]


def recorders() -> tuple[list[Recorder], Callable[[], Recorder]]:
    """A factory that makes Recorders and the list it puts them in."""
    made: list[Recorder] = []

    def factory() -> Recorder:
        made.append(Recorder())
        return made[-1]

    return made, factory


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nothing is bound to (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@contextlib.asynccontextmanager
async def serving(
    factory: Callable[[], asyncio.BaseProtocol], host: str = "127.0.0.1", **kw: Any
) -> AsyncIterator[tuple[udptcp.Server, int]]:
    """A server for the body of a test, closed (and waited for) afterwards.

    If the body fails, the server's connections are reset first, so a failing test cannot
    hang in ``wait_closed()``.
    """
    server, port = await serve(factory, host, **kw)
    try:
        yield server, port
    except BaseException:
        server.close()
        server.abort_clients()
        raise
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


async def accepted(made: list[Recorder], n: int = 1, timeout: float = 5.0) -> Recorder:
    """Wait until the server side made ``n`` connections; return the first one."""

    async def poll() -> None:
        while len(made) < n or not all(p.made.done() for p in made[:n]):
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)
    return made[0]


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` is true."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)
