"""Where a datagram goes: its connection, a TIME-WAIT record, a listener, or a reply here.

Connections are keyed by (remote UDP address, local virtual port, remote virtual port), and
:class:`~udptcp.core.demux.Demux` (the simulator's routing rules too) decides where a segment
goes. A SYN that belongs to no connection goes to a listener (``passive.py``): the one on its
exact destination virtual port, else the wildcard one, else it is answered with RST as a
closed TCP port would be. Replies that no connection accounts for are held to three times
what the address sent (RFC 9000 §8.1's rule).

Datagrams that are not TCP segments share the socket (NAT traversal): a STUN message
(RFC 8489 §5: the top two bits zero, the magic cookie 0x2112A442 in bytes 4-7, a length
field that matches the datagram) is told apart *before* decoding and offered to the
handlers added with :meth:`Routing.add_datagram_handler`, and so is any datagram that fails
to decode as a segment (an application's own protocol); what no handler takes is counted
(``stun_unhandled``, or ``malformed:<reason>`` as before). :meth:`Routing.claim_address`
hands *every* datagram from one address (a TURN server, a rendezvous) to its owner
undecoded, :meth:`Routing.set_route` sends what goes to one address through a callable (a
TURN relay), and :meth:`Routing.send_datagram` sends an application's own datagram.

A part of :class:`~udptcp.aio.endpoint.Endpoint` (see :mod:`udptcp.aio.endpointbase`).
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from udptcp.core.amplification import AMPLIFICATION_FACTOR, received_size, sent_size
from udptcp.core.connection import rst_for
from udptcp.core.demux import Route
from udptcp.core.segment import ACK, FIN, RST, SYN, MalformedSegment, Segment, decode

from . import observe
from .deadlines import Deadlines
from .endpointbase import DatagramHandler, PunchHook, Sink, logger
from .interfaces import Address
from .transport import Transport

__all__ = ["STUN_MAGIC_COOKIE", "Routing", "is_stun"]

#: STUN's magic cookie (RFC 8489 §5), bytes 4-7 of every STUN message.
STUN_MAGIC_COOKIE = b"\x21\x12\xa4\x42"


def is_stun(data: bytes) -> bool:
    """True if ``data`` has the shape of a STUN message (RFC 8489 §5, RFC 7983 §7): the first
    two bits zero, the magic cookie in bytes 4-7, and a body length (a multiple of 4) that
    is exactly the rest of the datagram. A TCP segment matches only if its sequence number
    is the cookie *and* its destination port the length: a peer can forge that, so what a
    STUN handler takes is as hostile as any segment."""
    return (
        len(data) >= 20
        and data[0] < 0x40
        and data[4:8] == STUN_MAGIC_COOKIE
        and (data[2] << 8 | data[3]) == len(data) - 20
        and not data[3] & 3
    )


class Routing(Deadlines):
    """Routing datagrams and segments; the socket's other traffic (an Endpoint part)."""

    # ------------------------------------------------------------------ segments

    def _on_datagram(
        self,
        data: bytes,
        addr: Address,
        trains: dict[Transport, list[Segment]] | None = None,
        claimed: bool = True,
    ) -> None:
        """Decode one datagram and route its segment: into ``trains`` for a connection
        (delivered after the read burst), or at once (a SYN, a reset for a closed port).
        Non-TCP datagrams go to their handlers first (see the module docstring)."""
        if claimed and self._claimed:
            sink = self._claimed.get(addr)
            if sink is not None:
                self._deliver_claimed(sink, data, addr)
                return
        if data[4:8] == STUN_MAGIC_COOKIE and is_stun(data):
            # RFC 8489 §5 / RFC 7983: STUN is told apart before any TCP decoding.
            self.stats["stun_in"] += 1
            if not self._offer(data, addr):
                self.stats["stun_unhandled"] += 1
            return
        if self.secure is not None and self.secure.on_datagram(data, addr, trains):
            return  # a secure connection's: authenticated (or dropped) before decoding
        try:
            seg = decode(data)
        except MalformedSegment as exc:
            if self._handlers and self._offer(data, addr):
                self.stats["datagrams_handled"] += 1
                return
            self.stats["malformed"] += 1
            self.stats["malformed:" + exc.reason] += 1
            opening = self._opening.get(addr)
            if opening:
                # Perhaps the answer of a UDP service that is not udptcp to our SYN.
                now = self.loop.time()
                for transport in list(opening):
                    self._guarded(transport, transport.foreign_datagram, now)
            return
        if self.trace is not None:
            self._trace("in", addr, seg)
        if trains is not None and not seg.flags & SYN:
            # The common case, decided as _route (Demux.route) decides it: no SYN, and a
            # connection filed under the 4-tuple takes the segment into its train.
            owner = self._conns.lookup((addr, seg.dst_port, seg.src_port))
            if owner is not None:
                train = trains.get(owner)
                if train is None:
                    trains[owner] = [seg]
                else:
                    train.append(seg)
                return
        self._route(seg, addr, trains, len(data))

    def _on_gro_train(
        self, data: bytes, size: int, addr: Address, trains: dict[Transport, list[Segment]]
    ) -> None:
        """The datagrams of one GRO read (``size`` bytes each, the last perhaps shorter),
        each taken as :meth:`_on_datagram` takes it; its common case (a plain segment,
        without SYN, of a known connection) is done here, one call less per segment."""
        get = self._conns.lookup
        for offset in range(0, len(data), size):
            datagram = data[offset : offset + size]
            if (
                self._claimed
                or self.secure is not None
                or self.trace is not None
                or datagram[4:8] == STUN_MAGIC_COOKIE
            ):
                self._on_datagram(datagram, addr, trains)
                continue
            try:
                seg = decode(datagram)
            except MalformedSegment:
                self._on_datagram(datagram, addr, trains)  # counted and offered there
                continue
            owner = None if seg.flags & SYN else get((addr, seg.dst_port, seg.src_port))
            if owner is None:
                self._route(seg, addr, trains, len(datagram))
                continue
            train = trains.get(owner)
            if train is None:
                trains[owner] = [seg]
            else:
                train.append(seg)

    def _route(
        self,
        seg: Segment,
        addr: Address,
        trains: dict[Transport, list[Segment]] | None,
        size: int | None = None,
    ) -> None:
        """Hand ``seg`` to its connection, or answer it here. ``size`` is the datagram's
        (for the amplification limit; unknown for a segment routed again). Where it goes is
        :class:`~udptcp.core.demux.Demux`'s decision, as in the simulator."""
        conns = self._conns
        is_syn = seg.flags & (SYN | ACK | RST) == SYN
        if is_syn and trains and not seg.flags & FIN:
            # A SYN for a known 4-tuple: what came before it goes first (that train may
            # close the connection, or leave it in TIME-WAIT for the SYN to reopen).
            known = conns.get((addr, seg.dst_port, seg.src_port))
            if known is not None:
                pending = trains.pop(known, None)
                if pending:
                    self._deliver_train(known, pending)
        route, transport, key = conns.route(seg, addr)
        if transport is not None and route is Route.CONNECTION:
            if trains is None or is_syn:
                self._guarded(transport, transport.segment_received, seg)
            else:
                train = trains.get(transport)
                if train is None:
                    trains[transport] = [seg]
                else:
                    train.append(seg)
            return
        if route is Route.RECORD or route is Route.REOPEN_RECORD:
            if self._time_wait_segment(route, key, seg, addr, size):
                return
            route, transport, key = conns.route(seg, addr)  # the record had expired
        if route is Route.SYN_FIN:
            # No stack opens a connection with a FIN (T/TCP, which did, is historic);
            # scanners do. Dropped, as Linux drops it, and counted.
            self.stats["dropped_syn_fin"] += 1
            return
        if transport is not None and route is Route.REOPEN:
            # A new incarnation reopens the 4-tuple (RFC 9293 §3.10.7.4, RFC 6191), its ISN
            # beyond everything the old one sent.
            self.stats["time_wait_reopened"] += 1
            self.forget(transport, "reopened by a new SYN")
            self._on_syn(seg, addr, key, size, iss=transport.conn.reopen_iss())
            return
        # No connection (nor record) here: another endpoint's, a punching connection's,
        # or nobody's.
        if self.fallback is not None:
            other = self.fallback
            if other.is_closed:
                self.fallback = None
            elif other._conns.in_use(key):
                other._route(seg, addr, None, size)
                return
        if self._punching:
            hook = self._punching.get((seg.dst_port, seg.src_port))
            if hook is not None:
                # A punching connection's peer, from an address it is not bound to (yet).
                punched = conns.get(key) if hook(seg, addr) else None
                if punched is None:
                    self.stats["punch_dropped"] += 1
                    return
                if punched.secure_session is not None:
                    # A secure peer connection's handshake rules come first.
                    assert self.secure is not None
                    opened = self.secure.open_punched(punched, seg, addr)
                    if opened is None:
                        return
                    seg = opened
                self._route(seg, addr, trains, size)  # now bound to ``addr``: its own
                return
        if transport is not None and route is Route.OWN_SYN:
            # One of our own SYNs, echoed back with its ports as we sent them: that
            # connection learns it is talking to an echo service (with equal ports the
            # echo reaches it as its own 4-tuple's).
            self._guarded(transport, transport.segment_received, seg)
            return
        if route is Route.SYN:
            self._on_syn(seg, addr, key, size)
            return
        if seg.flags & (SYN | ACK | RST) == ACK and self._on_cookie_ack(seg, addr, key, size):
            return
        self._reply_rst(seg, addr, size)

    def _reply_rst(self, seg: Segment, addr: Address, size: int | None = None) -> None:
        rst = rst_for(seg)
        if rst is not None and self._send_stateless(addr, rst, seg, size):
            self.stats["rst_sent"] += 1

    def _send_stateless(
        self, addr: Address, reply: Segment, cause: Segment, size: int | None
    ) -> bool:
        """Send a reply that no connection accounts for, if it is at most three times the
        datagram that caused it (RFC 9000 §8.1's rule: the address is unproven)."""
        received = size if size is not None else received_size(cause)
        if sent_size(reply) > AMPLIFICATION_FACTOR * received:
            self.stats["amplification_limited"] += 1
            limit = AMPLIFICATION_FACTOR
            observe.limit_hit("amplification_limited", observe._addr(addr), limit)
            return False
        self.transmit(addr, [reply])
        return True

    # ------------------------------------------------------------------ non-TCP datagrams

    def add_datagram_handler(self, handler: DatagramHandler) -> Callable[[], None]:
        """Offer ``handler`` every datagram that is not a TCP segment: STUN messages (told
        apart before decoding) and datagrams that do not decode as a segment. Handlers are
        asked in the order they were added; the first that returns True takes the datagram.
        A handler that raises is logged and counts as not taking it. Returns a function
        that removes the handler."""
        self._handlers.append(handler)

        def remove() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return remove

    def claim_address(self, addr: Address, sink: Sink) -> Callable[[], None]:
        """Hand every datagram from ``addr`` to ``sink(data, addr)`` undecoded (a TURN
        server's ChannelData looks like anything). Returns a function that releases it."""
        addr = tuple(addr)
        self._claimed[addr] = sink

        def release() -> None:
            if self._claimed.get(addr) is sink:
                del self._claimed[addr]

        return release

    def set_route(self, addr: Address, sink: Sink | None) -> None:
        """Send every datagram addressed to ``addr`` (segments and :meth:`send_datagram`
        alike) through ``sink(data, addr)`` instead of the socket: a peer reached through a
        relay. ``None`` removes the route."""
        addr = tuple(addr)
        if sink is None:
            self._routes.pop(addr, None)
        else:
            self._routes[addr] = sink

    def route_of(self, addr: Address) -> Sink | None:
        """The route set for ``addr``, if any."""
        return self._routes.get(tuple(addr))

    def send_datagram(self, data: bytes, addr: Address) -> None:
        """Send one datagram of the application's own (or STUN) on the socket, queued
        behind segments already waiting, through the route to ``addr`` if one is set."""
        if self._closed:
            return
        route = self._routes.get(addr) if self._routes else None
        if route is not None:
            route(data, addr)
            return
        self._send(data, addr)

    def send_direct(self, data: bytes, addr: Address) -> None:
        """Send one datagram on the socket itself, ignoring routes (what a route sends)."""
        if not self._closed:
            self._send(data, addr)

    def deliver(self, data: bytes, addr: Address) -> None:
        """Take ``data`` as if the socket had received it from ``addr`` (an interposer's
        way in; see ``egress``)."""
        if not self._closed:
            self.stats["datagrams_in"] += 1
            self._on_datagram(data, addr, None)

    def inject(self, data: bytes, addr: Address) -> None:
        """Take ``data`` as if it had arrived from ``addr`` (what a relay unwrapped)."""
        if not self._closed:
            self.stats["datagrams_relayed_in"] += 1
            self._on_datagram(data, addr, None, claimed=False)

    def _offer(self, data: bytes, addr: Address) -> bool:
        for handler in list(self._handlers):
            try:
                if handler(data, addr):
                    return True
            except Exception:
                logger.exception("%r: datagram handler %r failed", self, handler)
        return False

    def _deliver_claimed(self, sink: Sink, data: bytes, addr: Address) -> None:
        self.stats["datagrams_claimed"] += 1
        try:
            sink(data, addr)
        except Exception:
            logger.exception("%r: handler for %r failed", self, addr)

    # ------------------------------------------------------------------ punching

    def add_punch(self, transport: Transport, hook: PunchHook) -> None:
        """Let ``transport`` (registered under a placeholder address) hear segments with its
        virtual ports from any address: ``hook(segment, address)`` decides, and relocates
        the transport (:meth:`relocate`) before returning True to have it delivered.
        Segments it refuses are dropped silently (``punch_dropped``), never answered with a
        reset, so a copy of the peer's SYN that came another way cannot refuse the
        connection. The hook lasts as long as the connection."""
        conn = transport.conn
        self._punching[(conn.local_port, conn.remote_port)] = hook

    def relocate(self, transport: Transport, addr: Address) -> None:
        """Bind ``transport`` to the remote address ``addr`` from now on."""
        addr = tuple(addr)
        old = transport.key
        self._conns.remove(old, transport)
        key = (addr, old[1], old[2])
        other = self._conns.get(key)
        if other is not None and other is not transport:
            raise OSError(errno.EADDRINUSE, f"virtual ports {old[1]} -> {old[2]} to {addr!r}")
        opening = self._opening.get(transport.peer)
        if opening is not None and transport in opening:
            self._opened(transport)  # still in SYN-SENT: listed under its new address
            self._opening.setdefault(addr, []).append(transport)
        transport.relocated(addr)
        if transport.secure_session is not None:
            transport.secure_session.peer = addr  # not a migration: the path is being chosen
        self._conns.add(key, transport)
