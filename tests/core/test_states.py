"""The builder per state: every state reached by the segments a peer would send, along the
path RFC 9293 Figure 5 draws (and the seed notes' diagrams show)."""

from __future__ import annotations

import pytest
from support.script import ISS, PEER_ISS, states

from udptcp.core.connection import State

S = State

PATHS = {
    S.SYN_SENT: [S.CLOSED, S.SYN_SENT],
    S.SYN_RECEIVED: [S.LISTEN, S.SYN_RECEIVED],
    S.ESTABLISHED: [S.CLOSED, S.SYN_SENT, S.ESTABLISHED],
    S.FIN_WAIT_1: [S.ESTABLISHED, S.FIN_WAIT_1],
    S.FIN_WAIT_2: [S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2],
    S.CLOSING: [S.ESTABLISHED, S.FIN_WAIT_1, S.CLOSING],
    S.TIME_WAIT: [S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.TIME_WAIT],
    S.CLOSE_WAIT: [S.ESTABLISHED, S.CLOSE_WAIT],
    S.LAST_ACK: [S.ESTABLISHED, S.CLOSE_WAIT, S.LAST_ACK],
    S.CLOSED: [S.ESTABLISHED, S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED],
}


@pytest.mark.parametrize("state", list(PATHS), ids=lambda s: s.value)
def test_in_state_drives_a_connection_there_along_figure_5(script, state):
    conn = script.in_state(state)
    assert conn.state is state
    assert states(conn)[-len(PATHS[state]) :] == PATHS[state]
    assert script.out() == [] and script.take_events() == []  # all consumed
    # Sequence numbers as documented: our FIN (if any) was ISS + 1, the peer's PEER_ISS + 1.
    if state not in (S.SYN_SENT, S.SYN_RECEIVED):
        fin_sent = state in (S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.TIME_WAIT, S.LAST_ACK)
        assert conn.snd_nxt == ISS + 1 + (fin_sent or state is S.CLOSED)
        fin_received = state in (S.CLOSING, S.TIME_WAIT, S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED)
        assert conn.rcv_nxt == PEER_ISS + 1 + fin_received


def test_listen_is_the_endpoints_not_a_connection(script):
    with pytest.raises(ValueError, match="listener"):
        script.in_state(S.LISTEN)
