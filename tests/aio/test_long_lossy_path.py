"""Issue 3's spot check over real UDP: a long, lossy path through the impairment relay."""

from __future__ import annotations

import asyncio
import hashlib
import os

from aio_helpers import serving
from test_relay_transfer import Sink

import udptcp
from udptcp.tools.relay import Impairment, Relay

# 10% loss and 100 ms each way (200 ms added to the round trip).
PATH = Impairment(loss=0.10, delay=0.100)


async def test_integrity_through_ten_percent_loss_and_200_ms_added_rtt() -> None:
    payload = os.urandom(150_000)
    sinks: list[Sink] = []

    def factory() -> Sink:
        sinks.append(Sink())
        return sinks[-1]

    async with serving(factory) as (server, port):
        relay = Relay(("127.0.0.1", port), forward=PATH, backward=PATH, seed=11)
        host, relay_port = await relay.start()
        try:
            reader, writer = await asyncio.wait_for(udptcp.open_connection(host, relay_port), 30)
            writer.write(payload)
            writer.write_eof()
            while not sinks:
                await asyncio.sleep(0.01)
            await asyncio.wait_for(sinks[0].done, 60)
            assert sinks[0].size == len(payload)
            assert sinks[0].digest.digest() == hashlib.sha256(payload).digest()
            stats = writer.transport.get_extra_info("udptcp_stats")
            # The long path was really measured, and SACK recovery really worked on it.
            assert stats["srtt"] > 0.18
            assert stats["retransmits"] > 0 and stats["sack_recoveries"] > 0
            assert relay.forward_stats.dropped_loss > 0
            # Release the connection through the same bad path before the relay goes.
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 30)
            server.close()
            await asyncio.wait_for(server.wait_closed(), 30)
        finally:
            await relay.close()
