"""The routing rules an endpoint and the simulator apply to every segment they decode."""

from __future__ import annotations

import pytest
from support.script import Script, scripted_config
from support.segments import LOCAL, REMOTE, seg

from udptcp.core.connection import Connection, State
from udptcp.core.demux import Demux, Route
from udptcp.core.segment import ACK, FIN, RST, SYN
from udptcp.core.timewait import TimeWait

S = State
PEER_ADDR = ("127.0.0.1", 9000)
#: The 4-tuple of a segment from the peer to the connection under test.
KEY = (PEER_ADDR, LOCAL, REMOTE)


def _demux_with(state: State) -> tuple[Demux[Connection], Connection]:
    conn = Script(scripted_config()).in_state(state)
    demux: Demux[Connection] = Demux(lambda c: c)
    demux.add(KEY, conn)
    return demux, conn


def test_a_segment_for_a_known_four_tuple_goes_to_its_connection():
    demux, conn = _demux_with(S.ESTABLISHED)
    assert demux.route(seg(ACK, seq=301, ack=101), PEER_ADDR) == (Route.CONNECTION, conn, KEY)
    # A SYN on an established connection is the connection's to answer (challenge ACK).
    assert demux.route(seg(SYN, seq=5000), PEER_ADDR)[:2] == (Route.CONNECTION, conn)


def test_the_same_ports_from_another_address_are_another_connection():
    demux, _ = _demux_with(S.ESTABLISHED)
    other = ("127.0.0.2", 9000)
    assert demux.route(seg(ACK, seq=301, ack=101), other) == (
        Route.NO_CONNECTION,
        None,
        (other, LOCAL, REMOTE),
    )
    assert demux.route(seg(SYN, seq=1), other)[0] is Route.SYN


def test_a_newer_syn_reopens_a_four_tuple_in_time_wait():
    demux, conn = _demux_with(S.TIME_WAIT)
    assert demux.route(seg(SYN, seq=300 + 100_000), PEER_ADDR) == (Route.REOPEN, conn, KEY)
    # An old duplicate (below what the old incarnation saw) is the connection's to ignore.
    assert demux.route(seg(SYN, seq=200), PEER_ADDR)[0] is Route.CONNECTION


def test_our_own_syn_echoed_back_goes_to_the_connection_that_sent_it():
    conn = Script(scripted_config()).in_state(S.SYN_SENT)
    demux: Demux[Connection] = Demux(lambda c: c)
    demux.add(KEY, conn)
    # The echo arrives with its ports as we sent them: LOCAL -> REMOTE.
    echoed = seg(SYN, seq=conn.iss, src=LOCAL, dst=REMOTE)
    route, handle, key = demux.route(echoed, PEER_ADDR)
    assert (route, handle, key) == (Route.OWN_SYN, conn, (PEER_ADDR, REMOTE, LOCAL))
    # Another ISN with those ports is a genuine SYN for a listener on REMOTE.
    assert demux.route(seg(SYN, seq=7, src=LOCAL, dst=REMOTE), PEER_ADDR)[0] is Route.SYN


def test_syn_with_fin_is_dropped_and_anything_else_unknown_is_answered():
    demux: Demux[Connection] = Demux(lambda c: c)
    assert demux.route(seg(SYN | FIN, seq=1), PEER_ADDR)[0] is Route.SYN_FIN
    for flags in (ACK, RST, FIN | ACK, SYN | ACK):
        assert demux.route(seg(flags, seq=1, ack=2), PEER_ADDR)[0] is Route.NO_CONNECTION


def test_the_table_holds_one_connection_per_four_tuple():
    demux, conn = _demux_with(S.ESTABLISHED)
    other = Script(scripted_config()).in_state(S.ESTABLISHED)
    with pytest.raises(KeyError, match="in use"):
        demux.add(KEY, other)
    assert not demux.remove(KEY, other) and demux.holds(KEY, conn)
    assert demux.remove(KEY, conn) and len(demux) == 0 and demux.get(KEY) is None


def test_lookup_finds_what_get_finds_as_the_table_changes():
    demux, conn = _demux_with(S.ESTABLISHED)
    assert demux.lookup(KEY) is conn and demux.lookup((PEER_ADDR, REMOTE, LOCAL)) is None
    demux.remove(KEY, conn)
    assert demux.lookup(KEY) is None
    demux.add(KEY, conn)
    demux.clear()
    assert demux.lookup(KEY) is None and demux.get(KEY) is None


def _demux_with_record() -> tuple[Demux[Connection], TimeWait]:
    """A demultiplexer that holds only the TIME-WAIT record of a closed connection (the
    endpoint lets the connection go)."""
    conn = Script(scripted_config()).in_state(S.TIME_WAIT)
    record = TimeWait.from_connection(conn, 0.0)
    demux: Demux[Connection] = Demux(lambda c: c)
    demux.add_record(KEY, record)
    return demux, record


def test_a_segment_for_a_time_wait_record_is_the_records_to_answer():
    demux, record = _demux_with_record()
    assert demux.route(seg(ACK, seq=301, ack=101), PEER_ADDR) == (Route.RECORD, None, KEY)
    assert demux.record(KEY) is record and demux.has_records and demux.in_use(KEY)
    assert KEY not in demux and len(demux) == 0  # records are not connections
    # An old duplicate SYN draws the record's challenge ACK; SYN+FIN is still dropped first.
    assert demux.route(seg(SYN, seq=200), PEER_ADDR)[0] is Route.RECORD
    assert demux.route(seg(SYN | FIN, seq=300 + 100_000), PEER_ADDR)[0] is Route.SYN_FIN


def test_a_newer_syn_reopens_a_time_wait_records_four_tuple_by_the_same_rule():
    demux, record = _demux_with_record()
    newer = seg(SYN, seq=300 + 100_000)
    assert record.accepts_reopen(newer)
    assert demux.route(newer, PEER_ADDR) == (Route.REOPEN_RECORD, None, KEY)
    # Once the record is gone the 4-tuple is free: the SYN is for a listener.
    assert demux.remove_record(KEY) is record and demux.remove_record(KEY) is None
    assert demux.route(newer, PEER_ADDR)[0] is Route.SYN and not demux.in_use(KEY)


def test_a_connection_on_a_records_four_tuple_comes_first():
    demux, record = _demux_with_record()
    conn = Script(scripted_config()).in_state(S.ESTABLISHED)
    demux.add(KEY, conn)
    assert demux.route(seg(ACK, seq=301, ack=101), PEER_ADDR) == (Route.CONNECTION, conn, KEY)
    assert demux.records() == {KEY: record}
    demux.clear()
    assert not demux.in_use(KEY) and not demux.has_records
