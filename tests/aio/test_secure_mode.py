"""Secure mode end to end over real UDP on 127.0.0.1, on both loops.

Echo through a lossy, corrupting impairment relay; every corrupted datagram rejected and
counted; a recording of the wire with no plaintext in it; each kind of mismatch failing
with its reason from the first answer (no SYN retry spent); a forged RST from the client's
own address changing nothing; and a NAT rebinding mid-transfer that a secure connection
follows and a plain one does not.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket

import pytest
from aio_helpers import accepted, recorders, serving, until
from support.protocols import Echo, Recorder

import udptcp
from udptcp.aio.endpoint import Endpoint
from udptcp.core.config import Config
from udptcp.core.connection import Connection
from udptcp.core.secure import SecureSession
from udptcp.core.segment import RST, SYN, Options, Segment, decode, encode
from udptcp.tools.relay import Impairment, Relay

SERVER = udptcp.Identity.generate()
CLIENT = udptcp.Identity.generate()
PSK = os.urandom(32)
# Loopback RTTs are tiny: a low RTO floor keeps repairs quick on the lossy path.
CONFIG = Config(rto_min=0.02, rto_initial=0.2)
SEED = 5
# Every counter that records a datagram the endpoint refused.
REJECTIONS = (
    "malformed",
    "secure_auth_failed",
    "secure_replayed",
    "secure_too_old",
    "secure_unknown_sealed",
    "secure_unsealed",
    "secure_unsealed_rst",
    "secure_unsealed_syn",
    "secure_malformed",
)


def endpoint_of(transport: asyncio.BaseTransport) -> Endpoint:
    return transport.endpoint  # type: ignore[attr-defined,no-any-return]


def rejected(endpoint: Endpoint) -> int:
    stats = endpoint.statistics()
    return sum(stats.get(name, 0) for name in REJECTIONS)


async def echo_through(relay: Relay, port: int, payload: bytes, **kw: object) -> bytes:
    reader, writer = await udptcp.open_connection(*relay.address, config=CONFIG, **kw)
    try:
        writer.write(payload)
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 60)
    finally:
        writer.close()


async def test_secure_echo_through_loss_and_corruption_rejects_every_flipped_datagram() -> None:
    payload = os.urandom(1_000_000)
    bad = Impairment(loss=0.03, corrupt=0.03)
    async with serving(Echo, config=CONFIG, identity=SERVER) as (server, port):
        async with Relay(("127.0.0.1", port), forward=bad, backward=bad, seed=SEED) as relay:
            reader, writer = await udptcp.open_connection(
                *relay.address, config=CONFIG, peer_key=SERVER.public_key
            )
            writer.write(payload)
            writer.write_eof()
            echoed = await asyncio.wait_for(reader.read(), 60)
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
            assert writer.get_extra_info("secure") == ("NK", "ChaCha20-Poly1305")
            client_endpoint = endpoint_of(writer.transport)
            (server_endpoint,) = server.endpoints
            corrupted = relay.forward_stats.corrupted, relay.backward_stats.corrupted
            assert min(corrupted) > 10, f"seed {SEED}: the path was not bad enough"
            # Everything the relay flipped reaches its endpoint and is refused there.
            await until(lambda: rejected(server_endpoint) >= relay.forward_stats.corrupted)
            await until(lambda: rejected(client_endpoint) >= relay.backward_stats.corrupted)
            assert rejected(server_endpoint) == relay.forward_stats.corrupted, f"seed {SEED}"
            assert rejected(client_endpoint) == relay.backward_stats.corrupted, f"seed {SEED}"
            assert server_endpoint.statistics()["secure_auth_failed"] > 0
            writer.close()


async def test_ik_tells_the_server_who_connected() -> None:
    made, factory = recorders()
    async with serving(factory, identity=SERVER) as (server, port):
        transport, client = await udptcp.create_connection(
            Recorder, "127.0.0.1", port, identity=CLIENT, peer_key=SERVER.public_key
        )
        peer = await accepted(made)
        assert peer.transport is not None
        assert transport.get_extra_info("secure").pattern == "IK"
        assert peer.transport.get_extra_info("peer_key") == CLIENT.public_key
        assert transport.get_extra_info("peer_key") == SERVER.public_key
        hash_ = transport.get_extra_info("secure_handshake_hash")
        assert hash_ and hash_ == peer.transport.get_extra_info("secure_handshake_hash")
        transport.write(b"ping")
        assert await peer.received(4) == b"ping"
        transport.close()


async def test_psk_alone_authenticates_both_sides() -> None:
    made, factory = recorders()
    async with serving(factory, psk=PSK) as (server, port):
        transport, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port, psk=PSK)
        peer = await accepted(made)
        assert transport.get_extra_info("secure").pattern == "NNpsk0"
        assert peer.transport is not None and peer.transport.get_extra_info("peer_key") is None
        transport.write(b"x")
        assert await peer.received(1) == b"x"
        transport.close()


@pytest.mark.parametrize("secure", [True, False], ids=["secure", "plain-control"])
async def test_a_recording_of_a_secure_transfer_holds_no_plaintext(secure: bool) -> None:
    marker = b"attack at dawn, bring the blue folder; "
    payload = marker * 5000
    server_kw = {"identity": SERVER} if secure else {}
    client_kw = {"peer_key": SERVER.public_key} if secure else {}
    async with serving(Echo, config=CONFIG, **server_kw) as (server, port):
        async with Relay(("127.0.0.1", port), record=True, seed=SEED) as relay:
            echoed = await echo_through(relay, port, payload, **client_kw)
            assert echoed == payload
            wire = b"".join(record.data for record in relay.records)
    assert len(wire) > 2 * len(payload)
    found = marker[:16] in wire
    # The control shows the search would find it.
    assert found is not secure


class PlainPeer(asyncio.DatagramProtocol):
    """A TCP stack that never heard of secure mode: udptcp's core with no secure layer,
    answering a SYN as any such stack does (ignoring its option and its payload)."""

    def __init__(self) -> None:
        self.received: list[Segment] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        seg = decode(data)
        self.received.append(seg)
        if seg.flags == SYN:
            conn = Connection.accept(Config(), seg, iss=42, mss=1432, now=0.0)
            for out in conn.take_segments():
                self.transport.sendto(encode(out), addr)


async def test_a_plain_peer_fails_the_secure_client_on_its_first_answer() -> None:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(PlainPeer, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        with pytest.raises(udptcp.SecureHandshakeError, match="does not speak udptcp secure"):
            await udptcp.open_connection("127.0.0.1", port, peer_key=SERVER.public_key)
        # One SYN (no retry), then the client's RST tearing down the peer's half-open side.
        await until(lambda: len(peer.received) >= 2)
        assert [seg.flags for seg in peer.received] == [SYN, RST]
    finally:
        transport.close()


@pytest.mark.parametrize(
    ("server_kw", "client_kw", "error", "message", "datagrams"),
    [
        (
            {"identity": SERVER},
            {"peer_key": udptcp.Identity.generate().public_key},
            udptcp.SecureHandshakeError,
            "peer_key pinned for it is not its key",
            1,
        ),
        ({"psk": PSK}, {"psk": os.urandom(32)}, udptcp.SecureHandshakeError, "psk differs", 1),
        (
            {"identity": SERVER, "psk": PSK},
            {"peer_key": SERVER.public_key},
            udptcp.SecureHandshakeError,
            "requires a pre-shared key",
            1,
        ),
        (
            {},
            {"peer_key": SERVER.public_key},
            udptcp.SecureHandshakeError,
            "without secure mode",
            2,
        ),
        ({"identity": SERVER}, {}, ConnectionRefusedError, "refused", 1),
    ],
    ids=["wrong-key", "wrong-psk", "psk-required", "plain-only-server", "plain-client"],
)
async def test_mismatches_fail_with_their_reason_without_retrying(
    server_kw: dict[str, object],
    client_kw: dict[str, object],
    error: type,
    message: str,
    datagrams: int,
) -> None:
    async with serving(Echo, **server_kw) as (server, port):
        (endpoint,) = server.endpoints
        with pytest.raises(error, match=message):
            await udptcp.open_connection("127.0.0.1", port, **client_kw)
        # The first answer settled it: the server saw one SYN and, where it had answered
        # with a SYN-ACK, the client's RST. A second SYN would make it one more.
        await until(lambda: endpoint.stats["datagrams_in"] >= datagrams)
        assert endpoint.stats["datagrams_in"] == datagrams
        assert endpoint.connections() == []  # nothing half-open left behind


async def test_allow_plain_lets_a_secure_client_use_a_plain_server() -> None:
    async with serving(Echo) as (server, port):
        reader, writer = await udptcp.open_connection(
            "127.0.0.1", port, peer_key=SERVER.public_key, allow_plain=True
        )
        assert writer.get_extra_info("secure") is None
        writer.write(b"plain is fine")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"plain is fine"
        writer.close()


async def test_allow_plain_lets_a_secure_server_take_plain_clients() -> None:
    async with serving(Echo, identity=SERVER, allow_plain=True) as (server, port):
        reader, writer = await udptcp.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"hello"
        writer.close()


async def test_short_and_odd_datagrams_on_a_secure_connection_are_dropped() -> None:
    errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
    made, factory = recorders()
    async with serving(factory, identity=SERVER) as (server, port):
        transport, client = await udptcp.create_connection(
            Recorder, "127.0.0.1", port, peer_key=SERVER.public_key
        )
        peer = await accepted(made)
        local, remote = transport.get_extra_info("vports")
        header = local.to_bytes(2, "big") + remote.to_bytes(2, "big")
        client_sock: socket.socket = endpoint_of(transport).sock
        option = bytes((253, 12, 0x55, 0x54))
        for size in range(4, 60):
            # The right ports, then the sealed layout cut short at every length.
            datagram = (header + bytes(8) + bytes((0x80,)) + bytes(7) + option + bytes(40))[:size]
            client_sock.sendto(datagram, ("127.0.0.1", port))
        (server_endpoint,) = server.endpoints
        await until(lambda: server_endpoint.stats["datagrams_in"] >= 2 + 56)  # SYN, ACK, ours
        transport.write(b"unharmed")
        assert await peer.received(8) == b"unharmed"
        assert errors == []  # nothing raised out of the endpoint's read callback
        transport.close()


async def test_a_forged_rst_from_the_clients_own_address_changes_nothing() -> None:
    made, factory = recorders()
    async with serving(factory, identity=SERVER) as (server, port):
        transport, client = await udptcp.create_connection(
            Recorder, "127.0.0.1", port, peer_key=SERVER.public_key
        )
        peer = await accepted(made)
        assert peer.transport is not None
        conn = peer.transport.get_extra_info("udptcp_connection")
        client_sock: socket.socket = endpoint_of(transport).sock
        local, remote = transport.get_extra_info("vports")
        # The exact 4-tuple and sequence number, from the client's own UDP socket.
        client_sock.sendto(
            encode(Segment(local, remote, conn.rcv_nxt, 0, RST, 0)), ("127.0.0.1", port)
        )
        (server_endpoint,) = server.endpoints
        await until(lambda: server_endpoint.stats["secure_unsealed_rst"] == 1)
        transport.write(b"still connected")
        assert await peer.received(15) == b"still connected"
        assert conn.state.name == "ESTABLISHED" and not peer.lost.done()
        transport.close()


@pytest.mark.parametrize("secure", [True, False], ids=["secure", "plain"])
async def test_a_nat_rebinding_mid_transfer(secure: bool) -> None:
    payload = os.urandom(3_000_000)
    made, factory = recorders()
    server_kw = {"identity": SERVER} if secure else {}
    client_kw = {"peer_key": SERVER.public_key} if secure else {}
    config = CONFIG.replace(user_timeout=5.0)
    async with serving(factory, config=config, **server_kw) as (server, port):
        async with Relay(("127.0.0.1", port), seed=SEED) as relay:
            transport, client = await udptcp.create_connection(
                Recorder, *relay.address, config=config, **client_kw
            )
            peer = await accepted(made)
            assert peer.transport is not None
            transport.write(payload[:1_000_000])
            await peer.received(500_000)
            old = peer.transport.get_extra_info("peername")
            (client_addr,) = relay.clients
            new = await relay.rebind(client_addr)  # the NAT gives the client a new port
            assert new is not None and new != old
            transport.write(payload[1_000_000:])
            if secure:
                await peer.received(len(payload), timeout=30)
                assert bytes(peer.data) == payload
                assert peer.transport.get_extra_info("peername") == new
                (server_endpoint,) = server.endpoints
                assert server_endpoint.stats["secure_migrations"] == 1
                assert not client.lost.done()
            else:
                # The server answers the unknown address with RST and the client is reset;
                # the server's connection stays bound to the old address.
                error = await asyncio.wait_for(client.lost, 10)
                assert isinstance(error, ConnectionResetError)
                assert peer.transport.get_extra_info("peername") == old
                assert len(peer.data) < len(payload)
            transport.close()
            server.abort_clients()


async def test_key_combinations_no_pattern_takes_fail_before_any_datagram() -> None:
    with pytest.raises(ValueError, match="peer_key"):
        await udptcp.create_connection(asyncio.Protocol, "127.0.0.1", 9, identity=CLIENT)
    with pytest.raises(ValueError, match="32 bytes"):
        await udptcp.create_connection(asyncio.Protocol, "127.0.0.1", 9, peer_key=b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        await udptcp.create_server(asyncio.Protocol, "127.0.0.1", 0, psk=b"short")


# ---------------------------------------------------------------------- under SYN pressure


def _offering_syn(port: int, local_port: int) -> bytes:
    """The datagram of a genuine secure client's SYN, for a raw socket to send."""
    config = Config(peer_key=SERVER.public_key)
    session = SecureSession.connect(config, local_port=local_port, remote_port=port, peer=None)
    conn = Connection.connect(
        config, local_port=local_port, remote_port=port, iss=1000, mss=1400, now=0.0
    )
    (syn,) = conn.take_segments()
    return session.seal(syn)


