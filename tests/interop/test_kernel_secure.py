"""Secure mode meets the kernel's TCP, which has never heard of it.

The secure client's SYN carries the offer option and Noise message 1 as its payload. Linux
(without a Fast Open cookie) ignores both: its SYN-ACK acknowledges the SYN alone and has no
answer to the offer, so the client fails at once, naming a plain peer, and resets the
half-open connection; the kernel's application never sees a byte of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

import udptcp
from udptcp.core.segment import ACK, RST, SYN
from udptcp.tools.tunbridge import KERNEL_TO_UDPTCP, UDPTCP_TO_KERNEL

if TYPE_CHECKING:
    from conftest import Lab

SERVER = udptcp.Identity.generate()


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def test_a_kernel_server_ignores_the_offer_and_the_client_says_so(lab: Lab) -> None:
    accepted: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(await reader.read(1000))
        writer.close()

    kernel_server, port = await lab.kernel_server(handle)
    try:
        with pytest.raises(udptcp.SecureHandshakeError, match="does not speak udptcp secure"):
            await asyncio.wait_for(
                udptcp.open_connection(
                    "127.0.0.1",
                    lab.bridge.udp_address[1],
                    vport=port,
                    peer_key=SERVER.public_key,
                ),
                5,
            )
        syn = lab.segments(UDPTCP_TO_KERNEL)[0]
        synack = lab.segments(KERNEL_TO_UDPTCP)[0]
        assert syn.flags == SYN and len(syn.payload) == 48  # Noise NK message 1
        assert syn.options is not None and any(kind == 253 for kind, _ in syn.options.unknown)
        assert synack.flags == SYN | ACK
        assert synack.ack == syn.seq + 1  # the handshake bytes were not acknowledged
        assert synack.options is not None and not synack.options.unknown
        await until(lambda: len(lab.segments(UDPTCP_TO_KERNEL)) >= 2)
        rst = lab.segments(UDPTCP_TO_KERNEL)[1]
        assert rst.flags & RST and not rst.flags & ACK and rst.seq == synack.ack
        assert len(lab.segments(UDPTCP_TO_KERNEL)) == 2  # no SYN sent again
        # The RST took the kernel's SYN-RECEIVED connection away: nothing to accept.
        udptcp_addr = (lab.bridge.peer_ip, syn.src_port)
        await until(lambda: lab.kernel_tcp_state((lab.bridge.local_ip, port), udptcp_addr) is None)
        assert accepted == []
    finally:
        await lab.close_server(kernel_server)


async def test_allow_plain_talks_to_the_kernel(lab: Lab) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(1000))
        await writer.drain()
        writer.close()

    kernel_server, port = await lab.kernel_server(handle)
    try:
        reader, writer = await asyncio.wait_for(
            udptcp.open_connection(
                "127.0.0.1",
                lab.bridge.udp_address[1],
                vport=port,
                peer_key=SERVER.public_key,
                allow_plain=True,
            ),
            5,
        )
        assert writer.get_extra_info("secure") is None
        writer.write(b"plain, as allowed")
        assert await asyncio.wait_for(reader.read(1000), 5) == b"plain, as allowed"
        writer.close()
    finally:
        await lab.close_server(kernel_server)
