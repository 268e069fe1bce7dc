"""A deterministic simulated network that drives sans-I/O connections on a virtual clock.

No sockets and no real time: every segment is encoded to bytes, carried across a seeded,
impaired :class:`Link`, decoded on the far side (so corruption exercises the checksum), and
handed to a :class:`SimHost`, which demultiplexes it the way an endpoint does. A 10 MB transfer
with loss runs in seconds of real time, and the same seed always gives the same run.

Typical use::

    net = SimNet(seed=1)
    a, b = net.host("a"), net.host("b", listening=True)
    net.connect_hosts(a, b, Link(loss=0.05, delay=0.01), Link(loss=0.05, delay=0.01))
    conn = a.connect(b, remote_port=80)
    net.run_until(lambda: conn.state is State.ESTABLISHED)
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State, rst_for
from udptcp.core.events import ConnectionClosed, DataReceived, EofReceived, Event
from udptcp.core.isn import IsnGenerator
from udptcp.core.segment import ACK, RST, SYN, MalformedSegment, Segment, decode, encode
from udptcp.core.seq import seq_gt


@dataclass
class Link:
    """One direction of a path. Probabilities are per datagram; times in seconds."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # chance a datagram is held back by ``reorder_delay``
    reorder_delay: float = 0.005
    delay: float = 0.001  # one-way propagation delay
    jitter: float = 0.0  # uniform extra delay in [0, jitter]
    corrupt: float = 0.0  # chance one random bit is flipped
    rate: float | None = None  # bytes per second; None = unlimited
    mtu: int | None = None  # largest UDP payload carried
    queue_limit: int = 1000  # datagrams waiting for the link beyond this are dropped
    # Counters, filled in as the simulation runs.
    stats: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1


@dataclass(frozen=True)
class TraceEntry:
    time: float
    sender: str
    receiver: str
    segment: Segment
    fate: str  # "sent", "lost", "corrupted", "duplicated", "too-big", "queue-full"


