"""Secure mode's per-connection layer (udptcp.core.secure), driven by hand with a virtual clock.

A client and a server :class:`Connection` each sit behind a :class:`SecureSession`; the test
plays the endpoint: it seals what a connection sends, opens what arrives (sealed datagrams
through ``open_sealed``, plain ones decoded and through ``open_plain``) and feeds the result
to the other connection.
"""

from __future__ import annotations

import collections
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.segments import seg

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.events import DataReceived
from udptcp.core.keys import Identity
from udptcp.core.secure import HandshakeRefused, SecureSession
from udptcp.core.secure_wire import (
    EXID,
    OPTION_KIND,
    SEAL_OVERHEAD,
    is_sealed,
    reject_segment,
    stripped,
)
from udptcp.core.segment import ACK, RST, SYN, MalformedSegment, Options, Segment, decode, encode

CLIENT_ADDR = ("192.0.2.1", 5000)
NEW_CLIENT_ADDR = ("192.0.2.1", 6000)
SERVER_ADDR = ("198.51.100.7", 443)
CPORT, SPORT = 49999, 443
MSS = 1400
SEED = 11

SERVER = Identity.from_private_bytes(bytes(range(1, 33)))
CLIENT = Identity.from_private_bytes(bytes(range(101, 133)))
PSK = bytes(range(200, 232))


class Side:
    """One end: a connection, its session, and what it received."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.conn: Connection | None = None
        self.session: SecureSession | None = None
        self.stats: collections.Counter[str] = collections.Counter()
        self.events: list[object] = []

    def take(self) -> list[bytes]:
        """The datagrams the connection wants sent, sealed."""
        assert self.conn is not None and self.session is not None
        return [self.session.seal(segment) for segment in self.conn.take_segments()]

    def open(self, data: bytes, addr: object, now: float) -> Segment | None:
        """What the endpoint would hand the connection for ``data``."""
        session = self.session
        assert session is not None
        if is_sealed(data):
            return session.open_sealed(data, addr, now)
        try:
            segment = decode(data)
        except MalformedSegment as exc:
            self.stats["malformed:" + exc.reason] += 1
            return None
        return session.open_plain(segment, addr, now)

    def data(self) -> bytes:
        assert self.conn is not None
        self.events += self.conn.take_events()
        return b"".join(ev.data for ev in self.events if isinstance(ev, DataReceived))


class Pair:
    """A client and a server talking through the test."""

    def __init__(self, client_config: Config, server_config: Config, rekey_shift: int = 20):
        self.now = 0.0
        self.client_config = client_config
        self.server_config = server_config
        self.rekey_shift = rekey_shift
        self.client = Side("client")
        self.server = Side("server")
        self.client.session = SecureSession.connect(
            client_config,
            local_port=CPORT,
            remote_port=SPORT,
            peer=SERVER_ADDR,
            stats=self.client.stats,
            rekey_shift=rekey_shift,
        )
        self.client.conn = Connection.connect(
            client_config, local_port=CPORT, remote_port=SPORT, iss=1000, mss=MSS, now=0.0
        )

    def syn(self) -> bytes:
        (datagram,) = self.client.take()
        return datagram

    def accept(self, syn_datagram: bytes) -> Segment:
        """The server's listener: a session and a connection from the SYN."""
        syn = decode(syn_datagram)
        self.server.session = SecureSession.accept(
            self.server_config,
            syn,
            peer=CLIENT_ADDR,
            stats=self.server.stats,
            rekey_shift=self.rekey_shift,
        )
        bare = stripped(syn)
        self.server.conn = Connection.accept(
            self.server_config, bare, iss=5000, mss=MSS, now=self.now
        )
        return bare

    def to_server(self, datagrams: list[bytes], addr: object = CLIENT_ADDR) -> None:
        assert self.server.conn is not None
        for data in datagrams:
            segment = self.server.open(data, addr, self.now)
            if segment is not None:
                self.server.conn.receive(segment, self.now)

    def to_client(self, datagrams: list[bytes]) -> None:
        assert self.client.conn is not None
        for data in datagrams:
            segment = self.client.open(data, SERVER_ADDR, self.now)
            if segment is not None:
                self.client.conn.receive(segment, self.now)

    def handshake(self) -> None:
        self.accept(self.syn())
        self.to_client(self.server.take())
        self.to_server(self.client.take())
        assert self.client.conn is not None and self.server.conn is not None
        assert self.client.conn.state is State.ESTABLISHED
        assert self.server.conn.state is State.ESTABLISHED

    def client_sends(self, data: bytes) -> list[bytes]:
        assert self.client.conn is not None
        self.client.conn.send(data, self.now)
        return self.client.take()


