"""ICMP errors for an unconnected UDP socket, read from Linux's socket error queue.

The kernel reports an ICMP error (port unreachable, host unreachable, ...) about a UDP
datagram to the sending socket only if the socket is connected, and then without saying
which datagram it was about. With ``IP_RECVERR`` / ``IPV6_RECVERR`` (Linux, ``ip(7)``,
``ipv6(7)``) every socket gets each error queued, with:

* the original destination address in ``msg_name`` (which peer the error is about);
* the start of the datagram the ICMP message quotes as data: here the TCP header of our
  own segment, whose ports say which connection sent it and whose sequence number lets
  that connection check the error is about something it sent (RFC 5927 §4.1);
* a control message holding ``struct sock_extended_err`` (``linux/errqueue.h``): the
  errno, where it came from (ICMP, ICMPv6, or the local stack), the ICMP type and code,
  and after it the address of the node that sent the ICMP message (``SO_EE_OFFENDER``).

The error also sets the socket's pending error, which the next ``recvfrom`` or ``send``
raises once (``ConnectionRefusedError`` for port unreachable) — that ``send`` is not
sent — and while the queue holds anything ``poll`` reports ``POLLERR``, so the queue must
be drained or the reader is woken again and again. Elsewhere (other systems, or a kernel
that refuses the option) :func:`enable_recverr` returns False and only connected sockets
hear about unreachable ports.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
from typing import Any, NamedTuple

__all__ = [
    "ICMP_ERRNOS",
    "IcmpError",
    "enable_recverr",
    "quoted_segment",
    "read_errors",
]

# linux/in.h, linux/in6.h, linux/errqueue.h: Python's socket module has none of these.
_SOL_IP = 0
_SOL_IPV6 = 41
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_ORIGIN_LOCAL = 1
_ORIGIN_ICMP = 2
_ORIGIN_ICMP6 = 3
# struct sock_extended_err: ee_errno, ee_origin, ee_type, ee_code, ee_pad, ee_info, ee_data.
_EXTENDED_ERR = struct.Struct("=IBBBBII")
# The quoted datagram: source port, destination port, sequence number of our segment.
_QUOTE = struct.Struct("!HHI")
#: Bytes of the quoted datagram read: enough for the ports and the sequence number.
QUOTE_READ = 64
_CMSG_SPACE = socket.CMSG_SPACE(_EXTENDED_ERR.size + 28)  # + a sockaddr_in6 offender

# ICMP (RFC 792) and ICMPv6 (RFC 4443) types and codes that matter here.
_ICMP_DEST_UNREACH = 3
_ICMP_PROT_UNREACH = 2
_ICMP_PORT_UNREACH = 3
_ICMP_FRAG_NEEDED = 4
_ICMP6_DST_UNREACH = 1
_ICMP6_PORT_UNREACH = 4
_ICMP6_PACKET_TOO_BIG = 2

#: Errnos with which a pending ICMP error fails a ``recvfrom`` or ``send`` (Linux maps
#: the ICMP types onto these, ``icmp_err_convert``; EMSGSIZE is "fragmentation needed"
#: on a socket that sets the don't-fragment bit; protocol unreachable's ENOPROTOOPT is
#: left out, as it is also how a kernel refuses UDP GSO); a ``send`` that fails so was
#: not sent.
ICMP_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.EMSGSIZE,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.EPROTO,
        errno.EACCES,
    }
)

PORT_UNREACHABLE = "port unreachable"
LOCAL = "local"
PATH_MTU = "path mtu"


class IcmpError(NamedTuple):
    """One entry of the error queue."""

    #: ``PORT_UNREACHABLE``, ``LOCAL`` (the local stack, e.g. a datagram too big to
    #: send), ``PATH_MTU`` (fragmentation needed / packet too big), or a description of
    #: a soft error ("host unreachable", "time exceeded", ...).
    kind: str
    #: The original destination of the datagram the error is about.
    address: Any
    #: The start of that datagram's UDP payload, as the ICMP message quoted it.
    quote: bytes
    errno: int
    origin: int
    icmp_type: int
    icmp_code: int


def enable_recverr(sock: socket.socket) -> bool:
    """Ask the kernel to queue ICMP errors on ``sock``; False where it cannot (not Linux,
    not an IP socket). An IPv6 socket also gets the IPv4 option, for the IPv4-mapped
    peers a dual-stack socket has."""
    if not sys.platform.startswith("linux"):
        return False
    enabled = False
    options = [(_SOL_IP, _IP_RECVERR)]
    if sock.family == socket.AF_INET6:
        options.insert(0, (_SOL_IPV6, _IPV6_RECVERR))
    elif sock.family != socket.AF_INET:
        return False
    for level, option in options:
        try:
            sock.setsockopt(level, option, 1)
            enabled = True
        except OSError:
            pass
    return enabled


def read_errors(sock: socket.socket, limit: int) -> list[IcmpError]:
    """Take up to ``limit`` entries off ``sock``'s error queue (fewer if it empties)."""
    errors: list[IcmpError] = []
    for _ in range(limit):
        try:
            data, ancdata, _flags, address = sock.recvmsg(
                QUOTE_READ, _CMSG_SPACE, socket.MSG_ERRQUEUE
            )
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break  # closed, or no error queue on this system
        for level, kind, value in ancdata:
            if (level, kind) in ((_SOL_IP, _IP_RECVERR), (_SOL_IPV6, _IPV6_RECVERR)):
                if len(value) >= _EXTENDED_ERR.size:
                    errors.append(_parse(value, address, data))
                break
    return errors


