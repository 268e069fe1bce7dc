"""Connection set-up and release, as a busy client does them: ``close()`` right after
``create_connection`` returns, the closing handshake finishing in the background (the
``connect`` benchmark's pattern). Nothing of a connection outlives it but the client's
TIME-WAIT record and that record's one deadline: the server keeps no connection and no
deadline, and no Transport or Connection of either side stays alive.
"""

from __future__ import annotations

import asyncio
import gc

from aio_helpers import serving, until

import udptcp
from udptcp.aio.transport import Transport

CONNECTIONS = 40


async def test_connects_closed_at_once_leave_only_the_clients_time_wait_records() -> None:
    async with serving(asyncio.Protocol) as (server, port):
        (server_endpoint,) = server.endpoints
        endpoints = set()
        for _ in range(CONNECTIONS):
            transport, _ = await udptcp.create_connection(asyncio.Protocol, "127.0.0.1", port)
            endpoints.add(transport.endpoint)  # type: ignore[attr-defined]
            transport.close()
        del transport
        (client,) = endpoints  # every connection on the loop's one client socket
        await until(
            lambda: len(client.time_waits()) == CONNECTIONS and not server_endpoint.connections()
        )
        # The server: no connection, no TIME-WAIT (the client closed first), no deadline.
        assert server_endpoint.limits() == {
            "accepted": 0,
            "half_open": 0,
            "time_wait": 0,
            "addresses": 0,
        }
        assert len(server_endpoint._timers) == 0
        # The client: the records alone, each with its 2 MSL as its one deadline, and the
        # loop's one timer armed no later than the first of them.
        records = client.time_waits()
        assert client.connections() == []
        assert len(client._timers) == CONNECTIONS
        assert all(client._timers.deadline(key) == rec.deadline for key, rec in records.items())
        assert client._timer_when is not None
        assert client._timer_when <= min(rec.deadline for rec in records.values())
        # Nothing else holds a connection: no Transport of these endpoints is left.
        gc.collect()
        left = [
            obj
            for obj in gc.get_objects()
            if type(obj) is Transport and obj.endpoint in (client, server_endpoint)
        ]
        assert left == []
        assert client.stats["datagrams_out"] == 4 * CONNECTIONS  # SYN, ACK, FIN, ACK
        assert server_endpoint.stats["datagrams_out"] == 3 * CONNECTIONS  # SYN-ACK, ACK, FIN
