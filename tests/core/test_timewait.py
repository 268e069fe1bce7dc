"""The TIME-WAIT record (udptcp.core.timewait): the same answers as the connection it replaces.

The record is built from a real connection that reached TIME-WAIT over the simulated link;
the differential tests feed both the same hostile and honest segments and require the same
segments back, the same 2 MSL deadline and the same reopen decisions.
"""

from __future__ import annotations

import random
import sys

import pytest

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.segment import ACK, FIN, PSH, RST, SYN, Options, Segment
from udptcp.core.seq import seq_add
from udptcp.core.timewait import TimeWait
from udptcp.tools.simnet import Link, SimNet

S = State
_MASK = 0xFFFFFFFF


def _time_wait(config: Config, seed: int = 1) -> tuple[SimNet, Connection, Connection]:
    """A client that closed first and sits in TIME-WAIT, and its closed server."""
    net = SimNet(seed=seed)
    a, b = net.host("a", config=config), net.host("b", listening=True, config=config)
    net.connect_hosts(a, b, Link(delay=0.01), Link(delay=0.01))
    client = a.connect(b, 80)
    net.run_until(lambda: client.state is S.ESTABLISHED and bool(b.accepted))
    server = b.accepted[0]
    b.send(server, b"some data first")
    net.run_for(0.2)
    a.close(client)
    net.run_until(lambda: server.state is S.CLOSE_WAIT)
    b.close(server)
    net.run_until(lambda: client.state is S.TIME_WAIT)
    net.run_for(0.05)
    return net, client, server


def _fields(seg: Segment) -> tuple[object, ...]:
    opts = seg.options
    options = None if opts is None else (opts.timestamps, opts.sack_blocks)
    return (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window, options)


def _segment(rng: random.Random, conn: Connection) -> Segment:
    """A segment for the TIME-WAIT 4-tuple: around the edges that matter, or anywhere."""
    rcv_nxt, snd = conn.rcv_nxt, conn.snd_max
    seq = rng.choice(
        [
            rcv_nxt,
            seq_add(rcv_nxt, -1),  # the retransmitted FIN
            seq_add(rcv_nxt, -rng.randint(2, 3000)),  # old data
            seq_add(rcv_nxt, rng.randint(1, 2_000_000)),
            rng.getrandbits(32),
        ]
    )
    ack = rng.choice(
        [snd, seq_add(snd, 1), seq_add(snd, -1), seq_add(snd, -(2**20)), rng.getrandbits(32)]
    )
    flags = rng.choice([ACK, ACK | FIN, ACK | PSH, RST, RST | ACK, SYN, SYN | ACK, FIN, 0])
    payload = rng.choice([b"", b"", b"x", b"data" * rng.randint(1, 5)])
    if flags & (SYN | RST) and rng.random() < 0.7:
        payload = b""
    ts: tuple[int, int] | None = None
    if rng.random() < 0.85:
        recent = conn.ts_recent
        tsval = rng.choice(
            [
                recent,
                (recent + rng.randint(1, 500)) & _MASK,
                (recent - rng.randint(1, 500)) & _MASK,
                rng.getrandbits(32),
            ]
        )
        ts = (tsval, rng.getrandbits(32))
    blocks: tuple[tuple[int, int], ...] = ()
    if rng.random() < 0.2:
        blocks = ((seq_add(snd, -10), snd),)
    options = Options(timestamps=ts, sack_blocks=blocks) if ts is not None or blocks else None
    return Segment(
        conn.remote_port, conn.local_port, seq, ack, flags, rng.randint(0, 65535), options, payload
    )