def nk() -> Pair:
    return Pair(Config(peer_key=SERVER.public_key), Config(identity=SERVER))


def established(pair: Pair | None = None) -> Pair:
    pair = pair or nk()
    pair.handshake()
    return pair


# ---------------------------------------------------------------------- handshake on the wire


def test_syn_carries_the_offer_option_and_noise_message_1() -> None:
    pair = nk()
    syn = decode(pair.syn())
    assert syn.flags == SYN
    assert syn.options is not None
    body = dict(syn.options.unknown)[OPTION_KIND]
    assert body == EXID.to_bytes(2, "big") + bytes((1, 1))  # OFFER, pattern 1 (NK)
    assert len(syn.payload) == 32 + 16  # NK message 1: e, then the tag of an empty payload
    # The ordinary SYN options are all still there.
    assert syn.options.mss == MSS and syn.options.sack_permitted
    assert syn.options.timestamps is not None and syn.options.wscale is not None


def test_handshake_bytes_are_not_sequence_space() -> None:
    pair = nk()
    syn_datagram = pair.syn()
    bare = pair.accept(syn_datagram)
    assert bare.payload == b"" and not bare.options.unknown  # type: ignore[union-attr]
    (synack_datagram,) = pair.server.take()
    synack = decode(synack_datagram)
    assert synack.flags == SYN | ACK
    assert synack.ack == 1001  # the SYN alone: its 48 handshake bytes are not counted
    assert len(synack.payload) == 32 + 18 + 16  # e; the SYN-ACK's 18-byte summary, its tag
    pair.to_client([synack_datagram])
    assert pair.client.conn is not None and pair.client.conn.state is State.ESTABLISHED
    assert pair.client.data() == b""  # nothing of the handshake reached the application
    (ack,) = pair.client.take()
    assert is_sealed(ack)  # the third segment is already sealed
    pair.to_server([ack])
    datagrams = pair.client_sends(b"first byte")
    pair.to_server(datagrams)
    assert pair.server.data() == b"first byte"
    assert decode_header(datagrams[0])["seq"] == 1001


def decode_header(datagram: bytes) -> dict[str, int]:
    return {
        "seq": int.from_bytes(datagram[4:8], "big"),
        "ack": int.from_bytes(datagram[8:12], "big"),
        "checksum": int.from_bytes(datagram[16:18], "big"),
    }


def test_both_sides_agree_on_keys_and_handshake_hash() -> None:
    pair = established()
    client, server = pair.client.session, pair.server.session
    assert client is not None and server is not None
    assert client.handshake_hash == server.handshake_hash and client.handshake_hash
    assert client.info == ("NK", "ChaCha20-Poly1305")
    assert client.peer_key == SERVER.public_key
    assert server.peer_key is None  # NK: the client is anonymous


@pytest.mark.parametrize(
    ("client_config", "server_config", "pattern", "server_learns"),
    [
        (Config(peer_key=SERVER.public_key, identity=CLIENT), Config(identity=SERVER), "IK", True),
        (Config(psk=PSK), Config(psk=PSK), "NNpsk0", False),
        (
            Config(peer_key=SERVER.public_key, psk=PSK),
            Config(identity=SERVER, psk=PSK),
            "NKpsk0",
            False,
        ),
        (
            Config(peer_key=SERVER.public_key, identity=CLIENT, psk=PSK),
            Config(identity=SERVER, psk=PSK),
            "IKpsk2",
            True,
        ),
    ],
)
def test_every_pattern_establishes(
    client_config: Config, server_config: Config, pattern: str, server_learns: bool
) -> None:
    pair = established(Pair(client_config, server_config))
    assert pair.client.session is not None and pair.server.session is not None
    assert pair.client.session.pattern == pattern == pair.server.session.pattern
    assert pair.server.session.peer_key == (CLIENT.public_key if server_learns else None)
    pair.to_server(pair.client_sends(b"hello"))
    assert pair.server.data() == b"hello"


