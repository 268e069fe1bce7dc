"""One core connection driven segment by segment on a virtual clock, the test playing the peer.

:meth:`Script.in_state` is the builder per state: it drives a fresh connection into any of the
eleven states with real segments (the ones a peer would send), checking each step, so a test
of, say, FIN-WAIT-2 starts where the seed notes' release diagram puts it.
"""

from __future__ import annotations

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.events import Event
from udptcp.core.segment import ACK, FIN, SYN, Segment

from .segments import LOCAL, MSS, REMOTE, seg

S = State

#: The initial sequence numbers :meth:`Script.in_state` uses (ours, the peer's).
ISS, PEER_ISS = 100, 300


class Script:
    """One connection under test plus a virtual clock; the test plays the peer by hand."""

    LOCAL, REMOTE, MSS = LOCAL, REMOTE, MSS

    def __init__(self, config: Config) -> None:
        self.config = config
        self.now = 0.0
        self.conn: Connection | None = None
        self.events: list[Event] = []

    # building connections -----------------------------------------------------------
    def active(self, iss: int = ISS) -> Connection:
        """A connection after an active OPEN: in SYN-SENT, its SYN not yet taken."""
        self.conn = Connection.connect(
            self.config, local_port=LOCAL, remote_port=REMOTE, iss=iss, mss=MSS, now=self.now
        )
        return self.conn

    def passive(self, peer_iss: int = PEER_ISS, iss: int = ISS, window: int = 65535) -> Connection:
        """A connection made by a listener from the peer's SYN: in SYN-RECEIVED."""
        syn = seg(SYN, seq=peer_iss, window=window, mss=MSS)
        self.conn = Connection.accept(self.config, syn, iss=iss, mss=MSS, now=self.now)
        return self.conn

    def established(
        self, iss: int = ISS, peer_iss: int = PEER_ISS, window: int = 65535
    ) -> Connection:
        """An active connection through the handshake, with its segments consumed."""
        conn = self.active(iss)
        self.out()
        self.feed(seg(SYN | ACK, seq=peer_iss, ack=iss + 1, window=window, mss=MSS))
        self.out()
        self.take_events()
        assert conn.state is State.ESTABLISHED
        return conn

    def in_state(self, state: State, iss: int = ISS, peer_iss: int = PEER_ISS) -> Connection:
        """A connection driven into ``state`` by the segments a peer would send, its output
        and events consumed. Our FIN (if sent) has sequence number ``iss + 1``, the peer's
        ``peer_iss + 1``: no data was exchanged.

        ======================  ==========================================================
        SYN-SENT                active OPEN
        SYN-RECEIVED            a listener's connection from the peer's SYN
        ESTABLISHED             active OPEN, peer's SYN,ACK
        FIN-WAIT-1              ESTABLISHED, CLOSE (our FIN out, not acknowledged)
        FIN-WAIT-2              FIN-WAIT-1, peer's ACK of our FIN
        CLOSING                 FIN-WAIT-1, peer's FIN not acknowledging ours
        TIME-WAIT               FIN-WAIT-2, peer's FIN
        CLOSE-WAIT              ESTABLISHED, peer's FIN
        LAST-ACK                CLOSE-WAIT, CLOSE (our FIN out)
        CLOSED                  LAST-ACK, peer's ACK of our FIN
        ======================  ==========================================================
        """
        if state is S.LISTEN:
            raise ValueError("a listener is the endpoint's, not a Connection (see passive())")
        if state is S.SYN_SENT:
            conn = self.active(iss)
        elif state is S.SYN_RECEIVED:
            conn = self.passive(peer_iss=peer_iss, iss=iss)
        else:
            conn = self.established(iss=iss, peer_iss=peer_iss)
            ours, theirs = iss + 1, peer_iss + 1
            if state in (S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.TIME_WAIT):
                conn.close(self.now)
                if state is S.FIN_WAIT_2 or state is S.TIME_WAIT:
                    self.feed(seg(ACK, seq=theirs, ack=ours + 1))
                    if state is S.TIME_WAIT:
                        self.feed(seg(FIN | ACK, seq=theirs, ack=ours + 1))
                elif state is S.CLOSING:
                    self.feed(seg(FIN | ACK, seq=theirs, ack=ours))
            elif state in (S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED):
                self.feed(seg(FIN | ACK, seq=theirs, ack=ours))
                if state is not S.CLOSE_WAIT:
                    conn.close(self.now)
                    if state is S.CLOSED:
                        self.feed(seg(ACK, seq=theirs + 1, ack=ours + 1))
        self.out()
        self.take_events()
        assert conn.state is state, f"wanted {state}, got {conn.state}"
        return conn

    # driving -----------------------------------------------------------------------
    def feed(self, segment: Segment) -> None:
        """Hand ``segment`` to the connection under test at the current time."""
        assert self.conn is not None
        self.conn.receive(segment, self.now)

    def peer(
        self, seq: int, ack: int, flags: int = ACK, payload: bytes = b"", window: int = 65535
    ) -> None:
        """The peer sends a segment to the connection under test."""
        self.feed(seg(flags, seq=seq, ack=ack, window=window, payload=payload))

    def advance(self, seconds: float) -> None:
        """Move the clock, firing timers that fall due on the way, in order."""
        assert self.conn is not None
        end = self.now + seconds
        while True:
            t = self.conn.get_timer()
            if t is None or t > end:
                break
            self.now = max(self.now, t)
            self.conn.handle_timer(self.now)
        self.now = end

    def out(self) -> list[Segment]:
        """The segments the connection queued since the last call."""
        assert self.conn is not None
        return self.conn.take_segments()

    def one(self) -> Segment:
        """The one segment the connection queued (fails on none or several)."""
        segs = self.out()
        assert len(segs) == 1, f"expected one segment, got {segs}"
        return segs[0]

    def take_events(self) -> list[Event]:
        """The events the connection reported since the last call (also kept in
        :attr:`events`)."""
        assert self.conn is not None
        evs = self.conn.take_events()
        self.events += evs
        return evs


def scripted_config() -> Config:
    """Plain RFC 9293 behaviour for scripted exchanges: no delayed ACKs, keepalive, window
    scaling, timestamps or SACK, so segments carry exactly the fields a test writes down.
    (test_options.py covers the options.)"""
    return Config(
        delayed_ack=0.0,
        window_scaling=False,
        timestamps=False,
        sack=False,
        receive_buffer=65535,
        congestion_control="newreno",
        keepalive=False,  # RFC 1122's default; test_keepalive.py covers it
        pacing=False,  # whole windows at once, as RFC 9293 describes (test_pacing.py)
    )


def states(conn: Connection) -> list[State]:
    """The states ``conn`` went through, oldest first (``state_history`` without causes, if it
    records them)."""
    return [h[0] if isinstance(h, tuple) else h for h in conn.state_history]