CONFIGS = {
    "default": Config(msl=30.0),
    "no-timestamps": Config(msl=30.0, timestamps=False),
    "no-sack-no-timestamps": Config(msl=30.0, timestamps=False, sack=False),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_record_answers_every_segment_as_the_connection_would(name: str, seed: int) -> None:
    net, conn, _ = _time_wait(CONFIGS[name], seed)
    now = net.now
    record = TimeWait.from_connection(conn, now)
    rng = random.Random(seed)
    counters: dict[str, int] = {}
    for i in range(600):
        now += rng.choice([0.0, 0.0, 0.001, 0.3, 0.6, 1.1])
        seg = _segment(rng, conn)
        where = f"seed={seed} config={name} step={i} segment={seg!r}"
        if seg.flags & (SYN | ACK | RST) == SYN:
            assert record.accepts_reopen(seg) == conn.accepts_reopen(seg), where
        conn.receive(seg, now)
        expected = [_fields(s) for s in conn.take_segments()]
        answer = record.receive(seg, now, counters)
        got = [] if answer is None else [_fields(answer)]
        assert got == expected, where
        assert conn.state is S.TIME_WAIT, where
        assert record.deadline == conn._close_deadline, where
    assert record.reopen_iss() == conn.reopen_iss()
    print(f"seed={seed} config={name} counters={counters}", file=sys.stderr)


def test_a_retransmitted_fin_is_acknowledged_and_restarts_2msl() -> None:
    net, conn, server = _time_wait(Config(msl=30.0))
    now = net.now
    record = TimeWait.from_connection(conn, now)
    first_deadline = record.deadline
    ts = (conn.ts_recent + 5) & _MASK
    fin = Segment(
        conn.remote_port, conn.local_port, seq_add(conn.rcv_nxt, -1), conn.snd_max,
        ACK | FIN, 1000, Options(timestamps=(ts, 0)),
    )  # fmt: skip
    ack = record.receive(fin, now + 10)
    assert ack is not None and ack.flags == ACK
    assert (ack.seq, ack.ack) == (conn.snd_max, conn.rcv_nxt)
    assert record.deadline == now + 10 + 60.0 > first_deadline
    assert not record.expired(now + 60.0) and record.expired(now + 70.0)


def test_a_reset_is_ignored_and_a_stray_one_draws_a_challenge() -> None:
    net, conn, _ = _time_wait(Config(msl=30.0, timestamps=False))
    now = net.now
    record = TimeWait.from_connection(conn, now)
    exact = Segment(conn.remote_port, conn.local_port, conn.rcv_nxt, 0, RST, 0)
    assert record.receive(exact, now) is None  # RFC 1337: TIME-WAIT carries on
    assert not record.expired(now + 1)
    inside = Segment(conn.remote_port, conn.local_port, seq_add(conn.rcv_nxt, 10), 0, RST, 0)
    counters: dict[str, int] = {}
    challenge = record.receive(inside, now, counters)
    assert challenge is not None and challenge.flags == ACK and counters["challenge_acks"] == 1


def test_reopen_needs_a_newer_sequence_number_or_timestamp() -> None:
    net, conn, _ = _time_wait(Config(msl=30.0))
    record = TimeWait.from_connection(conn, net.now)
    newer_ts = Options(timestamps=((conn.ts_recent + 1) & _MASK, 0))
    older_ts = Options(timestamps=((conn.ts_recent - 1) & _MASK, 0))
    below = seq_add(conn.rcv_nxt, -5)
    assert record.accepts_reopen(Segment(1, 2, below, 0, SYN, 100, newer_ts))
    assert not record.accepts_reopen(Segment(1, 2, seq_add(conn.rcv_nxt, 9), 0, SYN, 100, older_ts))
    assert 65536 < (record.reopen_iss() - conn.snd_max) & _MASK < 0x80000000


def test_only_a_time_wait_connection_makes_a_record() -> None:
    net, _, server = _time_wait(Config(msl=30.0))
    assert server.state is S.CLOSED
    with pytest.raises(ValueError):
        TimeWait.from_connection(server, net.now)


def test_the_record_is_small() -> None:
    net, conn, _ = _time_wait(Config(msl=30.0))
    record = TimeWait.from_connection(conn, net.now)
    assert not hasattr(record, "__dict__")
    assert sys.getsizeof(record) < 256