@pytest.mark.parametrize(
    ("client_config", "server_config", "reason"),
    [
        (Config(peer_key=Identity.generate().public_key), Config(identity=SERVER), 2),
        (Config(psk=PSK), Config(psk=bytes(32)), 2),
        (Config(peer_key=SERVER.public_key), Config(identity=SERVER, psk=PSK), 5),
        (Config(psk=PSK), Config(identity=SERVER), 6),
        (Config(peer_key=SERVER.public_key), Config(psk=PSK), 5),
        (Config(peer_key=SERVER.public_key, psk=PSK), Config(psk=PSK), 7),
    ],
    ids=["wrong-key", "wrong-psk", "psk-required", "no-psk", "psk-only-server", "no-identity"],
)
def test_server_refuses_with_a_reason_the_client_reports(
    client_config: Config, server_config: Config, reason: int
) -> None:
    pair = Pair(client_config, server_config)
    syn_datagram = pair.syn()
    syn = decode(syn_datagram)
    with pytest.raises(HandshakeRefused) as refused:
        pair.accept(syn_datagram)
    assert refused.value.reason == reason
    rst = reject_segment(syn, reason)
    assert rst is not None and rst.ack == syn.seq + 1
    pair.to_client([encode(rst)])
    client = pair.client.session
    assert client is not None and client.failure is not None
    assert str(refused.value) in str(client.failure)
    assert client.outbox == []  # nothing answers an RST


def test_plain_peer_answer_fails_the_client_and_resets_the_server() -> None:
    pair = nk()
    syn = decode(pair.syn())
    # A stack that knows nothing of the option: it ignores the SYN's payload and option.
    plain = Connection.accept(Config(), syn, iss=7000, mss=MSS, now=0.0)
    (synack,) = plain.take_segments()
    assert synack.ack == syn.seq + 1 and synack.payload == b""
    assert plain.take_events() == []  # the handshake bytes were not delivered
    pair.to_client([encode(synack)])
    session = pair.client.session
    assert session is not None and session.failure is not None
    assert "does not speak udptcp secure mode" in str(session.failure)
    ((rst_bytes, addr),) = session.outbox
    rst = decode(rst_bytes)
    assert rst.flags == RST and rst.seq == synack.ack and addr == SERVER_ADDR


def test_allow_plain_falls_back_on_a_plain_answer() -> None:
    pair = Pair(Config(peer_key=SERVER.public_key, allow_plain=True), Config())
    syn = decode(pair.syn())
    plain = Connection.accept(Config(), stripped(syn), iss=7000, mss=MSS, now=0.0)
    (synack,) = plain.take_segments()
    pair.to_client([encode(synack)])
    assert pair.client.session is not None and pair.client.session.fell_back
    assert pair.client.conn is not None and pair.client.conn.state is State.ESTABLISHED


def test_altered_synack_fails_the_handshake() -> None:
    pair = nk()
    pair.accept(pair.syn())
    (synack_datagram,) = pair.server.take()
    synack = decode(synack_datagram)
    assert synack.options is not None
    synack.options.mss = 536  # a middlebox rewrote the MSS
    pair.to_client([encode(synack)])
    session = pair.client.session
    assert session is not None and session.failure is not None
    assert "altered in transit" in str(session.failure)


def test_altered_syn_is_refused() -> None:
    pair = nk()
    syn = decode(pair.syn())
    assert syn.options is not None
    syn.options.wscale = None  # a middlebox stripped window scaling
    with pytest.raises(HandshakeRefused):
        pair.accept(encode(syn))