class SimNet:
    """The virtual clock, the event queue and the links between hosts."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.now = 0.0
        self.rng = random.Random(seed)
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self._links: dict[tuple[str, str], Link] = {}
        self._link_free_at: dict[tuple[str, str], float] = {}
        self._link_backlog: dict[tuple[str, str], int] = {}
        self.hosts: dict[str, SimHost] = {}
        self.trace: list[TraceEntry] = []
        self.record = True

    def host(self, name: str, *, listening: bool = False, config: Config | None = None) -> SimHost:
        h = SimHost(self, name, listening=listening, config=config or Config())
        self.hosts[name] = h
        return h

    def connect_hosts(self, a: SimHost, b: SimHost, ab: Link | None = None, ba: Link | None = None):
        self._links[(a.name, b.name)] = ab or Link()
        self._links[(b.name, a.name)] = ba or Link()

    def link(self, src: str, dst: str) -> Link:
        return self._links[(src, dst)]

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._counter), fn))

    # -- carrying datagrams -------------------------------------------------------------

    def transmit(self, src: SimHost, dst_name: str, seg: Segment) -> None:
        key = (src.name, dst_name)
        link = self._links[key]
        data = encode(seg)
        rng = self.rng
        link.count("offered")
        if link.mtu is not None and len(data) > link.mtu:
            self._log(src.name, dst_name, seg, "too-big")
            link.count("too-big")
            return
        if rng.random() < link.loss:
            self._log(src.name, dst_name, seg, "lost")
            link.count("lost")
            return
        copies = 2 if rng.random() < link.duplicate else 1
        if copies == 2:
            link.count("duplicated")
        # Serialization on a rate-limited link with a drop-tail queue.
        start = self.now
        if link.rate is not None:
            backlog = self._link_backlog.get(key, 0)
            if backlog >= link.queue_limit:
                self._log(src.name, dst_name, seg, "queue-full")
                link.count("queue-full")
                return
            start = max(self.now, self._link_free_at.get(key, 0.0))
            done = start + len(data) / link.rate
            self._link_free_at[key] = done
            self._link_backlog[key] = backlog + 1
            self.call_at(done, lambda: self._dequeue(key))
            start = done
        for _ in range(copies):
            payload = data
            fate = "sent"
            if rng.random() < link.corrupt:
                bit = rng.randrange(len(payload) * 8)
                mutable = bytearray(payload)
                mutable[bit // 8] ^= 1 << (bit % 8)
                payload = bytes(mutable)
                fate = "corrupted"
                link.count("corrupted")
            arrive = start + link.delay + rng.uniform(0, link.jitter)
            if rng.random() < link.reorder:
                arrive += link.reorder_delay
                link.count("reordered")
            self._log(src.name, dst_name, seg, fate)
            self.call_at(arrive, self._arrival(src.name, dst_name, payload))

    def _dequeue(self, key: tuple[str, str]) -> None:
        self._link_backlog[key] -= 1

    def _arrival(self, src: str, dst: str, data: bytes) -> Callable[[], None]:
        return lambda: self.hosts[dst].datagram_received(src, data)

    def _log(self, src: str, dst: str, seg: Segment, fate: str) -> None:
        if self.record:
            self.trace.append(TraceEntry(self.now, src, dst, seg, fate))

    # -- running ------------------------------------------------------------------------

    def _next_time(self) -> float | None:
        best = self._queue[0][0] if self._queue else None
        for h in self.hosts.values():
            t = h.next_deadline()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def step(self) -> bool:
        """Advance to the next event and run it; False when nothing is left to happen."""
        t = self._next_time()
        if t is None:
            return False
        self.now = max(self.now, t)
        while self._queue and self._queue[0][0] <= self.now:
            _, _, fn = heapq.heappop(self._queue)
            fn()
        for h in list(self.hosts.values()):
            h.run_timers(self.now)
        return True

    def run_until(self, done: Callable[[], bool], timeout: float = 600.0) -> float:
        """Run until ``done()`` is true; fail after ``timeout`` virtual seconds."""
        limit = self.now + timeout
        while not done():
            if not self.step() or self.now > limit:
                raise AssertionError(
                    f"simulation (seed={self.seed}) stalled or timed out at t={self.now:.3f}"
                )
        return self.now

    def run_for(self, seconds: float) -> None:
        """Run every event up to ``now + seconds``."""
        limit = self.now + seconds
        while True:
            t = self._next_time()
            if t is None or t > limit:
                break
            self.step()
        self.now = limit


class SimHost:
    """One simulated endpoint: demultiplexes segments to its connections and listens."""

    def __init__(self, net: SimNet, name: str, *, listening: bool, config: Config) -> None:
        self.net = net
        self.name = name
        self.listening = listening
        self.config = config
        self.mss = config.mss_for(1472)
        self.isn = IsnGenerator(key=bytes([len(name)]) * 16)
        self.conns: dict[tuple[str, int, int], Connection] = {}
        self.accepted: list[Connection] = []
        self.events: dict[Connection, list[Event]] = {}
        self.received: dict[Connection, bytearray] = {}
        self.malformed = 0
        self.rsts_sent = 0
        #: Called with (connection, event) for every event; may act on the connection.
        self.on_event: Callable[[Connection, Event], None] | None = None
        self._next_port = 40000

    def connect(
        self,
        peer: SimHost,
        remote_port: int = 80,
        *,
        local_port: int | None = None,
        iss: int | None = None,
    ) -> Connection:
        if local_port is None:
            self._next_port += 1
            local_port = self._next_port
        if iss is None:
            iss = self.isn.isn((self.name, local_port), (peer.name, remote_port), self.net.now)
        conn = Connection.connect(
            self.config,
            local_port=local_port,
            remote_port=remote_port,
            iss=iss,
            mss=self.mss,
            now=self.net.now,
        )
        self._add(peer.name, conn)
        return conn

    def _add(self, peer: str, conn: Connection) -> None:
        self.conns[(peer, conn.local_port, conn.remote_port)] = conn
        self.events[conn] = []
        self.received[conn] = bytearray()
        self.flush(peer, conn)

    def peer_of(self, conn: Connection) -> str:
        for (peer, _, _), c in self.conns.items():
            if c is conn:
                return peer
        raise KeyError(conn)

    def datagram_received(self, src: str, data: bytes) -> None:
        now = self.net.now
        try:
            seg = decode(data)
        except MalformedSegment:
            self.malformed += 1
            return
        key = (src, seg.dst_port, seg.src_port)
        conn = self.conns.get(key)
        is_syn = seg.flags & (SYN | ACK | RST) == SYN
        if (
            conn is not None
            and conn.state is State.TIME_WAIT
            and is_syn
            and seq_gt(seg.seq, conn.rcv_nxt)
        ):
            # RFC 9293 §3.10.7.4 / RFC 6191: a new incarnation may reopen from TIME-WAIT.
            del self.conns[key]
            conn = None
        if conn is None:
            if is_syn and self.listening:
                iss = self.isn.isn((self.name, seg.dst_port), (src, seg.src_port), now)
                conn = Connection.accept(self.config, seg, iss=iss, mss=self.mss, now=now)
                self.accepted.append(conn)
                self._add(src, conn)
                return
            rst = rst_for(seg)
            if rst is not None:
                self.rsts_sent += 1
                self.net.transmit(self, src, rst)
            return
        conn.receive(seg, now)
        self.flush(src, conn)

    def flush(self, peer: str, conn: Connection) -> None:
        """Send what the connection queued and collect its events (repeating while the
        event handler keeps giving the connection work)."""
        while True:
            for seg in conn.take_segments():
                self.net.transmit(self, peer, seg)
            events = conn.take_events()
            if not events:
                break
            for ev in events:
                self.events[conn].append(ev)
                if isinstance(ev, DataReceived):
                    self.received[conn] += ev.data
                if self.on_event is not None:
                    self.on_event(conn, ev)

    # -- application calls, each followed by a flush ------------------------------------

    def send(self, conn: Connection, data: bytes) -> None:
        conn.send(data, self.net.now)
        self.flush(self.peer_of(conn), conn)

    def shutdown(self, conn: Connection) -> None:
        conn.shutdown(self.net.now)
        self.flush(self.peer_of(conn), conn)

    def close(self, conn: Connection) -> None:
        conn.close(self.net.now)
        self.flush(self.peer_of(conn), conn)

    def abort(self, conn: Connection) -> None:
        peer = self.peer_of(conn)
        conn.abort(self.net.now)
        self.flush(peer, conn)

    def next_deadline(self) -> float | None:
        best = None
        for c in self.conns.values():
            t = c.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def run_timers(self, now: float) -> None:
        for key, conn in list(self.conns.items()):
            t = conn.get_timer()
            if t is not None and t <= now:
                conn.handle_timer(now)
                self.flush(key[0], conn)
            if conn.is_closed:
                self.conns.pop(key, None)

    # -- helpers for tests ------------------------------------------------------------

    def got_eof(self, conn: Connection) -> bool:
        return any(isinstance(e, EofReceived) for e in self.events[conn])

    def closed_with(self, conn: Connection) -> ConnectionClosed | None:
        for e in self.events[conn]:
            if isinstance(e, ConnectionClosed):
                return e
        return None
