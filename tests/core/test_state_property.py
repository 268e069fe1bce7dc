"""Arbitrary segments, timers and calls against a connection in every state.

Whatever arrives, nothing escapes ``receive``, every state change is one RFC 9293 allows
(``TRANSITIONS``), the send-sequence variables stay ordered, buffers stay within the
window, and ``ConnectionClosed`` is reported at most once, as the last event.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.segments import seg

from udptcp.core.config import Config
from udptcp.core.connection import TRANSITIONS, State
from udptcp.core.events import ConnectionClosed
from udptcp.core.segment import ACK, FIN, SYN, Options
from udptcp.core.seq import seq_le

S = State
ISS, PEER = 1000, 5000


def _reach(script, target: State):
    """Drive a fresh connection into ``target`` with a scripted peer."""
    if target is S.SYN_SENT:
        return script.active(ISS)
    if target is S.SYN_RECEIVED:
        return script.passive(peer_iss=PEER, iss=ISS)
    conn = script.established(iss=ISS, peer_iss=PEER)
    conn.send(b"q" * 3000, script.now)
    sent = script.out()
    end = sent[-1].seq + sent[-1].seg_len
    if target is S.ESTABLISHED:
        return conn
    if target in (S.CLOSE_WAIT, S.LAST_ACK):
        script.peer(PEER + 1, end, ACK | FIN)
        if target is S.LAST_ACK:
            conn.close(script.now)
        script.out()
        return conn
    conn.close(script.now)
    fin = script.out()[-1]
    if target is S.FIN_WAIT_1:
        return conn
    if target is S.CLOSING:
        script.peer(PEER + 1, end, ACK | FIN)
        return conn
    script.peer(PEER + 1, fin.seq + 1)
    if target is S.TIME_WAIT:
        script.peer(PEER + 1, fin.seq + 1, ACK | FIN)
    return conn


near = st.integers(-70000, 70000)
segments = st.builds(
    lambda dseq, dack, flags, window, payload, mss, raw_seq: (
        dseq,
        dack,
        flags,
        window,
        payload,
        mss,
        raw_seq,
    ),
    near,
    near,
    st.integers(0, 255),
    st.integers(0, 65535),
    st.binary(max_size=1600),
    st.one_of(st.none(), st.integers(0, 65535)),
    st.one_of(st.none(), st.integers(0, 0xFFFFFFFF)),
)
actions = st.one_of(
    segments.map(lambda s: ("segment", s)),
    st.floats(0, 100).map(lambda t: ("time", t)),
    st.sampled_from(["send", "shutdown", "close", "abort", "pause", "resume", "icmp"]).map(
        lambda a: (a, None)
    ),
)
reachable = [s for s in State if s not in (S.CLOSED, S.LISTEN)]


@settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(start=st.sampled_from(reachable), steps=st.lists(actions, max_size=25))
def test_no_input_escapes_and_transitions_follow_rfc9293(script, start, steps):
    script.__init__(Config(delayed_ack=0.04, receive_buffer=8000, user_timeout=30.0))
    conn = _reach(script, start)
    assert conn.state is start, conn.state_history
    script.take_events()
    script.out()
    for kind, arg in steps:
        if kind == "segment":
            dseq, dack, flags, window, payload, mss, raw_seq = arg
            seq = raw_seq if raw_seq is not None else (conn.rcv_nxt + dseq) & 0xFFFFFFFF
            ack = (conn.snd_nxt + dack) & 0xFFFFFFFF
            opts = Options(mss=mss) if mss is not None and flags & SYN else None
            segment = seg(flags, seq=seq, ack=ack, window=window, options=opts, payload=payload)
            conn.receive(segment, script.now)
        elif kind == "time":
            script.advance(arg)
        elif kind == "send":
            if conn.state in (S.ESTABLISHED, S.CLOSE_WAIT) and not conn._fin_queued:
                conn.send(b"s" * 2000, script.now)
        elif kind == "shutdown":
            conn.shutdown(script.now)
        elif kind == "close":
            conn.close(script.now)
        elif kind == "abort":
            conn.abort(script.now)
        elif kind == "pause":
            conn.pause_reading()
        elif kind == "resume":
            conn.resume_reading(script.now)
        elif kind == "icmp":
            conn.icmp_unreachable(script.now)
        for segment in conn.take_segments():
            assert len(segment.payload) <= script.MSS
        script.take_events()
        # Invariants after every step.
        if conn.state not in (S.SYN_SENT, S.SYN_RECEIVED, S.CLOSED):
            assert seq_le(conn.snd_una, conn.snd_nxt) and seq_le(conn.snd_nxt, conn.snd_max)
        assert conn._reassembly.size + len(conn._held) <= script.config.receive_buffer
        deadline = conn.get_timer()
        assert deadline is None or deadline >= script.now - 1e-9 or conn.state is not S.CLOSED
    history = conn.state_history
    for before, after in zip(history, history[1:]):
        assert after in TRANSITIONS[before], f"{before} -> {after} in {history}"
    closed = [i for i, e in enumerate(script.events) if isinstance(e, ConnectionClosed)]
    assert len(closed) <= 1
    if closed:
        assert closed[0] == len(script.events) - 1
    if conn.state is S.CLOSED:
        assert conn.get_timer() is None