def test_retransmitted_syn_and_synack_carry_the_same_messages() -> None:
    pair = nk()
    first_syn = pair.syn()
    pair.accept(first_syn)
    (first_synack,) = pair.server.take()
    # The SYN-ACK is lost; the client's SYN retransmission is identical in its handshake.
    assert pair.client.conn is not None and pair.server.conn is not None
    pair.now = 1.5
    pair.client.conn.handle_timer(pair.now)
    (again,) = pair.client.take()
    assert decode(again).payload == decode(first_syn).payload
    pair.to_server([again])
    (second_synack,) = pair.server.take()
    assert decode(second_synack).payload == decode(first_synack).payload
    pair.to_client([second_synack])
    assert pair.client.conn.state is State.ESTABLISHED
    # Its ACK is lost too: the server's SYN-ACK again draws a new (sealed) ACK.
    pair.client.take()
    pair.to_client([first_synack])
    (ack,) = pair.client.take()
    assert is_sealed(ack)
    pair.to_server([ack])
    assert pair.server.conn.state is State.ESTABLISHED


def test_a_replayed_syn_or_synack_after_the_handshake_is_dropped() -> None:
    pair = nk()
    syn = pair.syn()
    pair.accept(syn)
    (synack,) = pair.server.take()
    pair.to_client([synack])
    pair.to_server(pair.client.take())
    pair.to_client(pair.server.take())
    pair.to_server(pair.client_sends(b"data"))
    assert pair.server.conn is not None
    pair.now += 0.1
    pair.server.conn.handle_timer(pair.now)  # its delayed ACK: the first sealed word back
    pair.to_client(pair.server.take())
    pair.client.take()
    pair.server.take()
    pair.to_server([syn])
    pair.to_client([synack])
    assert pair.server.take() == [] and pair.client.take() == []  # not even a challenge ACK
    assert pair.server.stats["secure_unsealed_syn"] == 1
    assert pair.client.stats["secure_unsealed_syn"] == 1


def test_a_different_syn_on_a_half_open_connection_is_dropped() -> None:
    pair = nk()
    pair.accept(pair.syn())
    other = nk()
    other_syn = decode(other.syn())
    assert pair.server.session is not None
    assert pair.server.session.open_plain(other_syn, CLIENT_ADDR, 0.0) is None
    assert pair.server.stats["secure_unsealed_syn"] == 1


def test_client_rst_before_anything_sealed_resets_the_half_open_server() -> None:
    pair = nk()
    pair.accept(pair.syn())
    (synack,) = pair.server.take()
    assert pair.server.conn is not None
    rst = seg(RST, seq=1001, window=0, src=CPORT, dst=SPORT)
    pair.to_server([encode(rst)])
    assert pair.server.conn.state is State.CLOSED


# ---------------------------------------------------------------------- sealed datagrams


def test_sealed_datagram_layout() -> None:
    pair = established()
    (datagram,) = pair.client_sends(b"x" * 100)
    assert is_sealed(datagram)
    assert datagram[12] == 0x80  # data offset 8 words: the header and the 12-byte option
    assert datagram[20:24] == bytes((OPTION_KIND, 12)) + EXID.to_bytes(2, "big")
    assert decode_header(datagram)["checksum"] == 0
    # Control byte: kind 8 (segment), 3 words of inner options (the timestamps).
    assert datagram[24] == 0x83
    assert len(datagram) == 20 + 12 + 100 + SEAL_OVERHEAD  # plain: 20 + 12 + 100
    assert b"x" * 16 not in datagram


def test_counters_are_per_datagram_and_never_the_sequence_number() -> None:
    pair = established()
    counters = []
    for _ in range(5):
        (datagram,) = pair.client_sends(b"same bytes")
        counters.append(int.from_bytes(datagram[25:32], "big"))
    assert counters == sorted(set(counters)) and len(counters) == 5
    # A retransmission of the same sequence space gets a new counter.
    assert pair.client.conn is not None
    pair.now += 5.0
    pair.client.conn.handle_timer(pair.now)
    retransmitted = pair.client.take()
    assert retransmitted
    assert int.from_bytes(retransmitted[0][25:32], "big") > counters[-1]


