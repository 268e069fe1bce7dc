"""Scripted-exchange helpers for core tests: drive one Connection segment by segment."""

from __future__ import annotations

import pytest

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.events import Event
from udptcp.core.segment import ACK, SYN, Options, Segment

LOCAL, REMOTE = 4000, 80
MSS = 1452


class Script:
    """One connection under test plus a virtual clock; the test plays the peer by hand."""

    LOCAL, REMOTE, MSS = LOCAL, REMOTE, MSS

    def __init__(self, config: Config) -> None:
        self.config = config
        self.now = 0.0
        self.conn: Connection | None = None
        self.events: list[Event] = []

    # building connections -----------------------------------------------------------
    def active(self, iss: int = 100) -> Connection:
        self.conn = Connection.connect(
            self.config, local_port=LOCAL, remote_port=REMOTE, iss=iss, mss=MSS, now=self.now
        )
        return self.conn

    def passive(self, peer_iss: int = 300, iss: int = 100, window: int = 65535) -> Connection:
        syn = Segment(REMOTE, LOCAL, peer_iss, 0, SYN, window, Options(mss=MSS))
        self.conn = Connection.accept(self.config, syn, iss=iss, mss=MSS, now=self.now)
        return self.conn

    def established(self, iss: int = 100, peer_iss: int = 300, window: int = 65535) -> Connection:
        """An active connection through the handshake, with its segments consumed."""
        conn = self.active(iss)
        self.out()
        self.feed(Segment(REMOTE, LOCAL, peer_iss, iss + 1, SYN | ACK, window, Options(mss=MSS)))
        self.out()
        self.take_events()
        assert conn.state is State.ESTABLISHED
        return conn

    # driving -----------------------------------------------------------------------
    def feed(self, seg: Segment) -> None:
        assert self.conn is not None
        self.conn.receive(seg, self.now)

    def peer(
        self, seq: int, ack: int, flags: int = ACK, payload: bytes = b"", window: int = 65535
    ) -> None:
        """The peer sends a segment to the connection under test."""
        self.feed(Segment(REMOTE, LOCAL, seq, ack, flags, window, None, payload))

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
        assert self.conn is not None
        return self.conn.take_segments()

    def one(self) -> Segment:
        segs = self.out()
        assert len(segs) == 1, f"expected one segment, got {segs}"
        return segs[0]

    def take_events(self) -> list[Event]:
        assert self.conn is not None
        evs = self.conn.take_events()
        self.events += evs
        return evs


@pytest.fixture
def config() -> Config:
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


@pytest.fixture
def script(config: Config) -> Script:
    return Script(config)
