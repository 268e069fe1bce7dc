"""Helpers shared by the third-party library tests (``tests/thirdparty/``)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvloop

import udptcp
from udptcp.aio.endpoint import open_endpoints
from udptcp.aio.loop import DropInMixin
from udptcp.tools.relay import Impairment, Relay

#: Loopback RTT is far below a millisecond, so the RTO sits at its floor; the default 200 ms
#: floor would turn every loss the relay makes into a long stall.
CONFIG = udptcp.Config(rto_min=0.02, rto_initial=0.2)
#: 5% loss, each way, for the large transfers.
LOSSY = Impairment(loss=0.05)
#: The large transfers' size: 5 MiB (> 5 MB).
BIG = 5 * 1024 * 1024
#: Every wait in these tests is bounded by this (seconds): a failure fails, it never hangs.
WAIT = 20.0


def payload(size: int, seed: int) -> bytes:
    """``size`` reproducible, incompressible bytes."""
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def on_uvloop() -> bool:
    return isinstance(asyncio.get_running_loop(), uvloop.Loop)


def assert_drop_in_loop() -> None:
    """The test runs on a udptcp drop-in loop with the tests' configuration."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, DropInMixin), loop
    assert loop.udptcp_config is CONFIG


def assert_udp_server(sockets: Any) -> int:
    """The library's server listens on UDP sockets only (udptcp's); return its port."""
    sockets = list(sockets)
    assert sockets, "the server has no sockets"
    assert {sock.type for sock in sockets} == {socket.SOCK_DGRAM}
    assert {sock.getsockname()[0] for sock in sockets} == {"127.0.0.1"}
    return int(sockets[0].getsockname()[1])


def assert_udptcp_transport(transport: Any) -> dict[str, Any]:
    """``transport`` is a udptcp connection on 127.0.0.1; return its stats."""
    assert isinstance(transport, udptcp.Transport), transport
    assert transport.get_extra_info("peername")[0] == "127.0.0.1"
    assert transport.get_extra_info("sockname")[0] == "127.0.0.1"
    stats: dict[str, Any] = transport.get_extra_info("udptcp_stats")
    return stats


def udp_datagrams() -> int:
    """Datagrams the running loop's udptcp endpoints have received (all UDP sockets)."""
    endpoints = open_endpoints()
    assert all(ep.sock.type == socket.SOCK_DGRAM for ep in endpoints)
    return sum(ep.stats["datagrams_in"] for ep in endpoints)


@contextlib.asynccontextmanager
async def lossy_relay(port: int, seed: int) -> AsyncIterator[tuple[int, Relay]]:
    """A relay on 127.0.0.1 in front of ``127.0.0.1:port`` losing 5% each way; yields its
    port and the relay (for its counters)."""
    relay = Relay(("127.0.0.1", port), forward=LOSSY, backward=LOSSY, seed=seed)
    host, relay_port = await relay.start("127.0.0.1", 0)
    assert host == "127.0.0.1"
    try:
        yield relay_port, relay
    finally:
        await relay.close()


async def until_closed(core: Any, timeout: float = WAIT) -> None:
    """Wait (at most ``timeout``) until a udptcp connection has finished closing.

    ``core`` is the connection's ``get_extra_info("udptcp_connection")``, asked for while
    the library still holds its transport. The relay tests call this before
    closing the relay: a server that closed second sits in LAST-ACK until the client's last
    ACK arrives, and if the relay dropped that ACK and is then gone, the server retransmits
    its FIN for ``Config.user_timeout`` (120 s) before its ``connection_lost`` (and the
    server's ``wait_closed``) come.
    """

    async def closed() -> None:
        while core.state not in _DONE:
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(closed(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(
            f"still {core.state.value} after {timeout} s: {core.stats()}"
        ) from None


_DONE = frozenset({udptcp.State.CLOSED, udptcp.State.TIME_WAIT})


async def until_all_acked(core: Any) -> None:
    """Wait (at most ``WAIT``) until a udptcp connection has had everything it sent acked.

    ``core`` is the connection's ``get_extra_info("udptcp_connection")``.
    """

    async def acked() -> None:
        while core.unsent_bytes or core.stats()["bytes_in_flight"]:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(acked(), WAIT)


def assert_lossy_path_repaired(relay: Relay, *stats: dict[str, Any]) -> None:
    """The relay dropped datagrams both ways and udptcp retransmitted them."""
    assert relay.forward_stats.dropped_loss > 0
    assert relay.backward_stats.dropped_loss > 0
    assert sum(s["retransmits"] for s in stats) > 0