def test_every_single_bit_flip_is_rejected_and_counted() -> None:
    pair = established()
    pair.to_server(pair.client_sends(b"warm up"))
    (sample,) = pair.client_sends(b"the sample datagram, 100 bytes long" + bytes(64))
    server = pair.server
    assert server.conn is not None and server.session is not None
    state_before = (server.conn.rcv_nxt, server.conn.snd_una, server.conn.state)
    dropped_before = sum(server.stats.values())
    for bit in range(len(sample) * 8):
        flipped = bytearray(sample)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        assert server.open(bytes(flipped), CLIENT_ADDR, pair.now) is None, f"bit {bit} accepted"
    assert sum(server.stats.values()) - dropped_before == len(sample) * 8
    assert (server.conn.rcv_nxt, server.conn.snd_una, server.conn.state) == state_before
    assert server.session.outbox == []  # no path challenge for anything forged
    # The untouched datagram still opens: nothing above moved the replay window.
    pair.to_server([sample])
    assert pair.server.data().endswith(bytes(64))


def test_replayed_datagram_is_dropped() -> None:
    pair = established()
    datagrams = pair.client_sends(b"once")
    pair.to_server(datagrams)
    pair.to_server(datagrams)  # a replay, from the right address
    assert pair.server.data() == b"once"
    assert pair.server.stats["secure_replayed"] == 1


def test_datagrams_older_than_the_window_are_dropped_but_reordering_within_it_is_fine() -> None:
    pair = established()
    assert pair.client.conn is not None
    early = pair.client_sends(b"a")
    session = pair.client.session
    assert session is not None
    session._tx_n += 3000  # as if 3000 datagrams had gone out since
    late = pair.client_sends(b"b")
    pair.to_server(late)
    pair.to_server(early)
    assert pair.server.stats["secure_too_old"] == 1
    rng = random.Random(SEED)
    burst = [pair.client_sends(bytes([65 + i]))[0] for i in range(40)]
    rng.shuffle(burst)
    server_session = pair.server.session
    assert server_session is not None
    opened = [server_session.open_sealed(d, CLIENT_ADDR, pair.now) for d in burst]
    assert all(segment is not None for segment in opened), f"seed {SEED}"


def test_forged_rst_with_the_right_four_tuple_and_sequence_number_does_nothing() -> None:
    pair = established()
    server = pair.server
    assert server.conn is not None and server.session is not None
    rcv_nxt = server.conn.rcv_nxt
    forged = [
        seg(RST, seq=rcv_nxt, window=0, src=CPORT, dst=SPORT),
        seg(RST | ACK, seq=rcv_nxt, ack=server.conn.snd_nxt, window=0, src=CPORT, dst=SPORT),
        seg(SYN, seq=rcv_nxt, src=CPORT, dst=SPORT),
        seg(ACK, seq=rcv_nxt, ack=server.conn.snd_nxt, payload=b"injected", src=CPORT, dst=SPORT),
    ]
    pair.to_server([encode(segment) for segment in forged])
    # Sealed-looking forgeries (the right header and option, a made-up tag) as well.
    sealed_rst = seg(RST, seq=rcv_nxt, window=0, src=CPORT, dst=SPORT)
    header = encode(sealed_rst)[:12] + bytes((0x80, RST, 0, 0, 0, 0, 0, 0))
    option = (
        bytes((OPTION_KIND, 12))
        + EXID.to_bytes(2, "big")
        + bytes((0x80,))
        + (99).to_bytes(7, "big")
    )
    pair.to_server([header + option + os.urandom(16)])
    assert server.conn.state is State.ESTABLISHED
    assert server.data() == b""
    assert server.take() == []  # not even a challenge ACK: the forgeries were never seen
    assert server.stats["secure_unsealed_rst"] == 2
    assert server.stats["secure_unsealed_syn"] == 1
    assert server.stats["secure_unsealed"] == 1
    assert server.stats["secure_auth_failed"] == 1
    # And the connection still works.
    pair.to_server(pair.client_sends(b"still here"))
    assert server.data() == b"still here"


