"""``asyncio.Transport`` over one udptcp connection.

The transport drives a sans-I/O :class:`~udptcp.core.connection.Connection`: after every call
into it (a segment, a write, a close, a timer) it *pumps*: sends the segments the connection
queued, turns its events into protocol calls, and hands its next deadline to the endpoint's
single timer. The contract follows CPython's ``selector_events._SelectorSocketTransport``:

* ``write`` takes bytes-like objects only; after ``write_eof`` it raises ``RuntimeError``;
  once the transport is closing it ignores data (and logs a warning after a few tries).
* ``close`` sends FIN after the queued data. ``connection_lost(None)`` follows as soon as
  everything written has been transmitted once (asyncio reports it once its buffer is in the
  kernel); the endpoint then finishes the connection as an *orphan*, as the kernel does for
  a closed socket: retransmissions, FIN-WAIT (bounded by ``Config.fin_wait2_timeout``),
  TIME-WAIT. Data arriving after the close is answered with RST.
* ``abort`` resets (RST) and reports ``connection_lost(None)`` via ``call_soon``.
* The write buffer is the data not yet transmitted once (``Connection.unsent_bytes``);
  ``pause_writing`` / ``resume_writing`` fire at the high / low water marks.
* ``pause_reading`` holds data inside the connection, so its advertised window really
  shrinks and the peer is flow-controlled.
* ``eof_received`` returning a false value closes the transport; a true one keeps it
  half-open.
* ``connection_lost`` is called exactly once, with ``None`` or the connection's error.

A protocol callback that raises is reported to ``loop.call_exception_handler`` and resets
that connection, as asyncio's ``_fatal_error`` does; the endpoint and its other
connections carry on. The exception is ``connection_made``: as on asyncio's transports, its
exception is only reported and the connection stays open. Protocol calls are never re-entered: a callback that writes or closes
only queues segments, and events it causes are delivered after it returns. Nor is a protocol
called from inside an application call (``write``, ``close``, ``resume_reading``, ...): what
those cause is delivered from ``call_soon``, as asyncio's own transports behave.
"""

from __future__ import annotations

import asyncio
import asyncio.constants
import asyncio.transports
import collections
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from udptcp.core.connection import Connection, State
from udptcp.core.errors import aborted
from udptcp.core.events import Connected, ConnectionClosed, DataReceived, EofReceived, Event
from udptcp.core.segment import Segment
from udptcp.core.stats import ConnectionStats

from .appcalls import feed_buffered, with_address
from .connsocket import ConnectionSocket
from .interfaces import Address, ConnectionListener, ConnectionServer, TransportHost

if TYPE_CHECKING:
    from udptcp.core.secure import SecureSession

    from .interfaces import HostedTransport

__all__ = ["Transport", "with_address"]

logger = logging.getLogger("udptcp")

#: Writes on a closed transport tolerated before a warning is logged (as asyncio's
#: ``constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES``).
LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5
#: asyncio's default write buffer limits.
DEFAULT_HIGH_WATER = 64 * 1024