def quoted_segment(quote: bytes) -> tuple[int, int, int] | None:
    """(source port, destination port, sequence number) of the segment an ICMP message
    quotes, or None if it quotes less than that (RFC 792 only promises 8 bytes after the
    IP header, which for UDP is the UDP header alone; hosts quote much more)."""
    if len(quote) < _QUOTE.size:
        return None
    src, dst, seq = _QUOTE.unpack_from(quote)
    return src, dst, seq


def _parse(value: bytes, address: Any, quote: bytes) -> IcmpError:
    code_errno, origin, icmp_type, icmp_code, _pad, _info, _data = _EXTENDED_ERR.unpack_from(value)
    return IcmpError(
        _kind(origin, icmp_type, icmp_code),
        address,
        quote,
        code_errno,
        origin,
        icmp_type,
        icmp_code,
    )


def _kind(origin: int, icmp_type: int, icmp_code: int) -> str:
    if origin == _ORIGIN_ICMP:
        if icmp_type == _ICMP_DEST_UNREACH:
            if icmp_code in (_ICMP_PORT_UNREACH, _ICMP_PROT_UNREACH):
                return PORT_UNREACHABLE
            if icmp_code == _ICMP_FRAG_NEEDED:
                return PATH_MTU
            return _ICMP_UNREACH_CODES.get(icmp_code, "destination unreachable")
        return _ICMP_TYPES.get(icmp_type, f"ICMP type {icmp_type}")
    if origin == _ORIGIN_ICMP6:
        if icmp_type == _ICMP6_DST_UNREACH:
            if icmp_code == _ICMP6_PORT_UNREACH:
                return PORT_UNREACHABLE
            return _ICMP6_UNREACH_CODES.get(icmp_code, "destination unreachable")
        if icmp_type == _ICMP6_PACKET_TOO_BIG:
            return PATH_MTU
        return _ICMP6_TYPES.get(icmp_type, f"ICMPv6 type {icmp_type}")
    return LOCAL


_ICMP_UNREACH_CODES = {
    0: "network unreachable",
    1: "host unreachable",
    9: "network administratively prohibited",
    10: "host administratively prohibited",
    13: "communication administratively prohibited",
}
_ICMP_TYPES = {11: "time exceeded", 12: "parameter problem"}
_ICMP6_UNREACH_CODES = {
    0: "no route to destination",
    1: "communication administratively prohibited",
    3: "address unreachable",
    5: "source address failed policy",
    6: "reject route to destination",
}
_ICMP6_TYPES = {3: "time exceeded", 4: "parameter problem"}