def test_a_sealed_rst_from_the_peer_resets() -> None:
    pair = established()
    assert pair.client.conn is not None and pair.server.conn is not None
    pair.client.conn.abort(pair.now)
    pair.to_server(pair.client.take())
    assert pair.server.conn.state is State.CLOSED


def test_keys_roll_over_every_epoch_on_both_sides() -> None:
    pair = established(Pair(Config(peer_key=SERVER.public_key), Config(identity=SERVER), 3))
    client, server = pair.client.session, pair.server.session
    assert client is not None and server is not None
    first_key = client._tx
    for i in range(50):
        pair.to_server(pair.client_sends(b"%d," % i))
        pair.to_client(pair.server.take())
    assert pair.server.data() == b"".join(b"%d," % i for i in range(50))
    assert client._tx_epoch >= 6 and client._tx is not first_key
    assert server._rx_epoch == client._tx_epoch
    assert len(server._rx_keys) <= 3  # previous, current, next at most
    # A counter two epochs ahead is not tried (no key derived for it).
    datagram = bytearray(pair.client_sends(b"z")[0])
    datagram[25:32] = (client._tx_n + 40).to_bytes(7, "big")
    assert server.open_sealed(bytes(datagram), CLIENT_ADDR, pair.now) is None
    assert server.stats["secure_auth_failed"] == 1


def test_options_other_than_timestamps_travel_sealed() -> None:
    pair = established()
    session = pair.client.session
    assert session is not None
    segment = seg(
        ACK,
        seq=1,
        ack=2,
        window=100,
        options=Options(timestamps=(5, 6), sack_blocks=((10, 20),)),
        src=CPORT,
        dst=SPORT,
    )
    datagram = session.seal(segment)
    assert pair.server.session is not None
    opened = pair.server.session.open_sealed(datagram, CLIENT_ADDR, pair.now)
    assert opened == segment


def test_an_authenticated_peer_cannot_send_oversized_or_broken_options() -> None:
    pair = established()
    client, server = pair.client.session, pair.server.session
    assert client is not None and server is not None
    # 48 bytes of "options": one 48-byte SACK option, six blocks where a header holds four.
    sack = bytes((5, 50)) + bytes(48)
    too_long = client._seal(0x80 | 12, CPORT, SPORT, 1, 2, ACK, 100, sack[:48])
    assert server.open_sealed(too_long, CLIENT_ADDR, pair.now) is None
    broken = client._seal(0x80 | 1, CPORT, SPORT, 1, 2, ACK, 100, bytes((8, 1, 0, 0)))
    assert server.open_sealed(broken, CLIENT_ADDR, pair.now) is None
    short = client._seal(0x80 | 4, CPORT, SPORT, 1, 2, ACK, 100, b"1234")
    assert server.open_sealed(short, CLIENT_ADDR, pair.now) is None
    assert pair.server.stats["secure_malformed"] == 3


# ---------------------------------------------------------------------- migration