class Transport(asyncio.transports._FlowControlMixin, asyncio.Transport):
    """A udptcp connection seen as an ``asyncio.Transport``.

    Transports are made by the endpoint: by ``create_connection`` for an active open, by a
    listener for a passive one. ``get_extra_info`` knows ``peername`` (remote UDP address),
    ``sockname`` (local UDP address), ``socket`` (a per-connection
    :class:`~udptcp.aio.connsocket.ConnectionSocket`), ``vports`` (local and remote virtual
    ports), ``stats`` (a :class:`~udptcp.core.stats.ConnectionStats`: state, RTT, windows,
    counters, computed on call), ``udptcp_stats`` (the older flat ``dict`` of counters and
    estimators, kept as it was) and ``udptcp_connection`` (the core connection itself, for
    tests and tools). In secure mode ``secure`` is the ``(pattern, cipher)`` pair (None on
    a plain connection), ``peer_key`` the peer's authenticated static public key (None when
    the pattern leaves the peer anonymous) and ``secure_handshake_hash`` the Noise
    handshake hash, the same on both ends (a channel binding).
    """

    # asyncio's loop.start_tls accepts transports that say so (udptcp.aio.tls explains).
    _start_tls_compatible = True
    # loop.sendfile (asyncio's base loop) reads the file and writes it in chunks, waiting
    # for resume_writing; its helper wants a _FlowControlMixin, whose methods this class
    # overrides all the same (uvloop has no loop.sendfile: NotImplementedError there).
    _sendfile_compatible = asyncio.constants._SendfileMode.FALLBACK

    def __init__(
        self,
        endpoint: TransportHost[Transport],
        conn: Connection,
        peer: Address,
        *,
        protocol_factory: Callable[[], asyncio.BaseProtocol] | None = None,
        listener: ConnectionListener[Transport] | None = None,
    ) -> None:
        # What _FlowControlMixin.__init__ and BaseTransport.__init__ set, set here once
        # (their chain of calls would set the water marks twice; one Transport a connection).
        self._extra: dict[str, Any] = {"peername": peer}
        self._loop = endpoint.loop
        self.endpoint = endpoint
        self.conn = conn
        limit = endpoint.window_limit
        if limit is not None and limit < conn.config.receive_buffer:
            conn.set_window_clamp(limit)  # what the socket holds without drops
        self.peer = peer
        self.key = (peer, conn.local_port, conn.remote_port)
        self.deadline: float | None = None
        # The endpoint's connection limits: the state last accounted for and the count
        # the connection is in (Endpoint.account).
        self.accounted_state: State | None = None
        self.slot = 0
        # Active open: the factory is called on ESTABLISHED, as asyncio calls it once the
        # socket connected; create_connection awaits the waiter.
        self._protocol_factory = protocol_factory
        self._waiter: asyncio.Future[None] | None = (
            self._loop.create_future() if protocol_factory is not None else None
        )
        # Passive open: the listener hands the connection to the server on ESTABLISHED.
        self.listener = listener
        self._server: ConnectionServer[Transport] | None = None
        self._protocol: asyncio.BaseProtocol | None = None
        self._buffered = False
        self._closing = False  # close() or abort() called, or the connection ended
        self._eof = False  # write_eof() called
        self._paused = False  # pause_reading() in effect
        self._conn_lost = False  # connection_lost scheduled (or nobody to tell)
        self._ignored_writes = 0  # writes dropped because the transport was closing
        self._protocol_paused = False  # pause_writing() in effect
        self._high_water = DEFAULT_HIGH_WATER
        self._low_water = DEFAULT_HIGH_WATER // 4
        self._events: collections.deque[Event] = collections.deque()
        self._dispatching = False
        self._dispatch_handle: asyncio.Handle | None = None
        self._push_handle: asyncio.Handle | None = None  # sends a held short segment
        self._socket: ConnectionSocket | None = None
        # Kept by the endpoint: the peer's endpoint when it is in this loop (False: not
        # looked for yet).
        self.local_peer: object = False
        # Secure mode: the session and the encoder that seals this connection's segments
        # (None on a plain connection: the endpoint encodes them itself).
        self.secure_session: SecureSession | None = None
        self.seal: Callable[[Segment], bytes] | None = None

    def __repr__(self) -> str:
        info = [type(self).__name__, f"{self.conn.state.value}"]
        if self._closing:
            info.append("closing")
        info.append(f"peer={self.peer!r}")
        info.append(f"vports={self.conn.local_port}->{self.conn.remote_port}")
        return f"<udptcp.{' '.join(info)}>"

    # ------------------------------------------------------------------ BaseTransport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Transport information; see the class docstring for the keys."""
        if name == "socket":
            if self._socket is None:
                self._socket = ConnectionSocket(self)
            return self._socket
        if name == "sockname":
            return self.endpoint.local_address_for(self.peer)
        if name == "stats":
            return self.stats()
        if name == "udptcp_stats":
            return self.conn.stats()
        if name == "vports":
            return (self.conn.local_port, self.conn.remote_port)
        if name == "udptcp_connection":
            return self.conn
        if name in ("secure", "peer_key", "secure_handshake_hash"):
            session = self.secure_session
            if session is None or not session.established:
                return default
            if name == "secure":
                return session.info
            value = session.peer_key if name == "peer_key" else session.handshake_hash
            return default if value is None else value
        return super().get_extra_info(name, default)

    def stats(self) -> ConnectionStats:
        """The connection's statistics now (``get_extra_info("stats")``)."""
        return ConnectionStats.of(
            self.conn, sockname=self.endpoint.local_address_for(self.peer), peername=self.peer
        )

    def moved(self, peer: Address) -> None:
        """Secure mode moved the connection to the peer's new UDP address."""
        self.peer = peer
        self.key = (peer, self.conn.local_port, self.conn.remote_port)
        self._extra["peername"] = peer  # type: ignore[attr-defined]  # BaseTransport's slot

    def is_closing(self) -> bool:
        """True once ``close()`` or ``abort()`` was called or the connection ended (also
        when its end is known and ``connection_lost`` not yet delivered)."""
        return self._closing or self.conn.state is State.CLOSED

    def close(self) -> None:
        """Send FIN after the queued data; incoming data is discarded from now on."""
        if self._closing:
            return
        self._closing = True
        if self._conn_lost or self.conn.state in _FINISHED:
            return
        self.conn.close(self._loop.time())
        self._flush()
        self._maybe_orphan()

    def _maybe_orphan(self) -> None:
        """After ``close()``: once everything written went out once, the application is
        done with the connection; the endpoint carries on with it alone."""
        if (
            self._closing
            and not self._conn_lost
            and self._protocol is not None
            and self.conn.unsent_bytes == 0
            and self.conn.state is not State.CLOSED
        ):
            self._connection_closed(None)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Switch the protocol; later data goes to ``protocol``."""
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The current protocol."""
        return self._protocol  # type: ignore[return-value]

    # ------------------------------------------------------------------ ReadTransport

    def is_reading(self) -> bool:
        """True unless reading is paused or the transport is closing."""
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        """Stop delivering data; the connection holds it and its window shrinks."""
        if self._closing or self._paused:
            return
        self._paused = True
        self.conn.pause_reading()

    def resume_reading(self) -> None:
        """Deliver held data and reopen the window."""
        if self._closing or not self._paused:
            return
        self._paused = False
        self.conn.resume_reading(self._loop.time())
        self._flush()

    # ------------------------------------------------------------------ WriteTransport

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks; defaults as asyncio: high 64 KiB, low high // 4."""
        if high is None:
            high = 4 * low if low is not None else DEFAULT_HIGH_WATER
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water = high
        self._low_water = low
        self._maybe_pause_protocol()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """``(low, high)``, as asyncio returns them."""
        return (self._low_water, self._high_water)

    def get_write_buffer_size(self) -> int:
        """Bytes written but not yet transmitted once."""
        if self._conn_lost:
            return 0
        return self.conn.unsent_bytes

    def write(self, data: bytes | bytearray | memoryview) -> None:  # type: ignore[override]
        """Queue ``data`` for sending; never blocks, never drops
        (docs/architecture.md#back-pressure)."""
        if type(data) is not bytes and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        conn = self.conn
        if self._conn_lost or self._closing or conn.state is _CLOSED:
            # asyncio drops writes on a lost connection and warns after a few of them.
            self._ignored_writes += 1
            if self._ignored_writes >= LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("udptcp: write() on a closed transport is ignored.")
            return
        now = self._loop.time()
        # more=True: a short last segment waits while data is in flight, until the loop's
        # next turn (_push) or the next write() fills it; Linux's autocorking does the
        # same for a TCP_NODELAY socket. A bulk writer of 64 KiB chunks would otherwise
        # send each as full segments plus a short one.
        conn.send(data, now, True)
        self._flush()
        if conn.tail_held and self._push_handle is None:
            self._push_handle = self._loop.call_soon(self._push)
        # A pending RST or ICMP error ends the connection before write() returns, as a
        # kernel socket's next send fails, even if the program never yields.
        self.endpoint.poll_from_write(now, self)
        if not self._protocol_paused and conn.unsent_bytes > self._high_water:
            self._maybe_pause_protocol()  # (which looks again, knowing a lost connection)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:  # type: ignore[override]
        """Write every buffer in ``list_of_data``, in order, as one write."""
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        """Half-close: FIN after the queued data; data from the peer still arrives."""
        if self._closing or self._eof:
            return
        self._eof = True
        if self._conn_lost or self.conn.state in _FINISHED:
            return
        self.conn.shutdown(self._loop.time())
        self._flush()

    def can_write_eof(self) -> bool:
        """Always True: TCP half-close."""
        return True

    def abort(self) -> None:
        """Reset the connection (RST); ``connection_lost(None)`` follows soon."""
        self._force_close(None)

    # ------------------------------------------------------------------ driving the core

    def relocated(self, peer: Address) -> None:
        """The endpoint bound this connection to a new remote address (a punched path)."""
        self.peer = peer
        self.key = (peer, self.conn.local_port, self.conn.remote_port)
        self._extra["peername"] = peer  # type: ignore[attr-defined]

    def segment_received(self, seg: Segment) -> None:
        self.conn.receive(seg, self._loop.time())
        self.pump()

    def segments_received(self, segments: list[Segment]) -> int:
        """Hand a train to the connection; returns how many segments it took (all of
        them unless the connection closed on the way)."""
        conn = self.conn
        total, count = 0, len(segments)
        while total < count:
            # The connection pauses after an event other than data: deliver it, then go on.
            total += conn.receive_many(segments[total:] if total else segments, self._loop.time())
            self.pump()
            if total >= count or conn.state is _CLOSED or not self.endpoint.has_connection(self):
                break
        return total

    def timer_fired(self, now: float) -> None:
        self.conn.handle_timer(now)
        self.pump()

    def icmp_unreachable(self, now: float, seq: int | None) -> None:
        self.conn.icmp_unreachable(now, seq)
        self.pump()

    def foreign_datagram(self, now: float) -> None:
        self.conn.foreign_datagram(now)
        self.pump()

    def icmp_soft_error(self, now: float, detail: str, seq: int | None) -> None:
        self.conn.icmp_soft_error(now, detail, seq)
        self.pump()

    def pump(self) -> None:
        """Send what the connection queued, deliver its events, re-arm its deadline.

        Called for what the network and the timer do. Safe inside a protocol callback: the
        inner call only transmits; the outer one delivers what the callback caused, in order.
        """
        endpoint = self.endpoint
        if endpoint.deferring:
            self._flush()  # the write path reads: deliver from call_soon
            return
        conn = self.conn
        segments = conn.take_segments()
        if segments:
            endpoint.transmit(self.peer, segments, self.seal)
        if not self._dispatching:
            self._dispatching = True
            try:
                if self._events:
                    self._dispatch()  # held while reading was paused
                while True:
                    events = conn.take_events()
                    if not events:
                        break
                    self._events.extend(events)
                    self._dispatch()
                    segments = conn.take_segments()
                    if segments:
                        endpoint.transmit(self.peer, segments, self.seal)
            finally:
                self._dispatching = False
        deadline = conn.get_timer()
        if deadline != self.deadline:
            endpoint.schedule(self, deadline)
        if conn.state is not self.accounted_state:
            endpoint.account(self)
        if conn.state is _CLOSED:
            endpoint.forget(self)
        elif self._protocol_paused:
            self._maybe_resume_protocol()
        elif self._closing and not self._conn_lost:
            self._maybe_orphan()
        waiter = endpoint.linger_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # the loop is shutting down: look at the orphans again

    def _flush(self) -> None:
        """After an application call: transmit and re-arm, but deliver events later.

        asyncio never calls a protocol from inside ``write()``, ``resume_reading()`` and
        friends (``StreamReader`` relies on it: it resumes reading and only then creates
        the future that data wakes), so events are delivered from a ``call_soon``.
        """
        conn = self.conn
        endpoint = self.endpoint
        segments = conn.take_segments()
        if segments:
            endpoint.transmit(self.peer, segments, self.seal)
        if not self._dispatching:
            events = conn.take_events()
            if events:
                self._events.extend(events)
            if self._events and self._dispatch_handle is None:
                self._dispatch_handle = self._loop.call_soon(self._deferred_dispatch)
        deadline = conn.get_timer()
        if deadline != self.deadline:
            endpoint.schedule(self, deadline)
        if conn.state is not self.accounted_state:
            endpoint.account(self)
        if conn.state is _CLOSED:
            endpoint.forget(self)

    def _push(self) -> None:
        """The loop's next turn after a write() whose short last segment was held."""
        self._push_handle = None
        if not self.conn.tail_held or self.conn.state is _CLOSED:
            return  # a later write, an ACK or the end of the connection took it along
        try:
            self.conn.push(self._loop.time())
            self.pump()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # a bug in udptcp: do not leave it half-done
            self.fatal_error(exc, "Fatal error in udptcp connection")

    def _deferred_dispatch(self) -> None:
        self._dispatch_handle = None
        try:
            self.pump()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # a bug in udptcp: do not leave it half-done
            self.fatal_error(exc, "Fatal error in udptcp connection")

    def _dispatch(self) -> None:
        """Deliver queued events in order; data and EOF wait while reading is paused."""
        queue = self._events
        while queue:
            ev = queue[0]
            kind = type(ev)
            if kind is DataReceived or kind is EofReceived:
                if self._closing:
                    # asyncio stops reading once the transport is closing.
                    queue.popleft()
                    continue
                if self._paused and type(queue[-1]) is not ConnectionClosed:
                    return  # resume_reading() delivers it
                # (The end of the connection ends the pause, as the core decides.)
            queue.popleft()
            if kind is DataReceived and not self._buffered:
                # _deliver's first case, inlined: this is every message's path.
                try:
                    self._protocol.data_received(ev.data)  # type: ignore[union-attr,attr-defined]
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self.fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
            else:
                self._deliver(ev)

    def _deliver(self, ev: Event) -> None:
        kind = type(ev)
        if kind is DataReceived:
            data = ev.data  # type: ignore[attr-defined]
            try:
                if self._buffered:
                    feed_buffered(self._protocol, data)  # type: ignore[arg-type]
                else:
                    self._protocol.data_received(data)  # type: ignore[union-attr]
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
        elif kind is EofReceived:
            try:
                keep_open = self._protocol.eof_received()  # type: ignore[union-attr]
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
                return
            if not keep_open:
                self.close()
        elif kind is Connected:
            if self.listener is not None:
                self._hand_over()
            else:
                self._connected()
        elif kind is ConnectionClosed:
            error = ev.error  # type: ignore[attr-defined]
            self._connection_closed(with_address(error, self.peer, self._protocol is None))

    def _connected(self) -> None:
        """Active open reached ESTABLISHED: make the protocol, wake create_connection."""
        assert self._protocol_factory is not None and self._waiter is not None
        waiter = self._waiter
        if waiter.done():
            # create_connection gave up (cancelled) just before the handshake completed.
            self.abort_unowned()
            return
        try:
            protocol = self._protocol_factory()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.abort_unowned()
            waiter.set_exception(exc)
            return
        self.set_protocol(protocol)
        waiter.set_result(None)
        self._connection_made()

    def _hand_over(self) -> None:
        """Passive open reached ESTABLISHED: the server's protocol takes it."""
        listener = self.listener
        assert listener is not None
        try:
            protocol = listener.hand_over(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": "Error on transport creation for incoming connection",
                    "exception": exc,
                    "transport": self,
                }
            )
            self.abort_unowned()
            return
        if protocol is None:  # the server closed meanwhile
            self.abort_unowned()
            return
        self.set_protocol(protocol)
        self._server = listener.server
        self._server.attach(self)
        self._connection_made()

    def _connection_made(self) -> None:
        protocol = self._protocol
        try:
            protocol.connection_made(self)  # type: ignore[union-attr]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # asyncio calls connection_made from a plain callback: an exception there is
            # reported and the connection carries on (both loops' TCP transports do so).
            self._loop.call_exception_handler(
                {
                    "message": f"Exception in callback {protocol!r}.connection_made()",
                    "exception": exc,
                    "transport": self,
                    "protocol": protocol,
                }
            )

    def _connection_closed(self, error: BaseException | None) -> None:
        """The connection is over for the application: report it exactly once."""
        if self._conn_lost:
            return
        self._conn_lost = True
        self._closing = True
        self._events.clear()
        if self.listener is not None:
            self.listener.discard_pending(self)
        if self._protocol is not None:
            self._loop.call_soon(self._call_connection_lost, error)
        elif self._waiter is not None and not self._waiter.done():
            if error is None:
                error = with_address(aborted("closed during the handshake"), self.peer, True)
            self._waiter.set_exception(error)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            if self._protocol is not None:
                self._protocol.connection_lost(exc)  # type: ignore[arg-type]
        finally:
            self._protocol = None
            server, self._server = self._server, None
            if server is not None:
                server.detach(self)

    def fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        """Report ``exc`` and reset the connection, as asyncio's transports do."""
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        self._closing = True
        self._connection_closed(exc)
        if self.conn.state is not State.CLOSED:
            self.conn.abort(self._loop.time())
        self._flush()

    def abort_unowned(self) -> None:
        """Reset a connection no protocol has seen: nobody is told."""
        self._conn_lost = True
        self._closing = True
        self._events.clear()
        if self.listener is not None:
            self.listener.discard_pending(self)
        if self.conn.state is not State.CLOSED:
            self.conn.abort(self._loop.time())
        self._flush()

    def endpoint_closing(self) -> None:
        """The endpoint closes under the connection: reset it."""
        if self._protocol is None:
            self.abort_unowned()
        else:
            self._force_close(None)

    # ------------------------------------------------------------------ flow control

    def _maybe_pause_protocol(self) -> None:
        if self._protocol_paused or self.get_write_buffer_size() <= self._high_water:
            return
        self._protocol_paused = True
        self._flow_control_callback("pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if (
            not self._protocol_paused
            or self._conn_lost
            or self.get_write_buffer_size() > self._low_water
        ):
            return
        self._protocol_paused = False
        self._flow_control_callback("resume_writing")

    def _flow_control_callback(self, name: str) -> None:
        """Call ``protocol.pause_writing`` / ``resume_writing``; report, don't raise, errors."""
        try:
            getattr(self._protocol, name)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": f"protocol.{name}() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )


# States after which the application has nothing left to close.
_CLOSED = State.CLOSED  # a module global is read ~10x faster than an Enum member
_FINISHED = frozenset({State.CLOSED, State.TIME_WAIT})


if TYPE_CHECKING:

    def _implements_the_interface(transport: Transport) -> HostedTransport:
        return transport  # mypy checks that Transport is a HostedTransport
