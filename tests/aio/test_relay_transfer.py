"""10 MB through the impairment relay: loss, duplication, reordering and corruption both ways."""

from __future__ import annotations

import asyncio
import hashlib
import os

from aio_helpers import serving

import udptcp
from udptcp.tools.relay import Impairment, Relay

# Loopback RTT is well under a millisecond, so the RTO sits at its floor; the default 200 ms
# floor would make every timeout here a long stall.
CONFIG = udptcp.Config(rto_min=0.02, rto_initial=0.2)
BAD_PATH = Impairment(loss=0.05, duplicate=0.02, reorder=0.05, corrupt=0.01)


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.digest.update(data)
        self.size += len(data)

    def eof_received(self) -> None:
        self.done.set_result(None)


async def accepted(sinks: list[Sink]) -> None:
    while not sinks:
        await asyncio.sleep(0.01)


async def test_ten_megabytes_through_a_bad_path() -> None:
    payload = os.urandom(10_000_000)
    sinks: list[Sink] = []

    def factory() -> Sink:
        sinks.append(Sink())
        return sinks[-1]

    async with serving(factory, config=CONFIG) as (server, port):
        relay = Relay(("127.0.0.1", port), forward=BAD_PATH, backward=BAD_PATH, seed=7)
        host, relay_port = await relay.start()
        try:
            reader, writer = await udptcp.open_connection(host, relay_port, config=CONFIG)
            writer.write(payload)
            writer.write_eof()
            await asyncio.wait_for(accepted(sinks), 10)  # the last ACK may need a retry
            await asyncio.wait_for(sinks[0].done, 60)
            assert sinks[0].size == len(payload)
            assert sinks[0].digest.digest() == hashlib.sha256(payload).digest()
            # The path really was bad, and the connection really repaired it.
            stats = writer.transport.get_extra_info("udptcp_stats")
            assert stats["retransmits"] > 0
            assert server.endpoints[0].stats["malformed:checksum"] > 0
            assert relay.forward_stats.dropped_loss > 0 and relay.forward_stats.corrupted > 0
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 10)
            # The server's side ends in LAST-ACK: its FIN (or our last ACK) may be lost and
            # need a retransmission, which must still find the relay there.
            server.close()
            await asyncio.wait_for(server.wait_closed(), 20)
        finally:
            await relay.close()