def test_migration_needs_an_authenticated_datagram_and_a_path_response() -> None:
    pair = established()
    server = pair.server.session
    assert server is not None
    # Unauthenticated from a new address: nothing.
    (genuine,) = pair.client_sends(b"x")
    forged = bytearray(genuine)
    forged[-1] ^= 1
    pair.to_server([bytes(forged)], addr=NEW_CLIENT_ADDR)
    assert server.outbox == [] and server.peer == CLIENT_ADDR
    pair.to_server([genuine])
    # Authenticated from a new address: delivered, and a challenge goes there.
    pair.to_server(pair.client_sends(b"from the new port"), addr=NEW_CLIENT_ADDR)
    assert pair.server.data().endswith(b"from the new port")
    assert server.peer == CLIENT_ADDR  # not yet
    ((challenge, where),) = server.outbox
    server.outbox.clear()
    assert where == NEW_CLIENT_ADDR and is_sealed(challenge) and challenge[24] >> 4 == 0x9
    # The client answers. An answer arriving from elsewhere does not count (and is spent).
    client = pair.client.session
    assert client is not None
    assert client.open_sealed(challenge, SERVER_ADDR, pair.now) is None
    ((response, response_to),) = client.outbox
    client.outbox.clear()
    assert response_to == SERVER_ADDR and response[24] >> 4 == 0xA
    assert server.open_sealed(response, ("203.0.113.9", 1), pair.now) is None
    assert server.peer == CLIENT_ADDR
    # The next authenticated datagram from the new address, a while later, tries again.
    pair.now += 1.0
    pair.to_server(pair.client_sends(b"again"), addr=NEW_CLIENT_ADDR)
    ((challenge, _),) = server.outbox
    server.outbox.clear()
    client.open_sealed(challenge, SERVER_ADDR, pair.now)
    ((response, _),) = client.outbox
    assert server.open_sealed(response, NEW_CLIENT_ADDR, pair.now) is None
    assert server.peer == NEW_CLIENT_ADDR
    assert pair.server.stats["secure_migrations"] == 1
    # A replay of the response changes nothing more.
    assert server.open_sealed(response, NEW_CLIENT_ADDR, pair.now) is None
    assert pair.server.stats["secure_replayed"] == 1


def test_a_late_datagram_from_the_old_address_does_not_start_a_path_check() -> None:
    pair = established()
    server = pair.server.session
    assert server is not None
    straggler = pair.client_sends(b"old")
    pair.to_server(pair.client_sends(b"newer"), addr=CLIENT_ADDR)
    pair.to_server(straggler, addr=NEW_CLIENT_ADDR)  # reordered, from elsewhere
    assert server.outbox == []


def test_path_challenges_are_rate_limited() -> None:
    pair = established()
    server = pair.server.session
    assert server is not None
    for _ in range(5):
        pair.to_server(pair.client_sends(b"."), addr=NEW_CLIENT_ADDR)
    assert len(server.outbox) == 1
    pair.now += 1.0
    pair.to_server(pair.client_sends(b"."), addr=NEW_CLIENT_ADDR)
    assert len(server.outbox) == 2


def test_client_identity_needs_a_peer_key() -> None:
    with pytest.raises(ValueError, match="peer_key"):
        SecureSession.connect(
            Config(identity=CLIENT, psk=PSK), local_port=1, remote_port=2, peer=None
        )


# ---------------------------------------------------------------------- hostile input


_SEALED_PREFIX = bytes((OPTION_KIND, 12)) + EXID.to_bytes(2, "big")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    head=st.binary(min_size=12, max_size=12),
    control=st.integers(0x80, 0xFF),
    counter=st.binary(min_size=7, max_size=7),
    body=st.binary(max_size=200),
)
def test_arbitrary_sealed_looking_datagrams_never_raise(
    head: bytes, control: int, counter: bytes, body: bytes
) -> None:
    pair = established()
    server = pair.server
    assert server.session is not None
    data = (
        bytes((0xC3, 0x4F, 0x01, 0xBB))  # the connection's ports
        + head[4:12]
        + bytes((0x80,))
        + head[:7]
        + _SEALED_PREFIX
        + bytes((control,))
        + counter
        + body
    )
    assert server.open(data, CLIENT_ADDR, 0.0) is None
    assert server.session.authentic(data) is False if len(data) >= 48 else True
    assert server.session.outbox == []


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=20, max_size=120), client_side=st.booleans())
def test_arbitrary_plain_datagrams_never_raise_or_get_through_after_the_handshake(
    data: bytes, client_side: bool
) -> None:
    pair = established()
    side = pair.client if client_side else pair.server
    assert side.session is not None
    opened = side.open(data, SERVER_ADDR if client_side else CLIENT_ADDR, 0.0)
    # Only the two byte-identical handshake segments could pass, and random bytes are not.
    assert opened is None
