"""Secure mode for peer connections (udptcp.core.secure_peer), driven by hand.

Both peers are :class:`Connection` s in SYN-SENT (a simultaneous open, as punching makes
one), each behind a :class:`PeerSession`; the test plays both endpoints and the network.
Role "a" is the Noise responder, role "b" the initiator.
"""

from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.events import DataReceived
from udptcp.core.keys import Identity
from udptcp.core.secure_peer import PeerSession, peer_pattern, peer_secure
from udptcp.core.secure_wire import (
    AUTH_FAILED,
    EXID,
    MISMATCH,
    OPTION_KIND,
    REFUSED_PLAIN,
    REJECT,
    WAIT,
    WRONG_PEER,
    is_sealed,
    option_body,
    reject_segment,
)
from udptcp.core.segment import ACK, RST, SYN, Options, Segment, decode, encode

A_ADDR = ("198.51.100.1", 40001)
B_ADDR = ("203.0.113.2", 40002)
A_PORT, B_PORT = 50001, 50002
MSS = 1400

ALICE = Identity.from_private_bytes(bytes(range(1, 33)))
BOB = Identity.from_private_bytes(bytes(range(101, 133)))
MALLORY = Identity.from_private_bytes(bytes(range(151, 183)))
PSK = bytes(range(200, 232))


class Peer:
    """One peer: its connection (SYN sent), its session, and the datagrams it sent."""

    def __init__(self, config: Config, *, initiator: bool, iss: int) -> None:
        self.initiator = initiator
        local, remote = (B_PORT, A_PORT) if initiator else (A_PORT, B_PORT)
        self.addr, self.other = (B_ADDR, A_ADDR) if initiator else (A_ADDR, B_ADDR)
        self.stats: collections.Counter[str] = collections.Counter()
        self.session = PeerSession(
            config,
            initiator,
            local_port=local,
            remote_port=remote,
            peer=self.other,
            stats=self.stats,
        )
        bare = config.replace(identity=None, peer_key=None, psk=None)
        self.conn = Connection.connect(
            bare, local_port=local, remote_port=remote, iss=iss, mss=MSS, now=0.0
        )
        self.events: list[object] = []

    def take(self) -> list[bytes]:
        """What the connection sends (sealed), then what the session asked to send."""
        out = [self.session.seal(seg) for seg in self.conn.take_segments()]
        extra = [data for data, _ in self.session.outbox]
        self.session.outbox.clear()
        return out + extra

    def receive(self, datagrams: list[bytes]) -> None:
        for data in datagrams:
            if is_sealed(data):
                seg = self.session.open_sealed(data, self.other, 0.0)
            else:
                seg = self.session.open_plain(decode(data), self.other, 0.0)
            if seg is not None:
                self.conn.receive(seg, 0.0)
        if self.session.failure is not None:
            self.conn.fail(self.session.failure, 0.0)

    def data(self) -> bytes:
        self.events += self.conn.take_events()
        return b"".join(ev.data for ev in self.events if isinstance(ev, DataReceived))


def ik(a_config: Config | None = None, b_config: Config | None = None) -> tuple[Peer, Peer]:
    a = Peer(a_config or Config(identity=ALICE, peer_key=BOB.public_key), initiator=False, iss=1000)
    b = Peer(b_config or Config(identity=BOB, peer_key=ALICE.public_key), initiator=True, iss=9000)
    return a, b


def our_option(datagram: bytes) -> bytes | None:
    return option_body(decode(datagram).options)


def test_patterns_for_peers_authenticate_both_sides() -> None:
    assert peer_pattern(Config(identity=ALICE, peer_key=BOB.public_key)) == "IK"
    assert peer_pattern(Config(psk=PSK)) == "NNpsk0"
    assert peer_pattern(Config(identity=ALICE, peer_key=BOB.public_key, psk=PSK)) == "IKpsk2"
    for one_sided in (
        Config(peer_key=BOB.public_key),  # we would stay anonymous to the other peer
        Config(identity=ALICE),  # nobody would be authenticated to us
        Config(identity=ALICE, psk=PSK),
        Config(peer_key=BOB.public_key, psk=PSK),
    ):
        with pytest.raises(ValueError, match="authenticates both peers"):
            peer_pattern(one_sided)
    assert not peer_secure(Config()) and peer_secure(Config(psk=PSK))


