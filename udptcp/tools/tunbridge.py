"""Bridge the kernel's own TCP onto udptcp's UDP carriage through a TUN device.

udptcp segments are byte-exact RFC 9293 TCP segments
(docs/architecture.md#wire-format); only their checksum differs:
it covers the segment alone, with no IP pseudo-header. So a real TCP stack can talk to a udptcp
endpoint if something moves segments between IP packets and UDP datagrams and converts the
checksum. :class:`TunBridge` does that with a TUN device::

    kernel TCP socket                                  udptcp endpoint (127.0.0.1:port)
          |  10.200.0.1  <-- TUN device -->  10.200.0.2 (the bridge)  <-- UDP -->  |

* The device gets ``local`` (e.g. ``10.200.0.1/30``); ``peer`` (``10.200.0.2``) is the fake
  host that stands for udptcp: the kernel routes it through the device, so a kernel
  ``connect(("10.200.0.2", 80))`` produces IPv4 packets the bridge reads from the TUN fd.
* Kernel -> udptcp: for each TCP packet to ``peer`` the IPv4 header is stripped, the TCP
  checksum (pseudo-header included) is verified, the checksum is recomputed over the segment
  alone, and the segment goes out as one UDP datagram to the udptcp endpoint.
* udptcp -> kernel: each datagram on the bridge's UDP socket is a udptcp segment; its checksum
  is verified, replaced by the real TCP checksum over the IPv4 pseudo-header, and the segment
  is wrapped in an IPv4 header (``peer`` -> ``local``, TTL 64, DF) and written to the TUN fd.

TCP ports are the virtual ports, so nothing else changes. A udptcp *server* behind the bridge
is given as ``target``; a udptcp *client* simply sends to the bridge's UDP address (with
``vport=`` the kernel port) and the bridge remembers which UDP address speaks for which pair
of ports, so answers go back to it.

**Network namespace.** With ``netns=NAME`` (a namespace made by ``ip netns add NAME``) the
whole kernel side lives in that namespace: the device is created there, its addresses, route,
MTU and sysctls are set there, and :meth:`TunBridge.kernel_socket` makes the kernel's TCP
sockets there. Only the bridge's UDP socket stays in the caller's namespace, so the caller's
namespace sees nothing but UDP on ``udp_addr`` (loopback by default): no device, no address,
no route, no sysctl changes. A TUN device belongs to the namespace of the thread that
creates it, and a socket to the namespace it was made in; both keep it when their fd is used
from another thread. So the bridge creates them in a short-lived helper thread that first
joins the namespace (``setns(2)``, :func:`call_in_netns`) and hands the fd back. Without
``netns`` the device lives in the caller's namespace, as a manual lab on a spare host may want.

Requirements: Linux, root (or CAP_NET_ADMIN), ``/dev/net/tun`` and ``ip`` (iproute2). The
device is not persistent: it disappears when the bridge closes its fd, even if the process
dies; :meth:`TunBridge.close` also deletes it explicitly. The device's own ``rp_filter`` is set
to 0 (the setting dies with the device); ``net.ipv4.conf.all.rp_filter`` is left alone, since
the reverse path of ``peer`` is the device itself and even strict mode accepts it. Traffic
never leaves the machine: only addresses routed to the device are involved.

The bridge uses only the wire codec (:mod:`udptcp.core.segment`), never the asyncio adapter.
For a manual lab: ``python -m udptcp.tools.tunbridge --target 127.0.0.1:9000`` (add
``--netns NAME`` to keep the device out of the host's namespace).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import ipaddress
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from udptcp.core.segment import HEADER_LEN, checksum, decode

__all__ = [
    "KERNEL_TO_UDPTCP",
    "NETNS_DIR",
    "UDPTCP_TO_KERNEL",
    "DropFilter",
    "TunBridge",
    "call_in_netns",
    "format_record",
    "main",
    "open_tun",
    "tcp_checksum",
    "udptcp_checksum",
]

logger = logging.getLogger(__name__)

#: Record direction of a segment the kernel sent towards udptcp.
KERNEL_TO_UDPTCP = "k2u"
#: Record direction of a segment udptcp sent towards the kernel.
UDPTCP_TO_KERNEL = "u2k"

Address = tuple[Any, ...]
DropFilter = Callable[[str, bytes], bool]
"""``drop(direction, segment)``: True to lose the segment on purpose (a test's loss model)."""

#: Where ``ip netns add NAME`` keeps the handle (a bind-mounted nsfs file) of namespace NAME.
NETNS_DIR = "/var/run/netns"
_CLONE_NEWNET = 0x40000000  # <sched.h>

_T = TypeVar("_T")

# <linux/if_tun.h>
_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_IFNAMSIZ = 16

_IPPROTO_TCP = 6
_IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")  # version/IHL .. destination, no options
_PSEUDO_HEADER = struct.Struct("!4s4sBBH")  # source, destination, zero, protocol, TCP length
_IP_FLAG_MF = 0x2000
_IP_FLAG_DF = 0x4000
_IP_OFFSET_MASK = 0x1FFF
_TTL = 64

_READ_BATCH = 256
_MAX_PACKET = 65535
_SOCKET_BUFFER = 4 * 1024 * 1024


def udptcp_checksum(segment: bytes | bytearray | memoryview) -> bytes:
    """Return ``segment`` with its checksum set the udptcp way: RFC 1071 over the
    segment alone, computed with the checksum field zeroed."""
    seg = bytearray(segment)
    seg[16:18] = b"\x00\x00"
    seg[16:18] = checksum(seg).to_bytes(2, "big")
    return bytes(seg)


def tcp_checksum(segment: bytes | bytearray | memoryview, src: bytes, dst: bytes) -> bytes:
    """Return ``segment`` with its real TCP checksum: RFC 1071 over the IPv4 pseudo-header
    (RFC 9293 §3.1) and the segment, computed with the checksum field zeroed."""
    seg = bytearray(segment)
    seg[16:18] = b"\x00\x00"
    pseudo = _PSEUDO_HEADER.pack(src, dst, 0, _IPPROTO_TCP, len(seg))
    seg[16:18] = checksum(pseudo + seg).to_bytes(2, "big")
    return bytes(seg)


def _tcp_checksum_ok(segment: bytes, src: bytes, dst: bytes) -> bool:
    pseudo = _PSEUDO_HEADER.pack(src, dst, 0, _IPPROTO_TCP, len(segment))
    return checksum(pseudo + segment) == 0


def format_record(record: Sequence[tuple[str, bytes]]) -> str:
    """A readable trace of a bridge record, one decoded segment per line (for test failures
    and reports)."""
    lines = []
    for direction, data in record:
        arrow = "kernel -> udptcp" if direction == KERNEL_TO_UDPTCP else "udptcp -> kernel"
        try:
            lines.append(f"{arrow}: {decode(data)!r}")
        except ValueError as exc:
            lines.append(f"{arrow}: undecodable {len(data)} bytes ({exc})")
    return "\n".join(lines)


def _run_ip(netns: str | None, *args: str) -> str:
    namespace = ["-n", netns] if netns is not None else []
    return subprocess.run(
        ["ip", *namespace, *args], check=True, capture_output=True, text=True
    ).stdout


def _write_sysctl(path: str, value: str) -> None:
    with contextlib.suppress(OSError), open(path, "w") as f:
        f.write(value)


_libc: ctypes.CDLL | None = None


def _join_netns(netns: str) -> None:
    """Move the calling thread (only it: ``setns(2)``) into network namespace ``netns``."""
    global _libc
    if not netns or "/" in netns or netns in (".", ".."):
        raise ValueError(f"not a network namespace name: {netns!r}")
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    path = os.path.join(NETNS_DIR, netns)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def call_in_netns(netns: str | None, fn: Callable[[], _T]) -> _T:
    """Return ``fn()``, called inside network namespace ``netns`` (a name ``ip netns add``
    made), or right here if ``netns`` is None.

    ``setns(2)`` moves only the calling thread, so ``fn`` runs in a new thread that joins the
    namespace and ends with ``fn``: no thread of the caller ever changes namespace. What
    ``fn`` creates keeps that namespace wherever it is used later: a socket, a TUN device
    (which belongs to the namespace of the thread that performed ``TUNSETIFF``). Inside
    ``fn``, ``/proc/sys/net`` and ``/proc/thread-self/net`` show the namespace too. Exceptions
    from ``fn`` or ``setns`` are re-raised here. The caller blocks for the thread's short
    life.
    """
    if netns is None:
        return fn()
    result: list[_T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            _join_netns(netns)
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=run, name=f"netns {netns}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def open_tun(ifname: str) -> tuple[int, str]:
    """Create a non-persistent TUN device (IPv4 packets without a packet-information header,
    no offloads: the kernel hands it one checksummed, MTU-sized packet per read) in the
    calling thread's network namespace; return its non-blocking fd and its name.

    ``ifname`` may hold ``%d`` for the kernel to number it. The device's IPv6 is disabled (no
    router solicitations or MLD reports to filter out) and its ``rp_filter`` set to 0; both
    settings die with the device, which dies with its last fd.
    """
    name = ifname.encode()
    if len(name) >= _IFNAMSIZ:
        raise ValueError(f"interface name {ifname!r} is too long")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        ifr = struct.pack(f"{_IFNAMSIZ}sH22x", name, _IFF_TUN | _IFF_NO_PI)
        made = fcntl.ioctl(fd, _TUNSETIFF, ifr)[:_IFNAMSIZ].rstrip(b"\x00").decode()
        _write_sysctl(f"/proc/sys/net/ipv6/conf/{made}/disable_ipv6", "1")
        _write_sysctl(f"/proc/sys/net/ipv4/conf/{made}/rp_filter", "0")
    except BaseException:
        os.close(fd)
        raise
    return fd, made


class TunBridge:
    """A TUN device whose far end is a udptcp peer reached over UDP (see the module docs).

    ``local`` is the device address with its prefix (``"10.200.0.1/30"``); ``peer`` the fake
    address that stands for udptcp (routed through the device as a /32). ``target`` is the
    udptcp endpoint that receives segments for port pairs the bridge has not yet heard from
    (a udptcp server); ``None`` means answer only learned addresses (a udptcp client). The
    bridge's own UDP socket binds ``udp_addr``. ``record``, if given, receives
    ``(direction, segment bytes)`` for every segment forwarded, in udptcp form (segment-only
    checksum), with direction :data:`KERNEL_TO_UDPTCP` or :data:`UDPTCP_TO_KERNEL`.
    ``drop``, if given, is asked about every segment about to be forwarded, with the same
    arguments a record entry has; a True answer loses it (counted in ``stats["drop_filter"]``,
    not recorded). ``stats`` counts forwarded and dropped packets by reason.

    ``netns``, if given, names an existing network namespace (``ip netns add NAME``) that
    holds the kernel side: the device with its addresses, route and sysctls, and the sockets
    :meth:`kernel_socket` makes. The UDP socket stays in the caller's namespace. The bridge
    never creates or deletes the namespace itself.
    """

    def __init__(
        self,
        *,
        local: str = "10.200.0.1/30",
        peer: str = "10.200.0.2",
        target: Address | None = None,
        udp_addr: Address = ("127.0.0.1", 0),
        ifname: str = "utb%d",
        mtu: int = 1500,
        record: list[tuple[str, bytes]] | None = None,
        drop: DropFilter | None = None,
        netns: str | None = None,
    ) -> None:
        iface = ipaddress.IPv4Interface(local)
        self.local_interface = iface
        self.local_ip = str(iface.ip)
        self.peer_ip = str(ipaddress.IPv4Address(peer))
        self._local_raw = iface.ip.packed
        self._peer_raw = ipaddress.IPv4Address(peer).packed
        self.target = target
        self._udp_bind = udp_addr
        self._ifname_request = ifname
        self.ifname: str | None = None
        self.mtu = mtu
        self.record = record
        self.drop = drop
        self.netns = netns
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "to_udptcp",
                "to_kernel",
                "drop_not_tcp",
                "drop_fragment",
                "drop_bad_ip",
                "drop_kernel_checksum",
                "drop_udptcp_checksum",
                "drop_short",
                "drop_no_route",
                "drop_filter",
                "send_errors",
            ),
            0,
        )
        # (kernel port, udptcp port) -> UDP address of the udptcp endpoint using them.
        self._routes: dict[tuple[int, int], Address] = {}
        self._tun_fd: int | None = None
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ip_id = 0

    @property
    def udp_address(self) -> Address:
        """The bridge's UDP address: where a udptcp client sends to reach the kernel."""
        if self._sock is None:
            raise RuntimeError("bridge not started")
        return self._sock.getsockname()  # type: ignore[no-any-return]

    def kernel_socket(
        self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0
    ) -> socket.socket:
        """A new non-blocking socket on the kernel's side of the bridge: made in ``netns``
        (if given), where ``local`` and the route to ``peer`` live.

        Use it from asyncio as any socket: ``await loop.sock_connect(sock, (peer_ip, port))``
        then ``asyncio.open_connection(sock=sock)``, or bind it to ``local_ip`` and pass it to
        ``asyncio.start_server(..., sock=sock)``. Works before :meth:`start` too.
        """
        sock = call_in_netns(self.netns, lambda: socket.socket(family, type, proto))
        sock.setblocking(False)
        return sock

    def ip(self, *args: str) -> str:
        """Run ``ip ARGS`` (iproute2) on the kernel's side, i.e. in ``netns`` if given (``ip -n
        NETNS ARGS``); return its output. Raises ``subprocess.CalledProcessError``."""
        return _run_ip(self.netns, *args)

    async def start(self) -> None:
        """Create and configure the device, open the UDP socket, start forwarding.

        Raises ``OSError`` (e.g. ``EPERM`` without CAP_NET_ADMIN) or
        ``subprocess.CalledProcessError`` from ``ip``; nothing is left behind on failure.
        """
        if self._tun_fd is not None:
            raise RuntimeError("bridge already started")
        self._loop = asyncio.get_running_loop()
        try:
            # The device belongs to the namespace of the thread that creates it.
            self._tun_fd, self.ifname = call_in_netns(self.netns, self._create_device)
            self._configure_device()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock = sock
            sock.setblocking(False)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
            sock.bind(self._udp_bind)
            assert self._tun_fd is not None
            self._loop.add_reader(self._tun_fd, self._on_tun_readable)
            self._loop.add_reader(sock.fileno(), self._on_udp_readable)
        except BaseException:
            await self.close()
            raise
        logger.debug(
            "tunbridge %s (netns %s): %s <-> %s via UDP %s",
            self.ifname,
            self.netns,
            self.local_interface,
            self.peer_ip,
            self._sock.getsockname(),
        )

    async def close(self) -> None:
        """Stop forwarding, close the socket and delete the device. Safe to call twice."""
        loop = self._loop
        if self._sock is not None:
            if loop is not None:
                with contextlib.suppress(Exception):
                    loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        fd = self._tun_fd
        if fd is not None and loop is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)
        if fd is not None and self.ifname is not None:
            # Delete the device while its name is still ours: once the fd is closed the
            # kernel may give the name to another process's new device.
            with contextlib.suppress(subprocess.CalledProcessError, OSError):
                self.ip("link", "del", self.ifname)
        self.ifname = None
        if fd is not None:
            os.close(fd)  # a non-persistent TUN device dies with its last fd anyway
            self._tun_fd = None

    async def __aenter__(self) -> TunBridge:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ setup

    def _create_device(self) -> tuple[int, str]:
        """Create the device and set its sysctls; return its fd and name. Runs in ``netns``
        (:func:`call_in_netns`), where ``/proc/sys/net`` is that namespace's."""
        return open_tun(self._ifname_request)

    def _configure_device(self) -> None:
        name = self.ifname
        assert name is not None
        self.ip("addr", "add", str(self.local_interface), "dev", name)
        self.ip("link", "set", "dev", name, "mtu", str(self.mtu), "up")
        self.ip("route", "replace", f"{self.peer_ip}/32", "dev", name, "src", self.local_ip)

    # ------------------------------------------------------------------ kernel -> udptcp

    def _on_tun_readable(self) -> None:
        fd = self._tun_fd
        if fd is None:
            return
        for _ in range(_READ_BATCH):
            try:
                packet = os.read(fd, _MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("tunbridge: reading %s failed: %s", self.ifname, exc)
                return
            self._from_kernel(packet)

    def _from_kernel(self, packet: bytes) -> None:
        stats = self.stats
        if len(packet) < 20 or packet[0] >> 4 != 4:
            stats["drop_not_tcp"] += 1  # IPv6 or junk
            return
        ihl = (packet[0] & 0x0F) * 4
        total = int.from_bytes(packet[2:4], "big")
        if ihl < 20 or total < ihl or total > len(packet):
            stats["drop_bad_ip"] += 1
            return
        if packet[9] != _IPPROTO_TCP or packet[16:20] != self._peer_raw:
            stats["drop_not_tcp"] += 1
            return
        if int.from_bytes(packet[6:8], "big") & (_IP_FLAG_MF | _IP_OFFSET_MASK):
            stats["drop_fragment"] += 1  # the kernel sets DF on TCP; never expected
            return
        segment = packet[ihl:total]
        if len(segment) < HEADER_LEN:
            stats["drop_short"] += 1
            return
        if not _tcp_checksum_ok(segment, packet[12:16], packet[16:20]):
            stats["drop_kernel_checksum"] += 1
            return
        src_port = int.from_bytes(segment[0:2], "big")
        dst_port = int.from_bytes(segment[2:4], "big")
        addr = self._routes.get((src_port, dst_port), self.target)
        if addr is None:
            stats["drop_no_route"] += 1
            return
        data = udptcp_checksum(segment)
        if self.drop is not None and self.drop(KERNEL_TO_UDPTCP, data):
            stats["drop_filter"] += 1
            return
        if self.record is not None:
            self.record.append((KERNEL_TO_UDPTCP, data))
        assert self._sock is not None
        try:
            self._sock.sendto(data, addr)
        except OSError as exc:
            # Full buffer or ICMP error reported back: a lost datagram, as on any path.
            if exc.errno not in (errno.EAGAIN, errno.ECONNREFUSED, errno.ENOBUFS):
                logger.warning("tunbridge: sending to %s failed: %s", addr, exc)
            stats["send_errors"] += 1
            return
        stats["to_udptcp"] += 1

    # ------------------------------------------------------------------ udptcp -> kernel

    def _on_udp_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(_READ_BATCH):
            try:
                data, addr = sock.recvfrom(_MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error from an earlier send; nothing to deliver
            self._from_udptcp(data, addr)

    def _from_udptcp(self, data: bytes, addr: Address) -> None:
        stats = self.stats
        if len(data) < HEADER_LEN:
            stats["drop_short"] += 1
            return
        if checksum(data) != 0:
            stats["drop_udptcp_checksum"] += 1
            return
        src_port = int.from_bytes(data[0:2], "big")
        dst_port = int.from_bytes(data[2:4], "big")
        self._routes[(dst_port, src_port)] = addr
        if self.drop is not None and self.drop(UDPTCP_TO_KERNEL, data):
            stats["drop_filter"] += 1
            return
        if self.record is not None:
            self.record.append((UDPTCP_TO_KERNEL, data))
        segment = tcp_checksum(data, self._peer_raw, self._local_raw)
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        header = bytearray(
            _IPV4_HEADER.pack(
                0x45,
                0,
                20 + len(segment),
                self._ip_id,
                _IP_FLAG_DF,
                _TTL,
                _IPPROTO_TCP,
                0,
                self._peer_raw,
                self._local_raw,
            )
        )
        header[10:12] = checksum(header).to_bytes(2, "big")
        assert self._tun_fd is not None
        try:
            os.write(self._tun_fd, bytes(header) + segment)
        except OSError as exc:
            logger.warning("tunbridge: writing to %s failed: %s", self.ifname, exc)
            stats["send_errors"] += 1
            return
        stats["to_kernel"] += 1


# ---------------------------------------------------------------------- command line


def _parse_addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return (host or "127.0.0.1", int(port))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m udptcp.tools.tunbridge``: run a bridge until interrupted (needs root)."""
    parser = argparse.ArgumentParser(
        prog="python -m udptcp.tools.tunbridge",
        description="Bridge kernel TCP to a udptcp endpoint through a TUN device (needs root "
        "and /dev/net/tun). Kernel programs reach udptcp at PEER; udptcp clients reach kernel "
        "servers on LOCAL by sending to the bridge's UDP address with vport=the TCP port.",
    )
    parser.add_argument("--local", default="10.200.0.1/30", help="device address/prefix")
    parser.add_argument("--peer", default="10.200.0.2", help="address that stands for udptcp")
    parser.add_argument("--target", type=_parse_addr, help="udptcp server HOST:PORT")
    parser.add_argument(
        "--listen", type=_parse_addr, default=("127.0.0.1", 0), help="bridge UDP HOST:PORT"
    )
    parser.add_argument("--ifname", default="utb%d", help="TUN device name (%%d: a number)")
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument(
        "--netns",
        help="existing network namespace (ip netns add NAME) for the device and kernel side",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every segment")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    async def run() -> None:
        record: list[tuple[str, bytes]] | None = [] if args.verbose else None
        bridge = TunBridge(
            local=args.local,
            peer=args.peer,
            target=args.target,
            udp_addr=args.listen,
            ifname=args.ifname,
            mtu=args.mtu,
            record=record,
            netns=args.netns,
        )
        await bridge.start()
        where = f" in netns {args.netns}" if args.netns else ""
        print(
            f"{bridge.ifname}{where}: kernel {bridge.local_ip} <-> udptcp {bridge.peer_ip}; "
            f"bridge UDP {bridge.udp_address[0]}:{bridge.udp_address[1]}",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
                if record:
                    print(format_record(record), flush=True)
                    record.clear()
        finally:
            await bridge.close()
            print(f"stats: {bridge.stats}", flush=True)

    try:
        asyncio.run(run())
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"tunbridge: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
