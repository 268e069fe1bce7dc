"""The connection states and the one table that moves a connection between them.

The table below is RFC 9293 Figure 5 ("TCP Connection State Diagram") written as data, plus
what the figure leaves to the text: simultaneous open (§3.5, Figure 8), simultaneous close
(§3.6, Figure 13), a FIN that arrives with the ACK of ours, and the error paths of §3.10.7
(a reset, a timeout, an abort, an ICMP error end a connection from any state that has one).
Each row reads as an arrow of the figure: *in this state, on this cause, go to that state*.

The connection says what happened (a :class:`Cause`); :func:`next_state` looks up where it
leads. A pair that is not in the table is a bug in the connection, never something a peer
can provoke, and it raises :class:`IllegalTransition` in every build (not an ``assert``,
which ``python -O`` removes).
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    """The eleven connection states of RFC 9293 §3.3.2."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    # Members are singletons compared by identity, so the identity hash is as good as
    # Enum's hash of the name -- a Python-level call on every `state in {...}` test, several
    # per segment on the hot path.
    __hash__ = object.__hash__


class Cause(enum.Enum):
    """Why a connection changes state: an application call, a segment, a timer, an error."""

    ACTIVE_OPEN = "active OPEN"  # connect(): send SYN
    PASSIVE_OPEN = "passive OPEN"  # a listener's connection, born in LISTEN
    RCV_SYN = "rcv SYN"  # a SYN without ACK
    RCV_SYN_ACK = "rcv SYN,ACK"  # a SYN,ACK acknowledging our SYN (active open)
    RCV_ACK_OF_SYN = "rcv ACK of SYN"  # the third segment (or a crossing SYN,ACK)
    CLOSE = "CLOSE"  # shutdown()/close(): send FIN after the queued data
    RCV_FIN = "rcv FIN"
    RCV_FIN_ACKED = "rcv FIN, ACK of FIN"  # the peer's FIN, ours already acknowledged
    RCV_ACK_OF_FIN = "rcv ACK of FIN"
    TIMEOUT = "timeout"  # 2 MSL, FIN-WAIT-2, retransmissions or keepalive exhausted
    RCV_RST = "rcv RST"
    ABORT = "ABORT"  # abort(), fail(), or data for an application that closed: RST
    ICMP_ERROR = "ICMP error"  # the peer's port unreachable (RFC 1122 §4.2.3.9)
    FOREIGN_PEER = "not a udptcp peer"  # an echo of our SYN, or datagrams that are no segments

    # As State's: the table lookup hashes (state, cause) on every transition, and Enum's
    # own hash is a Python-level call.
    __hash__ = object.__hash__


class LocalProtocolError(RuntimeError):
    """The local caller asked for something the connection's state does not allow."""


class IllegalTransition(LocalProtocolError):
    """The connection asked to move along an arrow the state table does not have."""

    def __init__(self, state: State, cause: Cause) -> None:
        super().__init__(f"no transition from {state.value} on {cause.value!r}")
        self.state = state
        self.cause = cause


S = State
C = Cause

# Every state but CLOSED (and LISTEN, which has no peer yet) can be reset, timed out or
# aborted into CLOSED (§3.10.7, §3.10.5, §3.8.3); written out once here, added below.
_ERRORS: dict[State, tuple[Cause, ...]] = {
    S.LISTEN: (C.ABORT,),
    S.SYN_SENT: (C.RCV_RST, C.TIMEOUT, C.ABORT, C.ICMP_ERROR, C.FOREIGN_PEER),
    S.SYN_RECEIVED: (C.RCV_RST, C.TIMEOUT, C.ABORT, C.ICMP_ERROR),
    S.ESTABLISHED: (C.RCV_RST, C.TIMEOUT, C.ABORT, C.ICMP_ERROR),
    S.FIN_WAIT_1: (C.RCV_RST, C.TIMEOUT, C.ABORT, C.ICMP_ERROR),
    S.FIN_WAIT_2: (C.RCV_RST, C.TIMEOUT, C.ABORT, C.ICMP_ERROR),
    S.CLOSE_WAIT: (C.RCV_RST, C.TIMEOUT, C.ABORT, C.ICMP_ERROR),
    S.CLOSING: (C.RCV_RST, C.TIMEOUT, C.ABORT, C.ICMP_ERROR),
    S.LAST_ACK: (C.RCV_RST, C.TIMEOUT, C.ABORT, C.ICMP_ERROR),
    # RFC 1337: TIME-WAIT ignores RST; only its own timer (or the application) ends it.
    S.TIME_WAIT: (C.TIMEOUT, C.ABORT),
}

