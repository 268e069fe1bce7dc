"""The hosts of the simulated network (:mod:`udptcp.tools.simnet`): one :class:`SimHost`
per endpoint, demultiplexing what arrives with the endpoint's own rules and core structures,
and the data sources (:class:`BulkSource`) that feed its connections.

A host reaches its network only through :class:`Network` (what
:class:`~udptcp.tools.simnet.SimNet` provides), so this module does not import the network
that creates it.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from udptcp.core.config import Config
from udptcp.core.connection import Connection, LocalProtocolError, State, rst_for
from udptcp.core.demux import Demux, Route
from udptcp.core.events import ConnectionClosed, DataReceived, EofReceived, Event
from udptcp.core.isn import IsnGenerator
from udptcp.core.segment import ACK, RST, SYN, MalformedSegment, Segment, decode
from udptcp.tools.simlog import FlowLog

__all__ = ["BulkSource", "DataSource", "Network", "SimHost"]


class Network(Protocol):
    """What a :class:`SimHost` uses of the network it sits on."""

    #: The virtual clock.
    now: float
    #: Whether a flush samples the connection into its FlowLog.
    track_connections: bool
    #: Hosts that datagrams reached at the current instant (read as one train each).
    _reached: dict[SimHost, None]

    def transmit(
        self,
        src: SimHost,
        dst_name: str,
        seg: Segment,
        flow: FlowLog | None = None,
        index: int = -1,
    ) -> None:
        """Put ``seg`` on the route from ``src`` to ``dst_name``."""
        ...

    def _arm(self, host: SimHost, conn: Connection) -> None: ...

    def _disarm(self, host: SimHost, conn: Connection) -> None: ...


#: Called around one call into a connection by its host: ``watcher(call, now, train)``
#: must run ``call()`` once and return what it returned (the number of segments taken).
#: ``train`` is the number of segments handed over, 0 when the call fires timers.
Watcher = Callable[[Callable[[], int], float, int], int]


class DataSource(Protocol):
    """What :meth:`SimHost.stream` pulls application data from."""

    def read(self, n: int) -> bytes:
        """Up to ``n`` more bytes; ``b""`` at the end."""
        ...


class BulkSource:
    """``total`` seeded pseudo-random bytes, produced on demand, with their SHA-256."""

    def __init__(self, total: int, seed: int = 0) -> None:
        self.total = total
        self.produced = 0
        self.sha256 = hashlib.sha256()
        self._rng = random.Random(seed)

    def finish(self) -> None:
        """End the stream at what was produced so far."""
        self.total = self.produced

    def read(self, n: int) -> bytes:
        n = min(n, self.total - self.produced)
        if n <= 0:
            return b""
        data = self._rng.randbytes(n)
        self.produced += n
        self.sha256.update(data)
        return data


@dataclass
class _Stream:
    source: DataSource
    low_water: int
    then: str
    exhausted: bool = False  # the source has nothing more
    finished: bool = False  # and ``then`` was done


class SimHost:
    """One simulated endpoint: demultiplexes segments to its connections and listens."""

    def __init__(
        self, net: Network, name: str, *, listening: bool, config: Config, retain: bool = True
    ) -> None:
        self.net = net
        self.name = name
        self.listening = listening
        self.config = config
        self.retain = retain
        self.mss = config.mss_for(1472)
        self.isn = IsnGenerator(key=bytes([len(name)]) * 16)
        #: The connections by 4-tuple (peer name, local virtual port, remote virtual port).
        self.conns: Demux[Connection] = Demux(_itself)
        #: Datagrams that reached the host at the current instant, not yet read.
        self.inbox: list[tuple[str, bytes]] = []
        #: Segments dropped for carrying both SYN and FIN (as the endpoint drops them).
        self.syn_fin_dropped = 0
        #: Trains handed to connections, and the segments in them.
        self.trains = 0
        self.train_segments = 0
        self.accepted: list[Connection] = []
        self.events: dict[Connection, list[Event]] = {}
        self.received: dict[Connection, bytearray] = {}
        #: Per-connection transmission and delivery log.
        self.flows: dict[Connection, FlowLog] = {}
        self.malformed = 0
        self.rsts_sent = 0
        #: Called with (connection, event) for every event; may act on the connection.
        self.on_event: Callable[[Connection, Event], None] | None = None
        self._next_port = 40000
        self._keys: dict[Connection, tuple[str, int, int]] = {}
        self._eof: set[Connection] = set()
        self._closed: dict[Connection, ConnectionClosed] = {}
        self._streams: dict[Connection, _Stream] = {}
        self._watchers: dict[Connection, list[Watcher]] = {}

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
        key = (peer, conn.local_port, conn.remote_port)
        self.conns.add(key, conn)
        self._keys[conn] = key
        self.events[conn] = []
        self.received[conn] = bytearray()
        self.flows[conn] = FlowLog(self.name, peer, conn)
        self.flush(peer, conn)

    def peer_of(self, conn: Connection) -> str:
        return self._keys[conn][0]

    def datagram_received(self, src: str, data: bytes) -> None:
        """A datagram from host ``src`` reached this host: it is read, with whatever else
        arrives at this instant, once the instant's arrivals are all in (:meth:`read_inbox`)."""
        self.inbox.append((src, data))
        self.net._reached[self] = None

    def read_inbox(self) -> None:
        """Read every datagram in :attr:`inbox`, as the endpoint reads one burst: decode each
        and route it (:class:`~udptcp.core.demux.Demux`), collecting what goes to a
        connection into one train per connection (a SYN, a reset or a new connection is
        dealt with at once, after the train that came before it), then hand each train to
        its connection through ``receive_many``."""
        inbox, self.inbox = self.inbox, []
        trains: dict[Connection, list[Segment]] = {}
        for src, data in inbox:
            try:
                seg = decode(data)
            except MalformedSegment:
                self.malformed += 1
                continue
            self._route(seg, src, trains)
        for conn, segments in trains.items():
            self._deliver_train(conn, segments)

    def _route(
        self, seg: Segment, src: str, trains: dict[Connection, list[Segment]] | None
    ) -> None:
        is_syn = seg.flags & (SYN | ACK | RST) == SYN
        if is_syn and trains:
            # A SYN for a known 4-tuple: what came before it goes first (that train may
            # close the connection, or leave it in TIME-WAIT for the SYN to reopen).
            known = self.conns.get((src, seg.dst_port, seg.src_port))
            pending = trains.pop(known, None) if known is not None else None
            if known is not None and pending:
                self._deliver_train(known, pending)
        route, conn, key = self.conns.route(seg, src)
        if route is Route.CONNECTION or route is Route.OWN_SYN:
            assert conn is not None
            if trains is None or is_syn:
                self._deliver_train(conn, [seg])  # a SYN is handled at once, as alone
            else:
                trains.setdefault(conn, []).append(seg)
            return
        now = self.net.now
        iss: int | None = None
        if route is Route.REOPEN:
            # RFC 9293 §3.10.7.4 / RFC 6191: a new incarnation may reopen from TIME-WAIT.
            assert conn is not None
            self.conns.remove(key, conn)
            self.net._disarm(self, conn)
            iss = conn.reopen_iss()
            route = Route.SYN
        if route is Route.SYN_FIN:
            self.syn_fin_dropped += 1
            return
        if route is Route.SYN and self.listening:
            if iss is None:
                iss = self.isn.isn((self.name, seg.dst_port), (src, seg.src_port), now)
            new = Connection.accept(self.config, seg, iss=iss, mss=self.mss, now=now)
            self.accepted.append(new)
            self._add(src, new)
            return
        rst = rst_for(seg)
        if rst is not None:
            self.rsts_sent += 1
            self.net.transmit(self, src, rst)

    def _deliver_train(self, conn: Connection, segments: list[Segment]) -> None:
        """Hand ``segments`` to ``conn`` as one train, flushing after each stretch it takes
        (it pauses after an event other than data); what comes after it closed is routed
        again, one by one, as it would have been alone."""
        key = self._keys[conn]
        peer = key[0]
        self.trains += 1
        self.train_segments += len(segments)
        total, count = 0, len(segments)
        watchers = self._watchers.get(conn)
        while total < count and self.conns.holds(key, conn):
            if watchers is None:
                total += conn.receive_many(segments[total:] if total else segments, self.net.now)
            else:
                part = segments[total:] if total else segments
                now = self.net.now
                call = functools.partial(conn.receive_many, part, now)
                total += self._watched(watchers, call, now, len(part))
            self.flush(peer, conn)
            if conn.state is State.CLOSED:
                break
        for seg in segments[total:]:
            self._route(seg, peer, None)

    def flush(self, peer: str, conn: Connection) -> None:
        """Send what the connection queued and collect its events (repeating while the
        event handler or a data stream keeps giving the connection work), then re-arm its
        timer, and forget it once CLOSED."""
        net = self.net
        now = net.now
        flow = self.flows[conn]
        log = self.events[conn]
        while True:
            for seg in conn.take_segments():
                net.transmit(self, peer, seg, flow, flow.on_send(seg, conn, now))
            events = conn.take_events()
            if not events:
                stream = self._streams.get(conn)
                if stream is not None and self._top_up(conn, stream, now):
                    continue
                break
            for ev in events:
                if isinstance(ev, DataReceived):
                    flow.on_data(ev.data, now)
                    if self.retain:
                        self.received[conn] += ev.data
                        log.append(ev)
                else:
                    log.append(ev)
                    if isinstance(ev, EofReceived):
                        self._eof.add(conn)
                    elif isinstance(ev, ConnectionClosed):
                        self._closed.setdefault(conn, ev)
                if self.on_event is not None:
                    self.on_event(conn, ev)
        if net.track_connections:
            flow.sample(conn, now)
        net._arm(self, conn)
        if conn.is_closed:
            self.conns.remove(self._keys[conn], conn)

    def fire_timer(self, conn: Connection) -> None:
        """Run the connection's due timers now, and send what they produce."""
        key = self._keys[conn]
        if not self.conns.holds(key, conn):
            return  # forgotten (closed, or replaced by a new incarnation)
        watchers = self._watchers.get(conn)
        if watchers is None:
            conn.handle_timer(self.net.now)
        else:
            now = self.net.now

            def fire() -> int:
                conn.handle_timer(now)
                return 0

            self._watched(watchers, fire, now, 0)
        self.flush(key[0], conn)

    def watch(self, conn: Connection, watcher: Watcher) -> None:
        """Call ``watcher`` around every call that hands ``conn`` segments or fires its
        timers (tests check invariants across them this way, rather than by replacing the
        connection's methods, which a compiled core does not allow). Watchers added later
        run outermost."""
        self._watchers.setdefault(conn, []).append(watcher)

    @staticmethod
    def _watched(watchers: list[Watcher], call: Callable[[], int], now: float, train: int) -> int:
        for watcher in watchers:
            call = _bind(watcher, call, now, train)
        return call()

    # -- application calls, each followed by a flush ------------------------------------

    def send(self, conn: Connection, data: bytes) -> None:
        conn.send(data, self.net.now)
        self.flush(self.peer_of(conn), conn)

    def stream(
        self,
        conn: Connection,
        source: DataSource,
        *,
        low_water: int = 1 << 20,
        then: str = "close",
    ) -> None:
        """Write everything ``source`` produces, keeping at least ``low_water`` unsent bytes
        queued while it lasts, then ``"close"``, ``"shutdown"`` or do nothing (``"none"``)."""
        if then not in ("close", "shutdown", "none"):
            raise ValueError(f"then must be 'close', 'shutdown' or 'none', got {then!r}")
        self._streams[conn] = _Stream(source, low_water, then)
        self.flush(self.peer_of(conn), conn)

    def _top_up(self, conn: Connection, stream: _Stream, now: float) -> bool:
        """Keep ``low_water`` unsent bytes queued; True if the connection was given work."""
        if stream.finished:
            return False
        try:
            if not stream.exhausted:
                if conn.unsent_bytes >= stream.low_water:
                    return False
                while conn.unsent_bytes < stream.low_water:
                    data = stream.source.read(max(stream.low_water // 4, 1 << 16))
                    if not data:
                        stream.exhausted = True
                        break
                    conn.send(data, now)
                if not stream.exhausted:
                    return True
            # RFC 9293 §3.10.4: CLOSE in SYN-SENT deletes the connection, so the end of
            # the stream waits for the handshake.
            if conn.state not in (State.ESTABLISHED, State.CLOSE_WAIT):
                return False
            stream.finished = True
            if stream.then == "close":
                conn.close(now)
            elif stream.then == "shutdown":
                conn.shutdown(now)
        except LocalProtocolError:
            stream.finished = True  # the connection no longer takes data (reset, closed)
        return True

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
        """The earliest timer of any of this host's connections."""
        best = None
        for c in self.conns.values():
            t = c.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def run_timers(self, now: float) -> None:
        """Fire every connection timer due at ``now`` (the simulator does this by itself)."""
        for conn in list(self.conns.values()):
            t = conn.get_timer()
            if t is not None and t <= now:
                self.fire_timer(conn)

    # -- helpers for tests ------------------------------------------------------------

    def got_eof(self, conn: Connection) -> bool:
        return conn in self._eof

    def closed_with(self, conn: Connection) -> ConnectionClosed | None:
        return self._closed.get(conn)

    def delivered(self, conn: Connection) -> int:
        """In-order bytes delivered to the application on ``conn``."""
        return self.flows[conn].bytes_delivered


def _bind(watcher: Watcher, call: Callable[[], int], now: float, train: int) -> Callable[[], int]:
    return lambda: watcher(call, now, train)


def _itself(conn: Connection) -> Connection:
    return conn