def test_the_responders_syn_says_wait_and_carries_no_handshake_bytes() -> None:
    a, b = ik()
    (syn_a,) = a.take()
    seg = decode(syn_a)
    assert seg.flags == SYN and seg.payload == b""
    assert seg.options is not None
    assert dict(seg.options.unknown)[OPTION_KIND] == EXID.to_bytes(2, "big") + bytes((WAIT, 2))
    (syn_b,) = b.take()
    assert our_option(syn_b) == bytes((1, 2))  # OFFER, IK
    assert len(decode(syn_b).payload) == 32 + 48 + 16  # IK message 1: e, s (sealed), tag


def test_crossing_syns_make_one_handshake_and_a_sealed_connection() -> None:
    a, b = ik()
    (syn_a,) = a.take()
    (syn_b,) = b.take()
    # The responder's SYN reaches the initiator first: dropped (its TCP stays in SYN-SENT)
    # and answered at once with the initiator's own SYN, once per address.
    b.receive([syn_a, syn_a])
    assert b.conn.state is State.SYN_SENT
    assert b.stats["secure_peer_waits"] == 2
    assert b.take() == [syn_b]
    # The offer reaches the responder: simultaneous open, SYN-ACK with message 2.
    a.receive([syn_b])
    assert a.conn.state is State.SYN_RECEIVED
    (syn_ack,) = a.take()
    assert decode(syn_ack).flags == SYN | ACK and our_option(syn_ack) == bytes((2, 2))
    b.receive([syn_ack])
    assert b.conn.state is State.ESTABLISHED
    (ack,) = b.take()
    assert is_sealed(ack)
    a.receive([ack])
    assert a.conn.state is State.ESTABLISHED
    # Both authenticated each other, by the keys they pinned.
    assert a.session.peer_key == BOB.public_key and b.session.peer_key == ALICE.public_key
    assert a.session.handshake_hash == b.session.handshake_hash is not None
    assert a.session.info.pattern == b.session.info.pattern == "IK"
    # Sequence space is a plain handshake's: the first byte is ISS + 1 on both sides.
    b.conn.send(b"from b", 0.0)
    a.receive(b.take())
    a.conn.send(b"from a", 0.0)
    b.receive(a.take())
    assert a.data() == b"from b" and b.data() == b"from a"
    assert a.conn.rcv_nxt == 9001 + 6 and b.conn.rcv_nxt == 1001 + 6


def test_psk_only_peers_connect_anonymously_but_mutually_authenticated() -> None:
    a, b = ik(Config(psk=PSK), Config(psk=PSK))
    a.take()
    a.receive(b.take())
    b.receive(a.take())
    a.receive(b.take())
    assert a.conn.state is b.conn.state is State.ESTABLISHED
    assert a.session.info.pattern == "NNpsk0" and a.session.peer_key is None


def refused_with(peer: Peer, datagrams: list[bytes]) -> int:
    """The REJECT reason among ``datagrams`` (the RST answering the failure)."""
    for data in datagrams:
        body = our_option(data)
        if decode(data).flags & RST and body is not None and body[0] == REJECT:
            return body[1]
    raise AssertionError("no REJECT RST")


def test_an_impostor_initiator_is_refused_by_the_pinned_key() -> None:
    # Mallory joined the session as b. It holds its own identity and knows Alice's
    # public key, so message 1 is well-formed: only the pin tells it apart from Bob.
    a, m = ik(b_config=Config(identity=MALLORY, peer_key=ALICE.public_key))
    a.take()
    a.receive(m.take())
    assert a.conn.state is State.CLOSED
    assert a.session.failure is not None and "not the one pinned" in str(a.session.failure)
    assert a.session.peer_key is None  # never reported as the peer
    answer = a.take()
    assert refused_with(a, answer) == WRONG_PEER
    m.receive(answer)
    assert "it expected someone else" in str(m.session.failure)
    assert m.conn.state is State.CLOSED


def test_an_impostor_responder_cannot_read_the_offer() -> None:
    m, b = ik(a_config=Config(identity=MALLORY, peer_key=BOB.public_key))
    m.take()
    m.receive(b.take())
    assert m.session.failure is not None and "does not authenticate" in str(m.session.failure)
    answer = m.take()
    assert refused_with(m, answer) == AUTH_FAILED
    b.receive(answer)
    assert b.conn.state is State.CLOSED
    message = str(b.session.failure)
    assert "refused the handshake" in message and "the peer_key we pinned" in message