#: (state, cause) -> next state: Figure 5, arrow by arrow, then the error paths.
TABLE: dict[tuple[State, Cause], State] = {
    # opening
    (S.CLOSED, C.ACTIVE_OPEN): S.SYN_SENT,  # snd SYN
    (S.LISTEN, C.RCV_SYN): S.SYN_RECEIVED,  # snd SYN,ACK
    (S.LISTEN, C.CLOSE): S.CLOSED,
    (S.SYN_SENT, C.RCV_SYN_ACK): S.ESTABLISHED,  # snd ACK
    (S.SYN_SENT, C.RCV_SYN): S.SYN_RECEIVED,  # simultaneous open (§3.5): snd SYN,ACK
    (S.SYN_SENT, C.CLOSE): S.CLOSED,  # nothing was sent yet (§3.10.4)
    (S.SYN_RECEIVED, C.RCV_ACK_OF_SYN): S.ESTABLISHED,
    # Figure 5 also draws SYN-RECEIVED --CLOSE--> FIN-WAIT-1; here the FIN waits for
    # ESTABLISHED (§3.10.4 "queue for processing after entering ESTABLISHED"), which
    # takes the ESTABLISHED --CLOSE--> arrow at once.
    # closing: this side first
    (S.ESTABLISHED, C.CLOSE): S.FIN_WAIT_1,  # snd FIN
    (S.FIN_WAIT_1, C.RCV_ACK_OF_FIN): S.FIN_WAIT_2,
    (S.FIN_WAIT_1, C.RCV_FIN): S.CLOSING,  # simultaneous close (§3.6): snd ACK
    (S.FIN_WAIT_1, C.RCV_FIN_ACKED): S.TIME_WAIT,  # snd ACK
    (S.FIN_WAIT_2, C.RCV_FIN): S.TIME_WAIT,  # snd ACK
    (S.CLOSING, C.RCV_ACK_OF_FIN): S.TIME_WAIT,
    # closing: the peer first
    (S.ESTABLISHED, C.RCV_FIN): S.CLOSE_WAIT,  # snd ACK
    (S.CLOSE_WAIT, C.CLOSE): S.LAST_ACK,  # snd FIN
    (S.LAST_ACK, C.RCV_ACK_OF_FIN): S.CLOSED,
    # (TIME-WAIT and FIN-WAIT-2 --TIMEOUT--> CLOSED come with the error paths below.)
}
for _state, _causes in _ERRORS.items():
    for _cause in _causes:
        TABLE[_state, _cause] = S.CLOSED
del _state, _causes, _cause

#: The legal successors of each state, derived from :data:`TABLE` (for property tests that
#: check a recorded history without knowing the causes).
TRANSITIONS: dict[State, frozenset[State]] = {
    st: frozenset(new for (old, _c), new in TABLE.items() if old is st) for st in State
}


def next_state(state: State, cause: Cause) -> State:
    """Where ``cause`` takes a connection in ``state``; raises :class:`IllegalTransition`
    when the table has no such arrow."""
    try:
        return TABLE[state, cause]
    except KeyError:
        raise IllegalTransition(state, cause) from None


# States in which the connection is synchronized (§3.5: both ISNs known and acknowledged).
SYNCHRONIZED = frozenset(
    {S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK, S.TIME_WAIT}
)
# States in which an idle connection is probed (RFC 1122 §4.2.3.6).
KEEPALIVE_STATES = frozenset({S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_2})
# States in which an owed ACK is sent. In SYN-RECEIVED that is only the answer to an
# unacceptable segment or a challenge (RFC 9293 §3.10.7.4, RFC 5961 §3.2/§4.2): a repeated
# SYN is answered with the SYN,ACK instead.
ACKS = SYNCHRONIZED | {S.SYN_RECEIVED}
# States whose incoming text is delivered (§3.10.7.4, seventh step).
RECEIVES_TEXT = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})
# States from which our own data (and FIN) may still be transmitted.
SENDS_DATA = frozenset({S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.CLOSING, S.LAST_ACK})
# States in which the application may still queue data.
ACCEPTS_WRITES = frozenset({S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT})
