"""Segments a hostile or odd peer sends to a real endpoint, over UDP on 127.0.0.1: the
endpoint's own decisions (dropping SYN+FIN, reopening TIME-WAIT) seen on the wire."""

from __future__ import annotations

import asyncio
import socket

from aio_helpers import serving, until

import udptcp
from udptcp.core.segment import ACK, FIN, RST, SYN, Options, Segment, decode, encode


class CloseAfterReply(asyncio.Protocol):
    """Answers the first message and closes first, so the server side holds TIME-WAIT."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)
        self.transport.close()


async def _recv(raw: socket.socket, timeout: float = 2.0) -> Segment:
    loop = asyncio.get_running_loop()
    return decode(await asyncio.wait_for(loop.sock_recv(raw, 2000), timeout))


def _raw(port: int) -> socket.socket:
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.setblocking(False)
    raw.connect(("127.0.0.1", port))
    return raw


async def test_syn_fin_is_dropped_and_counted_while_a_plain_syn_is_answered() -> None:
    async with serving(CloseAfterReply) as (server, port):
        with _raw(port) as raw:
            raw.send(encode(Segment(1111, port, 5000, 0, SYN | FIN, 65535)))
            raw.send(encode(Segment(2222, port, 7000, 0, SYN, 65535)))
            reply = await _recv(raw)
            # Only the plain SYN was answered; the SYN+FIN drew nothing (not even a RST).
            assert (reply.dst_port, reply.flag_names()) == (2222, "SYN,ACK")
            assert server.endpoints[0].stats["dropped_syn_fin"] == 1
            server.close()  # resets the half-open one
            rst = await _recv(raw)
            assert rst.dst_port == 2222


async def test_a_reopened_time_wait_pair_starts_its_isn_beyond_the_old_connection() -> None:
    async with serving(CloseAfterReply) as (server, port):
        endpoint = server.endpoints[0]
        with _raw(port) as raw:
            peer_iss = 10_000
            raw.send(encode(Segment(3333, port, peer_iss, 0, SYN, 65535)))
            synack = await _recv(raw)
            iss = synack.seq
            raw.send(encode(Segment(3333, port, peer_iss + 1, iss + 1, ACK, 65535, None, b"hi")))
            # The server echoes and closes first: data, then FIN (maybe in one segment).
            seen_fin = None
            while seen_fin is None:
                seg = await _recv(raw)
                if seg.flags & FIN:
                    seen_fin = seg
            fin_end = seen_fin.seq + len(seen_fin.payload) + 1
            raw.send(encode(Segment(3333, port, peer_iss + 3, fin_end, ACK | FIN, 65535)))
            last = await _recv(raw)
            assert last.flags == ACK and last.ack == peer_iss + 4
            await until(lambda: len(endpoint.time_waits()) == 1)
            (record,) = endpoint.time_waits().values()  # the server's TIME-WAIT
            assert endpoint.connections() == []
            old_snd_max = record.snd_nxt
            # A new SYN on the same 4-tuple with a higher sequence number reopens it; the
            # new ISN lies beyond everything the old incarnation sent (RFC 1122 §4.2.2.13).
            raw.send(encode(Segment(3333, port, peer_iss + 100_000, 0, SYN, 65535)))
            again = await _recv(raw)
            assert again.flag_names() == "SYN,ACK" and again.ack == peer_iss + 100_001
            assert 65536 < (again.seq - old_snd_max) & 0xFFFFFFFF < 0x80000000
            assert endpoint.stats["time_wait_reopened"] == 1
            server.close()


async def test_a_time_wait_record_answers_a_replayed_fin_and_stray_segments() -> None:
    async with serving(CloseAfterReply) as (server, port):
        endpoint = server.endpoints[0]
        with _raw(port) as raw:
            peer_iss = 50_000
            raw.send(encode(Segment(5555, port, peer_iss, 0, SYN, 65535)))
            iss = (await _recv(raw)).seq
            raw.send(encode(Segment(5555, port, peer_iss + 1, iss + 1, ACK, 65535, None, b"hi")))
            seen_fin = None
            while seen_fin is None:
                seg = await _recv(raw)
                if seg.flags & FIN:
                    seen_fin = seg
            fin_end = seen_fin.seq + len(seen_fin.payload) + 1
            our_fin = Segment(5555, port, peer_iss + 3, fin_end, ACK | FIN, 65535)
            raw.send(encode(our_fin))
            assert (await _recv(raw)).ack == peer_iss + 4
            await until(lambda: len(endpoint.time_waits()) == 1)
            assert endpoint.connections() == []  # only the record is left
            # Our last ACK "was lost": the FIN again draws the same ACK from the record.
            raw.send(encode(our_fin))
            again = await _recv(raw)
            assert (again.flags, again.seq, again.ack) == (ACK, fin_end, peer_iss + 4)
            # An exact RST is ignored (RFC 1337): TIME-WAIT stays.
            raw.send(encode(Segment(5555, port, peer_iss + 4, 0, RST, 0)))
            # Data far outside the window draws an ACK, not a reset (RFC 9293 §3.10.7.4).
            raw.send(
                encode(Segment(5555, port, peer_iss + 900_000, fin_end, ACK, 65535, None, b"x"))
            )
            stray = await _recv(raw)
            assert (stray.flags, stray.ack) == (ACK, peer_iss + 4)
            assert len(endpoint.time_waits()) == 1
            # Another 4-tuple from the same address meets a closed port: RST.
            raw.send(encode(Segment(6666, port, 1, 1, ACK, 65535)))
            rst = await _recv(raw)
            assert rst.flags & RST and rst.dst_port == 6666


async def test_the_endpoint_totals_its_connections_peer_input_counters() -> None:
    async with serving(CloseAfterReply) as (server, port):
        endpoint = server.endpoints[0]
        with _raw(port) as raw:
            mss_one = Options(mss=1)
            raw.send(encode(Segment(4444, port, 20_000, 0, SYN, 65535, mss_one)))
            synack = await _recv(raw)
            raw.send(encode(Segment(4444, port, 20_001, synack.seq + 1, ACK, 65535)))
            await until(lambda: len(endpoint.connections()) == 1 and server_side(endpoint))
            assert endpoint.statistics()["peer_mss_clamped"] == 1
            # Still counted once the connection is gone.
            raw.send(encode(Segment(4444, port, 20_001, 0, RST, 0)))
            await until(lambda: not endpoint.connections())
            assert endpoint.statistics()["peer_mss_clamped"] == 1
            assert endpoint.statistics()["datagrams_in"] == endpoint.stats["datagrams_in"]


def server_side(endpoint: object) -> bool:
    (transport,) = endpoint.connections()  # type: ignore[attr-defined]
    return transport.conn.state is udptcp.State.ESTABLISHED