def test_a_plain_peer_is_refused_on_either_side() -> None:
    # A plain responder: its SYN has no option.
    plain = Connection.connect(
        Config(), local_port=A_PORT, remote_port=B_PORT, iss=1000, mss=MSS, now=0.0
    )
    _, b = ik()
    b.take()
    b.receive([encode(seg) for seg in plain.take_segments()])
    assert "without secure mode" in str(b.session.failure)
    assert refused_with(b, b.take()) == REFUSED_PLAIN
    # A plain initiator: its SYN makes no offer.
    a, _ = ik()
    a.take()
    plain = Connection.connect(
        Config(), local_port=B_PORT, remote_port=A_PORT, iss=9000, mss=MSS, now=0.0
    )
    a.receive([encode(seg) for seg in plain.take_segments()])
    assert "without secure mode" in str(a.session.failure)
    assert a.conn.state is State.CLOSED


def test_keys_of_different_kinds_fail_before_any_handshake() -> None:
    a, b = ik(Config(psk=PSK))
    (syn_a,) = a.take()
    b.take()
    b.receive([syn_a])  # the initiator sees the responder's pattern in its WAIT
    message = str(b.session.failure)
    assert "it runs NNpsk0 (psk only), we run IK" in message
    answer = b.take()
    assert refused_with(b, answer) == MISMATCH
    a.receive(answer)
    assert "keys are of different kinds" in str(a.session.failure)


def test_a_reject_that_does_not_answer_our_syn_changes_nothing() -> None:
    a, b = ik()
    (syn_a,) = a.take()
    (syn_b,) = b.take()
    forged = reject_segment(decode(syn_b), AUTH_FAILED)
    assert forged is not None
    wrong_ack = Segment(
        forged.src_port,
        forged.dst_port,
        forged.seq,
        forged.ack + 1,
        forged.flags,
        forged.window,
        forged.options,
    )
    b.receive([encode(wrong_ack)])
    assert b.session.failure is None and b.conn.state is State.SYN_SENT
    # The real handshake still completes.
    a.receive([syn_b])
    b.receive(a.take())
    a.receive(b.take())
    assert a.conn.state is b.conn.state is State.ESTABLISHED


@settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    initiator=st.booleans(),
    flags=st.sampled_from([SYN, SYN | ACK, RST, RST | ACK, ACK, SYN | RST, 0]),
    body=st.one_of(st.none(), st.binary(max_size=6)),
    payload=st.binary(max_size=120),
    near_ack=st.booleans(),
    seq=st.integers(0, 0xFFFFFFFF),
)
def test_no_handshake_segment_raises_or_connects_by_itself(
    initiator: bool, flags: int, body: bytes | None, payload: bytes, near_ack: bool, seq: int
) -> None:
    """Whatever a (hostile) peer sends while the handshake runs, the session drops it,
    fails with SecureHandshakeError, or hands TCP a segment without handshake bytes."""
    a, b = ik()
    me = b if initiator else a
    me.take()
    ack = (me.conn.iss + 1) & 0xFFFFFFFF if near_ack else seq ^ 0x5A5A
    options = None
    if body is not None:
        options = Options(unknown=((OPTION_KIND, EXID.to_bytes(2, "big") + body),))
    local, remote = me.session.local_port, me.session.remote_port
    seg = Segment(remote, local, seq, ack, flags, 1000, options, payload)
    out = me.session.open_plain(seg, me.other, 0.0)
    if me.session.failure is not None:
        assert out is None
    if out is not None and out.flags & (SYN | RST) == SYN and out.payload:
        # Only a SYN,ACK that does not acknowledge our SYN goes by unstripped: TCP's
        # SYN-SENT rules refuse it (RFC 9293 §3.10.7.3, first check).
        assert initiator and out.ack != (me.conn.iss + 1) & 0xFFFFFFFF
    if out is not None:
        me.conn.receive(out, 0.0)
    # Nothing plain completes a handshake.
    assert not me.session.established and me.conn.state is not State.ESTABLISHED