def _raw(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(("127.0.0.1", port))
    return sock


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(70000))
        except BlockingIOError:
            return out


async def test_a_forged_offer_earns_its_victim_at_most_three_times_its_size() -> None:
    # Fast SYN-ACK retries, so the whole budget is spent within the test.
    config = Config(rto_initial=0.02, rto_min=0.02, synack_retries=6)
    async with serving(Echo, config=config, identity=SERVER) as (server, port):
        (endpoint,) = server.endpoints
        with _raw(port) as victim:
            syn = _offering_syn(port, 7300)
            victim.send(syn)
            await until(lambda: endpoint.stats["datagrams_in"] == 1)
            await until(lambda: not endpoint.connections(), timeout=10)  # given up
            answers = _drain(victim)
        assert answers and decode(answers[0]).payload  # the SYN-ACK carried message 2
        assert sum(len(a) for a in answers) <= 3 * len(syn)
        assert endpoint.statistics()["amplification_limited"] >= 1


@pytest.mark.parametrize("offering", [True, False], ids=["offer", "plain-syn"])
async def test_a_full_backlog_sends_no_cookie_for_what_needs_a_secure_handshake(
    offering: bool,
) -> None:
    async with serving(Echo, identity=SERVER, backlog=1) as (server, port):
        (endpoint,) = server.endpoints
        with _raw(port) as raw:
            raw.send(_offering_syn(port, 7400))  # fills the backlog, never completes
            await until(lambda: endpoint.limits()["half_open"] == 1)
            await until(lambda: len(_drain(raw)) >= 1)  # its SYN-ACK
            if offering:
                raw.send(_offering_syn(port, 7401))
            else:
                raw.send(encode(Segment(7401, port, 5, 0, SYN, 65535, Options(mss=1400))))
            await until(lambda: endpoint.stats["datagrams_in"] == 2)
            # A cookie would hold none of the handshake (or let a plain client in).
            assert endpoint.stats["syn_cookies_sent"] == 0
            assert endpoint.stats["syn_dropped_backlog"] == 1
            assert [decode(d).dst_port for d in _drain(raw)] in ([], [7400])


async def test_allow_plain_still_takes_plain_clients_by_cookie() -> None:
    async with serving(Echo, identity=SERVER, allow_plain=True, backlog=1) as (server, port):
        (endpoint,) = server.endpoints
        with _raw(port) as raw:
            raw.send(_offering_syn(port, 7500))
            await until(lambda: endpoint.limits()["half_open"] == 1)
            reader, writer = await udptcp.open_connection("127.0.0.1", port)
            writer.write(b"by cookie")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b"by cookie"
            writer.close()
        assert endpoint.stats["syn_cookies_accepted"] == 1
