"""Statistics over real sockets: ``get_extra_info("stats")``, the endpoint's view of its
connections, and ``getsockopt(IPPROTO_TCP, TCP_INFO)`` unpacked as Linux's struct tcp_info."""

from __future__ import annotations

import socket
import struct

from aio_helpers import Recorder, accepted, recorders, serving

import udptcp
from udptcp.aio.tcpinfo import TCP_INFO, TCP_INFO_SIZE, TCP_STATES
from udptcp.core.stats import ConnectionStats

SIZE = 300_000

# The fields of struct tcp_info this test reads, by byte offset (linux/tcp.h).
_U8 = struct.Struct("=8B")
_U32_AT = {
    "rto": 8,
    "snd_mss": 16,
    "rcv_mss": 20,
    "unacked": 24,
    "pmtu": 60,
    "rtt": 68,
    "rttvar": 72,
    "snd_ssthresh": 76,
    "snd_cwnd": 80,
    "advmss": 84,
    "total_retrans": 100,
    "segs_out": 136,
    "segs_in": 140,
    "notsent_bytes": 144,
    "min_rtt": 148,
    "dsack_dups": 216,
    "rcv_ooopack": 224,
    "snd_wnd": 228,
    "rcv_wnd": 232,
}
_U64_AT = {"pacing_rate": 104, "bytes_acked": 120, "bytes_received": 128, "bytes_sent": 200}


def _unpack(info: bytes) -> dict[str, int]:
    out = dict(
        zip(
            ("state", "ca_state", "retransmits", "probes", "backoff", "options", "wscale"),
            _U8.unpack_from(info),
        )
    )
    for name, at in _U32_AT.items():
        out[name] = struct.unpack_from("=I", info, at)[0]
    for name, at in _U64_AT.items():
        out[name] = struct.unpack_from("=Q", info, at)[0]
    return out


def test_layout_matches_this_kernel() -> None:
    # The kernel reports how much of its struct it filled: the same size as ours on the
    # Linux this layout was taken from (older kernels fill a prefix of it).
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client.connect(listener.getsockname())
        kernel = client.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 1024)
        assert len(kernel) <= TCP_INFO_SIZE
        assert kernel[0] == TCP_STATES["ESTABLISHED"]
        # Kernel TCP's own figures land where we put ours: MSS on loopback, cwnd 10.
        fields = _unpack(kernel.ljust(TCP_INFO_SIZE, b"\0"))
        assert fields["snd_cwnd"] == 10
        assert fields["advmss"] > 1000


async def test_stats_tcp_info_and_endpoint_view_agree() -> None:
    made, factory = recorders()
    async with serving(factory) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        peer = await accepted(made)
        transport.write(b"x" * SIZE)
        await peer.received(SIZE)
        assert peer.transport is not None
        peer.transport.write(b"y" * 1000)
        await client.received(1000)

        st = transport.get_extra_info("stats")
        assert isinstance(st, ConnectionStats)
        assert st.state == "ESTABLISHED"
        assert st.peername == ("127.0.0.1", port) == transport.get_extra_info("peername")
        assert st.sockname == transport.get_extra_info("sockname")
        assert (st.local_port, st.remote_port) == transport.get_extra_info("vports")
        assert st.bytes_sent >= SIZE and st.bytes_received == 1000
        assert st.srtt is not None and 0 < st.srtt < 1
        # The older flat dict is still there with the same figures.
        old = transport.get_extra_info("udptcp_stats")
        assert old["bytes_received"] == st.bytes_received and old["state"] == st.state

        server_side = peer.transport.get_extra_info("stats")
        assert server_side.bytes_received == SIZE
        assert server_side.remote_port == st.local_port

        # The endpoint lists every connection it carries.
        listed = server.endpoints[0].connection_stats()
        assert [s.remote_port for s in listed] == [st.local_port]
        assert listed[0].bytes_received == SIZE

        sock = transport.get_extra_info("socket")
        info = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, TCP_INFO_SIZE)
        assert len(info) == TCP_INFO_SIZE
        assert sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 8) == info[:8]
        assert len(sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 4096)) == TCP_INFO_SIZE
        st = transport.get_extra_info("stats")  # the same moment as the tcp_info
        got = _unpack(info)
        assert got["state"] == TCP_STATES["ESTABLISHED"]
        assert got["ca_state"] == 0
        assert got["options"] == 1 | 2 | 4  # timestamps, SACK, window scaling
        assert got["wscale"] == st.snd_wscale | st.rcv_wscale << 4
        assert got["rto"] == int(st.rto * 1e6)
        assert got["rtt"] == int(st.srtt * 1e6)  # type: ignore[operator]
        assert got["rttvar"] == int(st.rttvar * 1e6)  # type: ignore[operator]
        assert got["min_rtt"] == int(st.min_rtt * 1e6)  # type: ignore[operator]
        assert got["snd_mss"] == st.mss and got["advmss"] == st.advertised_mss
        assert got["rcv_mss"] == st.advertised_mss
        assert got["snd_cwnd"] == st.cwnd // st.mss
        assert got["snd_ssthresh"] == (
            0x7FFFFFFF if st.ssthresh >= 1 << 30 else st.ssthresh // st.mss
        )
        assert got["unacked"] == -(-st.bytes_in_flight // st.mss)
        assert got["pmtu"] == st.pmtu + 8 + 20
        assert got["total_retrans"] == st.retransmits
        assert got["bytes_acked"] == st.bytes_acked >= SIZE
        assert got["bytes_received"] == st.bytes_received == 1000
        assert got["bytes_sent"] == st.bytes_sent
        assert got["segs_out"] == st.segments_sent and got["segs_in"] == st.segments_received
        assert got["notsent_bytes"] == st.unsent_bytes == 0
        assert got["snd_wnd"] == st.snd_wnd and got["rcv_wnd"] == st.rcv_wnd
        assert got["dsack_dups"] == st.dsacks_received
        assert got["rcv_ooopack"] == st.out_of_order_segments
        assert got["pacing_rate"] == (1 << 64) - 1  # pacing off: unlimited, as Linux says

        transport.close()
        await client.lost
