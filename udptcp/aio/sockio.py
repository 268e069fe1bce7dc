"""The endpoint's socket I/O: reading trains, sending (with GSO), offloads, ICMP errors.

Reading: the endpoint reads its non-blocking UDP socket itself (``loop.add_reader``,
draining up to :data:`READ_BATCH` datagrams per wake-up; a ``DatagramProtocol`` on the
default loop reads one datagram per loop pass, which is several times slower), decodes each
datagram and collects each connection's segments into a *train*, handed over after the read
burst (or every :data:`TRAIN_MAX` segments) so a connection answers a burst with one ACK.
With UDP GRO (Linux) one read returns a train of equal-sized datagrams from one sender.

Sending: runs of equal-sized datagrams to one peer go out as one UDP GSO send where the
socket has it; what the kernel will not take is queued, in order, and sent when the socket
is writable again: our own segments are never dropped for lack of socket buffer
(docs/architecture.md#back-pressure).

ICMP errors reach connections through the socket's error queue on Linux (see
:mod:`udptcp.aio.errqueue`), whether the socket is connected or not; elsewhere only a
connected socket hears of an unreachable port, and then for all its connections.

A part of :class:`~udptcp.aio.endpoint.Endpoint` (see :mod:`udptcp.aio.endpointbase`).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from collections.abc import Callable, Sequence

from udptcp.core.segment import Segment, encode

from .endpointbase import EndpointBase, logger
from .errqueue import (
    ICMP_ERRNOS,
    LOCAL,
    PATH_MTU,
    PORT_UNREACHABLE,
    IcmpError,
    quoted_segment,
    read_errors,
)
from .interfaces import Address
from .transport import Transport

if sys.platform.startswith("linux"):
    import fcntl
    import termios

    #: FIONREAD is SIOCINQ on Linux: for a UDP socket, the size of the next datagram.
    _FIONREAD: int | None = termios.FIONREAD
else:
    _FIONREAD = None

__all__ = ["GSO_MAX_BYTES", "GSO_MAX_SEGMENTS", "READ_BATCH", "SocketIO", "offload_allowed"]

#: Most datagrams read in one wake-up, so one busy endpoint cannot starve the loop.
READ_BATCH = 256
#: Most segments read before they are handed to their connections: a train ends there
#: (and its ACK goes out) even if the socket has more, about 90 KB at the default size.
TRAIN_MAX = 64
#: ... or once this many bytes are read: with path-MTU probing's 64 KB segments, 64 of them
#: would be a whole receive window read before the first ACK, leaving the sender idle
#: while we work through it; this acknowledges every second one.
TRAIN_MAX_BYTES = 128 * 1024
#: recvfrom() size: a whole UDP datagram, whatever the configured budget.
RECV_SIZE = 65535
_NOTHING = bytes(4)
#: Linux UDP segmentation offload (linux/udp.h; Python's socket module has no names for
#: them): UDP_SEGMENT on send splits one buffer into datagrams of the given size (GSO),
#: UDP_GRO on receive hands over a train of equal-sized datagrams from one sender as one
#: buffer, with the size in a control message.
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
#: Most datagrams and bytes in one GSO send (the kernel's UDP_MAX_SEGMENTS is 64 or more;
#: the whole buffer must fit one IP datagram's 16-bit length).
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000
_GSO_SIZE = struct.Struct("=H")  # UDP_SEGMENT's value: a u16
_GRO_SIZE = struct.Struct("=i")  # UDP_GRO's control message: an int
_GRO_CMSG_SPACE = socket.CMSG_SPACE(_GRO_SIZE.size)
#: Errors that say GSO cannot work on this socket's path at all (no checksum offload on
#: the device, an old kernel): stop trying it on this endpoint.
_GSO_UNSUPPORTED = {errno.EIO, errno.EOPNOTSUPP, errno.ENOPROTOOPT}


def offload_allowed() -> bool:
    """False when the environment says ``UDPTCP_OFFLOAD=0`` (or off/false/no)."""
    value = os.environ.get("UDPTCP_OFFLOAD", "1").strip().lower()
    return value not in ("0", "off", "false", "no")


class SocketIO(EndpointBase):
    """Reading and writing the endpoint's socket (an Endpoint part)."""

    # ------------------------------------------------------------------ socket options

    def set_dont_fragment(self) -> bool:
        """Send with the don't-fragment bit and ignore ICMP "fragmentation needed", so path
        MTU probes (``Config.pmtu_max``) find the path's real size (RFC 8899 §3 needs DF).

        Linux only (IP_MTU_DISCOVER / IPV6_MTU_DISCOVER = IP_PMTUDISC_PROBE); elsewhere it
        does nothing and returns False: probes then travel fragmented, which only means
        the search may settle on a size the path carries in fragments. A datagram too big
        for the local interface fails with EMSGSIZE, is dropped like any lost probe, and
        the search backs off.
        """
        if not sys.platform.startswith("linux"):
            return False
        level, option = (
            (socket.IPPROTO_IPV6, 23) if self.family == socket.AF_INET6 else (socket.IPPROTO_IP, 10)
        )
        try:
            self.sock.setsockopt(level, option, 3)  # *_PMTUDISC_PROBE
        except OSError:
            return False
        return True

    def _enable_offload(self) -> None:
        """Turn on UDP GRO and GSO where the kernel has them (Linux 4.18 / 5.0 and later)."""
        if not sys.platform.startswith("linux") or self.family not in (
            socket.AF_INET,
            socket.AF_INET6,
        ):
            return
        try:
            self.sock.setsockopt(SOL_UDP, UDP_GRO, 1)
            self.gro = True
        except OSError:
            pass
        try:
            self.sock.getsockopt(SOL_UDP, UDP_SEGMENT)
            self.gso = True
        except OSError:
            pass

    def _hand_back(self) -> None:
        """Leave a caller's socket as a caller expects to read it: one datagram per read."""
        if self.gro:
            try:
                self.sock.setsockopt(SOL_UDP, UDP_GRO, 0)
            except OSError:
                pass
            self.gro = False

    # ------------------------------------------------------------------ receiving

    def _on_readable(self) -> None:
        """Read until the socket is empty (at most READ_BATCH reads), then hand each
        connection the train of segments it got, in arrival order."""
        datagrams = self._read_queued()
        if datagrams == 0 and not self._closed and not self.deferring:
            self.stats["empty_wakeups"] += 1
            # Woken with nothing to read: poll reported POLLERR for an error queue that
            # holds something (a local error, or an ICMP error whose pending errno a
            # send took). Left there it would wake us again at once, forever.
            self._reading = True
            try:
                self._read_errors()
                self._watch_again_soon()
            finally:
                self._reading = False

    def _read_queued(self) -> int:
        """Read what the socket holds and deliver it; return how many datagrams came. Also
        called before due timers run (see ``Deadlines._on_timer``)."""
        trains: dict[Transport, list[Segment]] = {}
        self._reading = True
        self._writes_unread = 0
        self._last_read = self.loop.time()
        try:
            return self._read(trains)
        finally:
            try:
                if trains:
                    self._deliver_trains(trains)
            finally:
                self._reading = False

    def _deliver_trains(self, trains: dict[Transport, list[Segment]]) -> None:
        # _deliver_train inlined: this runs once per wake-up, for every train.
        lookup = self._conns.lookup
        for transport, segments in trains.items():
            if self._closed:
                break
            if lookup(transport.key) is transport:  # Demux.holds
                try:
                    taken = transport.segments_received(segments)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fault(transport, exc)
                    continue  # as _guarded's None: the train is spent
                if taken >= len(segments):
                    continue
                rest = segments[taken or len(segments) :]
            else:
                rest = segments
            for seg in rest:
                self._route(seg, transport.peer, None)
        trains.clear()

    def _read(self, trains: dict[Transport, list[Segment]]) -> int:
        """Read up to READ_BATCH times; return how many datagrams (or errors) came."""
        sock = self.sock
        gro = self.gro
        pending = 0  # segments read and not yet delivered
        pending_bytes = 0
        for reads in range(READ_BATCH):
            try:
                if gro:
                    data, ancdata, _flags, addr = sock.recvmsg(RECV_SIZE, _GRO_CMSG_SPACE)
                else:
                    data, addr = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return reads
            except OSError as exc:
                if self._closed:
                    return reads
                if exc.errno in ICMP_ERRNOS or isinstance(exc, ConnectionResetError):
                    # An ICMP error's pending errno (Windows reports port unreachable as
                    # a reset): the details are in the error queue.
                    self._on_pending_error()
                    self._watch_again_soon()
                    if self._closed:
                        return reads
                    continue
                self.stats["recv_errors"] += 1
                logger.debug("%r: recvfrom failed: %s", self, exc)
                return reads
            size = 0
            if gro and ancdata:
                for level, kind, value in ancdata:
                    if level == SOL_UDP and kind == UDP_GRO and len(value) >= _GRO_SIZE.size:
                        size = _GRO_SIZE.unpack_from(value)[0]
            if 0 < size < len(data):
                # A GRO train: datagrams of ``size`` bytes from one sender, the last one
                # possibly shorter; each is one segment, as if read one by one.
                count = -(-len(data) // size)
                self.stats["gro_trains"] += 1
                self.stats["datagrams_in"] += count
                self._on_gro_train(data, size, addr, trains)
                pending += count
                pending_bytes += len(data)
            else:
                self.stats["datagrams_in"] += 1
                self._on_datagram(data, addr, trains)
                pending += 1
                pending_bytes += len(data)
            if self._closed:
                return reads + 1
            if pending >= TRAIN_MAX or pending_bytes >= TRAIN_MAX_BYTES:
                # Deliver (and so acknowledge) before reading on: a sender must hear
                # from us well within its loss-probe timeout, however long the burst.
                self._deliver_trains(trains)
                pending = pending_bytes = 0
            if reads == 0 and _FIONREAD is not None:
                # After a wake-up's first datagram (the usual one in a request/response
                # exchange): is another queued? Asked with an ioctl because the read that
                # finds nothing fails with EAGAIN, and raising that costs about twice as
                # much. A zero-length datagram or a pending error reads as "nothing": the
                # socket stays readable, so the loop wakes us again for it at once.
                queued = bytearray(4)
                try:
                    fcntl.ioctl(self._fd, _FIONREAD, queued)  # type: ignore[arg-type]
                except OSError:
                    continue  # read and see
                if queued == _NOTHING:
                    return 1
        return READ_BATCH

    def _deliver_train(self, transport: Transport, segments: list[Segment]) -> None:
        rest = segments
        if self._conns.holds(transport.key, transport):
            taken = self._guarded(transport, transport.segments_received, segments)
            rest = segments[taken or len(segments) :]
        # What came after the connection closed goes where it would have gone alone
        # (a reset from the closed port, or a new connection for a SYN).
        for seg in rest:
            self._route(seg, transport.peer, None)

    # ------------------------------------------------------------------ sending

    def transmit(
        self,
        addr: Address,
        segments: Sequence[Segment],
        seal: Callable[[Segment], bytes] | None = None,
    ) -> None:
        """Encode and send ``segments`` to ``addr``, queueing what the kernel will not take.

        ``seal`` replaces :func:`encode` for a secure connection. Runs of equal-sized
        datagrams go out as one GSO send where the socket has it. Our own segments are
        never dropped for lack of socket buffer
        (docs/architecture.md#back-pressure).
        """
        if self._closed:
            return
        trace = self.trace
        if trace is not None:
            for seg in segments:
                self._trace("out", addr, seg)
        to_bytes = encode if seal is None else seal
        if self._routes:
            route = self._routes.get(addr)
            if route is not None:
                self.stats["datagrams_routed"] += len(segments)
                for seg in segments:
                    route(to_bytes(seg), addr)
                return
        if not self.gso or len(segments) == 1:
            for seg in segments:
                self._send(to_bytes(seg), addr)
            return
        datagrams = [to_bytes(seg) for seg in segments]
        i, n = 0, len(datagrams)
        while i < n:
            # A GSO run: datagrams of one size, the last of them possibly shorter.
            size = len(datagrams[i])
            j = i + 1
            limit = min(n, i + GSO_MAX_SEGMENTS, i + GSO_MAX_BYTES // size)
            while j < limit and len(datagrams[j]) == size:
                j += 1
            if j < limit and len(datagrams[j]) < size:
                j += 1  # a shorter one may end the run
            if j - i == 1:
                self._send(datagrams[i], addr)
            else:
                self._send(b"".join(datagrams[i:j]), addr, size, j - i)
            i = j

    def _send(self, data: bytes, addr: Address, gso: int = 0, count: int = 1) -> None:
        """Send one datagram, or with ``gso`` a run of ``count`` datagrams of that size."""
        self.stats["datagrams_out"] += count
        if self.egress is not None:
            for offset in range(0, len(data), gso or len(data) or 1):
                self.egress(data[offset : offset + gso] if gso else data, addr)
            return
        if self._sendq:
            self._sendq.append((data, addr, gso))
            return
        try:
            if gso or addr == self.connected_peer:
                self._send_now(data, addr, gso)
            else:
                # _send_now's common case, inlined (one call less per datagram).
                try:
                    self.sock.sendto(data, addr)
                except OSError as exc:
                    if exc.errno not in ICMP_ERRNOS:
                        raise
                    self._pending_error_soon()  # as _send_now: the error was an earlier one's
                    self._send_now(data, addr, gso, False)
        except (BlockingIOError, InterruptedError):
            self._sendq.append((data, addr, gso))
            self.stats["send_queued"] += 1
            self.loop.add_writer(self._fd, self._on_writable)
        except OSError as exc:
            self._send_failed(data, addr, gso, exc)

    def _send_now(self, data: bytes, addr: Address, gso: int, again: bool = True) -> None:
        connected = addr == self.connected_peer
        try:
            if not gso:
                if connected:
                    self.sock.send(data)
                else:
                    self.sock.sendto(data, addr)
                return
            self.stats["gso_sends"] += 1
            control = [(SOL_UDP, UDP_SEGMENT, _GSO_SIZE.pack(gso))]
            if connected:
                self.sock.sendmsg([data], control)
            else:
                self.sock.sendmsg([data], control, 0, addr)
        except OSError as exc:
            if not again or exc.errno not in ICMP_ERRNOS:
                raise
            # The pending error of an ICMP message about an earlier datagram (to this peer
            # or any other) failed this send, which sent nothing. The failed call took the
            # error, so send again; what the error was about is read outside the segment
            # processing that is running now.
            self._pending_error_soon()
            self._send_now(data, addr, gso, False)

    def _send_failed(self, data: bytes, addr: Address, gso: int, exc: OSError) -> None:
        if not gso:
            self.stats["send_errors"] += 1
            logger.debug("%r: sendto %r failed: %s", self, addr, exc)
            return
        # The run as a whole was refused: send its datagrams one by one, so each gets
        # the fate (and the error) it would have had without GSO.
        pieces = self._gso_refused(data, gso, exc)
        self.stats["datagrams_out"] -= len(pieces)
        for piece in pieces:
            self._send(piece, addr)

    def _gso_refused(self, data: bytes, gso: int, exc: OSError) -> list[bytes]:
        self.stats["gso_errors"] += 1
        if exc.errno in _GSO_UNSUPPORTED:
            self.gso = False
            logger.debug("%r: UDP GSO turned off: %s", self, exc)
        return [data[offset : offset + gso] for offset in range(0, len(data), gso)]

    def _on_writable(self) -> None:
        self._flush_queue()
        if not self._sendq and not self._closed:
            self.loop.remove_writer(self._fd)

    def _flush_queue(self) -> None:
        queue = self._sendq
        while queue:
            data, addr, gso = queue[0]
            try:
                self._send_now(data, addr, gso)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                queue.popleft()
                if gso:
                    # Put the run back as single datagrams, in place.
                    pieces = self._gso_refused(data, gso, exc)
                    queue.extendleft((piece, addr, 0) for piece in reversed(pieces))
                else:
                    self._send_failed(data, addr, gso, exc)
                continue
            queue.popleft()

    # ------------------------------------------------------------------ ICMP errors

    def _on_pending_error(self) -> None:
        """A recv or send failed with an ICMP error's errno: find out what it was about."""
        if self.recverr:
            self._read_errors()
        elif self.connected_peer is not None:
            # No error queue: the kernel says only that the connected peer's port is
            # unreachable, not about which datagram.
            self.stats["icmp_unreachable"] += 1
            peer = self.connected_peer
            now = self.loop.time()
            for transport in list(self._conns.values()):
                if transport.peer == peer:
                    self._guarded(transport, transport.icmp_unreachable, now, None)
        else:
            self.stats["icmp_unmatched"] += 1

    def _pending_error_soon(self) -> None:
        """As :meth:`_on_pending_error`, from a fresh loop callback: a send fails inside
        some connection's processing, which must not be re-entered."""
        if self._errors_handle is None and not self._closed:
            self._errors_handle = self.loop.call_soon(self._on_pending_error_soon)

    def _on_pending_error_soon(self) -> None:
        self._errors_handle = None
        if not self._closed:
            self._on_pending_error()
            self._watch_again_soon()

    def _read_errors(self) -> None:
        """Drain the socket's error queue; hand each ICMP error to its connection."""
        if not self.recverr or self._closed:
            return
        errors = read_errors(self.sock, READ_BATCH)
        if errors:
            self._watch_again_soon()
        for error in errors:
            self._on_icmp_error(error)
            if self._closed:
                return

    def _on_icmp_error(self, error: IcmpError) -> None:
        kind = error.kind
        if kind == LOCAL:
            self.stats["errqueue_local"] += 1  # e.g. EMSGSIZE: the send said so already
            return
        if kind == PATH_MTU:
            self.stats["icmp_path_mtu"] += 1  # probing finds the size (RFC 8899)
            return
        quoted = quoted_segment(error.quote)
        transport = None
        if quoted is not None:
            # Our own segment, quoted: its source port is ours, its destination the peer's.
            src, dst, seq = quoted
            transport = self._conns.get((error.address, src, dst))
        if transport is None:
            self.stats["icmp_unmatched"] += 1
            return
        now = self.loop.time()
        if kind == PORT_UNREACHABLE:
            self.stats["icmp_unreachable"] += 1
            self._guarded(transport, transport.icmp_unreachable, now, seq)
        else:
            self.stats["icmp_soft"] += 1
            self._guarded(transport, transport.icmp_soft_error, now, kind, seq)

    def _watch_again_soon(self) -> None:
        """After POLLERR, re-register the socket with loops that drop it then (uvloop)."""
        if self._rewatch and self._rewatch_handle is None and not self._closed:
            self._rewatch_handle = self.loop.call_soon(self._watch_again)

    def _watch_again(self) -> None:
        self._rewatch_handle = None
        if self._closed:
            return
        loop, fd = self.loop, self._fd
        loop.remove_reader(fd)
        loop.add_reader(fd, self._on_readable)
        if self._sendq:
            loop.remove_writer(fd)
            loop.add_writer(fd, self._on_writable)
