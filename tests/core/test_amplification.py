"""Anti-amplification before the handshake completes (RFC 9000 §8.1's rule for TCP):
a half-open connection sends its unproven peer at most three times what it received."""

from __future__ import annotations

import pytest
from support.segments import seg

from udptcp.core.amplification import AMPLIFICATION_FACTOR, received_size, sent_size
from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.segment import ACK, RST, SYN, Options, Segment, decode, encode

# A bare SYN (20 bytes) and one with every option udptcp and Linux offer (44 as encoded).
BARE = seg(SYN, seq=1000, window=64240, src=5000, dst=80)
FULL = seg(
    SYN,
    seq=1000,
    window=64240,
    options=Options(mss=1460, wscale=7, sack_permitted=True, timestamps=(123, 0)),
    src=5000,
    dst=80,
)


class Victim:
    """A passive connection and the bytes exchanged with the address it answers."""

    def __init__(self, syn: Segment, config: Config | None = None) -> None:
        self.now = 0.0
        self.received = len(encode(syn))
        self.conn = Connection.accept(
            config or Config(), syn, iss=777, mss=1452, now=0.0, received=self.received
        )
        self.sent: list[Segment] = []
        self._collect()

    def _collect(self) -> None:
        for segment in self.conn.take_segments():
            assert decode(encode(segment)) == segment
            self.sent.append(segment)

    @property
    def sent_bytes(self) -> int:
        return sum(len(encode(s)) for s in self.sent)

    def feed(self, segment: Segment) -> None:
        self.received += len(encode(segment))
        self.conn.receive(segment, self.now)
        self._collect()

    def run_until(self, end: float) -> None:
        """Fire every timer up to ``end`` (virtual time)."""
        while True:
            t = self.conn.get_timer()
            if t is None or t > end:
                break
            self.now = max(self.now, t)
            self.conn.handle_timer(self.now)
            self._collect()
        self.now = end


@pytest.mark.parametrize("syn", [BARE, FULL], ids=["bare", "options"])
def test_a_forged_syn_earns_at_most_three_times_its_bytes_over_60_s(syn: Segment) -> None:
    victim = Victim(syn)
    victim.run_until(60.0)
    assert victim.sent_bytes <= AMPLIFICATION_FACTOR * len(encode(syn))
    assert all(s.flags == SYN | ACK for s in victim.sent)
    # Some retransmissions were held back (without the limit there were six SYN-ACKs).
    assert 1 <= len(victim.sent) < 6
    assert victim.conn.stats_counters["amplification_limited"] >= 1
    victim.run_until(120.0)
    assert victim.conn.state is State.CLOSED  # and the half-open slot is given back


def test_a_bare_syn_gets_a_small_syn_ack() -> None:
    victim = Victim(BARE)
    assert len(encode(victim.sent[0])) == 24  # MSS only: the SYN offered nothing else
    assert victim.sent[0].options == Options(mss=1452)


def test_a_burst_of_duplicate_syns_earns_no_syn_ack_of_its_own() -> None:
    victim = Victim(FULL)
    for i in range(100):
        victim.now = 0.001 * (i + 1)
        victim.feed(FULL)
    assert len(victim.sent) == 1  # the first SYN's answer only
    assert victim.conn.stats_counters["syn_acks_rate_limited"] == 100
    victim.run_until(60.0)
    assert victim.sent_bytes <= AMPLIFICATION_FACTOR * victim.received


def test_duplicate_syns_beyond_the_rate_limit_get_answers_within_the_budget() -> None:
    victim = Victim(BARE)
    for i in range(200):
        victim.now = 0.6 * (i + 1)  # slower than the 500 ms limit: each may be answered
        victim.feed(BARE)
        assert victim.sent_bytes <= AMPLIFICATION_FACTOR * victim.received
    assert victim.conn.stats_counters["syn_acks_rate_limited"] == 0


def test_a_real_peers_syn_retransmission_gets_the_syn_ack_again() -> None:
    victim = Victim(FULL)
    victim.run_until(20.0)  # the SYN-ACKs were lost; the budget is spent
    count = len(victim.sent)
    victim.now = 21.0
    victim.feed(FULL)  # the client's own SYN retransmission
    assert len(victim.sent) == count + 1 and victim.sent[-1].flags == SYN | ACK
    ack = seg(
        ACK, seq=1001, ack=778, window=500, options=Options(timestamps=(200, 0)), src=5000, dst=80
    )
    victim.feed(ack)
    assert victim.conn.state is State.ESTABLISHED
    victim.conn.send(b"z" * 100_000, victim.now)  # the address is proven: no limit now
    victim._collect()
    assert victim.sent_bytes > AMPLIFICATION_FACTOR * victim.received


def test_resets_count_against_the_budget() -> None:
    victim = Victim(BARE)
    victim.run_until(30.0)  # 24 + 24 of 60 bytes sent
    victim.conn.abort(victim.now)  # a 20-byte RST would make 68
    victim._collect()
    assert not any(s.flags & RST for s in victim.sent)
    assert victim.sent_bytes <= AMPLIFICATION_FACTOR * victim.received
    assert victim.conn.state is State.CLOSED


def test_sizes_are_what_the_codec_puts_on_the_wire_or_less_for_what_arrived() -> None:
    for segment in (
        BARE,
        FULL,
        seg(
            ACK,
            seq=3,
            ack=4,
            window=5,
            options=Options(sack_blocks=((1, 2),)),
            payload=b"x",
            src=1,
            dst=2,
        ),
    ):
        assert sent_size(segment) == len(encode(segment))
        assert received_size(segment) <= len(encode(segment))
    # Linux packs MSS, SACK-permitted, timestamps, NOP, window scale into 20 option bytes.
    assert received_size(FULL) == 40
