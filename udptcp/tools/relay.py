"""Impairment relay: a UDP middlebox with seeded, per-direction network conditions.

The relay listens on one UDP address and behaves like a NAT towards a single target: every
distinct client address gets its own upstream UDP socket (an ephemeral port on loopback when
the target is on loopback), so the target sees one address per client. Datagrams travelling
client -> target form the *forward* direction, target -> client the *backward* direction; each
direction has its own `Impairment` and its own `random.Random`, so a direction's fate pattern
depends only on the seed and on the datagrams that crossed that direction.

The relay carries any UDP protocol and deliberately imports nothing from `udptcp.core` or
`udptcp.aio`.

Per datagram, each direction applies its impairment in a fixed order
(:mod:`udptcp.tools.direction` has the steps); a datagram with no delay and no link to wait
for is sent on at once, inside the receive callback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any, cast

from .direction import Address, Direction, Record, RelayStats, direction_rng
from .impairment import Impairment

__all__ = [
    "Direction",
    "Impairment",
    "Record",
    "Relay",
    "RelayStats",
    "add_arguments",
    "direction_rng",
    "main",
    "run",
]

logger = logging.getLogger(__name__)

# Socket buffers asked for on every relay socket: a burst on loopback should queue in the
# kernel, not be dropped there (the kernel caps this at net.core.rmem_max / wmem_max).
_SOCKET_BUFFER = 4 * 1024 * 1024
# Largest UDP payload (IPv6 without jumbograms: 65535 - 8), i.e. a receive buffer that
# never truncates.
_MAX_DATAGRAM = 65535
# Datagrams kept per client while its upstream socket is still being opened.
_PENDING_LIMIT = 1024


# --------------------------------------------------------------------------------------------
# Sockets


def _udp_socket(family: int, local: Address, remote: Address | None = None) -> socket.socket:
    """A bound (and optionally connected) non-blocking UDP socket with large buffers.

    The relay creates its sockets itself and keeps them: both loops' `sendto` silently skip
    zero-length datagrams, which are legal UDP, so those are written to the socket directly.
    """
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
            except OSError:  # pragma: no cover - platform limits
                pass
        sock.bind(local)
        if remote is not None:
            # Connected: the kernel filters datagrams from anyone but the target, and ICMP
            # port unreachable surfaces in error_received.
            sock.connect(remote)
    except BaseException:
        sock.close()
        raise
    return sock


def _tune_transport(transport: asyncio.BaseTransport) -> None:
    """Make the default loop's datagram transport read into a smaller buffer.

    CPython's selector transport calls ``recvfrom(256 KiB)`` per datagram; a buffer that large
    is mmap'ed, shrunk and unmapped every time (three extra system calls per datagram, a
    third of the relay's time at loopback speeds). 64 KiB holds any UDP payload and comes
    from the ordinary heap. uvloop's transport has no such attribute and needs nothing.
    """
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = _MAX_DATAGRAM  # type: ignore[attr-defined]


def _send_empty(sock: socket.socket, addr: Address | None, stats: RelayStats) -> None:
    try:
        if addr is None:
            sock.send(b"")
        else:
            sock.sendto(b"", addr)
    except OSError:
        stats.errors += 1


class _ListenProtocol(asyncio.DatagramProtocol):
    """The client-facing socket: datagrams in are forward traffic."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.relay._from_client(data, addr)

    def error_received(self, exc: Exception) -> None:
        # This socket only sends backward traffic; errors are counted, never fatal.
        self.relay.backward_stats.errors += 1
        logger.debug("relay: backward send error: %r", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Upstream(asyncio.DatagramProtocol):
    """The NAT mapping of one client: its own socket towards the target."""

    def __init__(self, relay: Relay, client: Address) -> None:
        self.relay = relay
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = None
        self.pending: list[bytes] | None = []  # None once the socket is open
        self.task: asyncio.Task[None] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def open(self, family: int, local: Address, target: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            sock = _udp_socket(family, local, target)
            try:
                transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
            except BaseException:
                # A loop may have made the transport before failing (or being cancelled).
                if self.transport is not None:
                    self.transport.close()
                    self.transport = None
                else:
                    sock.close()
                raise
        except OSError as exc:
            logger.warning("relay: cannot open upstream socket for %s: %r", self.client, exc)
            self.relay.forward_stats.errors += 1
            self.relay._upstreams.pop(self.client, None)
            self.pending = None
            self.closed.set_result(None)
            return
        _tune_transport(transport)
        self.sock = sock
        pending, self.pending = self.pending or [], None
        if self.relay._closed:
            transport.close()
            return
        for data in pending:
            self.send_forward(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (The default loop's datagram transport does not subclass DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def send_forward(self, data: bytes) -> None:
        transport = self.transport
        if self.pending is not None:  # socket still opening
            if len(self.pending) < _PENDING_LIMIT:
                self.pending.append(data)
        elif transport is None:
            return
        elif data:
            transport.sendto(data)
        elif self.sock is not None:
            _send_empty(self.sock, None, self.relay.forward_stats)

    def send_backward(self, data: bytes) -> None:
        relay = self.relay
        if relay._listen is None or relay._listen_sock is None:
            return
        if data:
            relay._listen.sendto(data, self.client)
        else:
            _send_empty(relay._listen_sock, self.client, relay.backward_stats)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.relay._backward.submit(data, self.client, self.send_backward)

    def error_received(self, exc: Exception) -> None:
        # This socket only sends forward traffic; a connected UDP socket surfaces ICMP port
        # unreachable as ConnectionRefusedError here. Counted, never fatal.
        self.relay.forward_stats.errors += 1
        logger.debug("relay: forward send error for %s: %r", self.client, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


# --------------------------------------------------------------------------------------------
# The relay


class Relay:
    """A UDP relay between clients and one target applying seeded impairments per direction.

    Usage::

        async with Relay(("127.0.0.1", 9001), forward=Impairment(loss=0.05), seed=1) as relay:
            host, port = relay.address   # point clients here
    """

    def __init__(
        self,
        target: tuple[str, int],
        *,
        forward: Impairment | None = None,
        backward: Impairment | None = None,
        seed: int = 0,
        record: bool = False,
        on_record: Callable[[Record], None] | None = None,
    ) -> None:
        self.target = target
        self.seed = seed
        self.record = record
        self.on_record = on_record
        self.records: list[Record] = []
        self.forward_stats = RelayStats()
        self.backward_stats = RelayStats()
        # One generator per direction, seeded from `seed`: each direction is reproducible
        # whatever happens in the other one.
        self._forward = Direction(
            "forward", forward or Impairment(), direction_rng(seed, "forward"), self.forward_stats
        )
        self._backward = Direction(
            "backward",
            backward or Impairment(),
            direction_rng(seed, "backward"),
            self.backward_stats,
        )
        self._listen: asyncio.DatagramTransport | None = None
        self._listen_protocol: _ListenProtocol | None = None
        self._listen_sock: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._upstreams: dict[Address, _Upstream] = {}
        self._target_family = socket.AF_INET
        self._target_addr: Address = target
        self._upstream_local: Address = ("0.0.0.0", 0)
        self._closed = False
        self._close_done: asyncio.Event | None = None

    # -- conditions ---------------------------------------------------------------------------

    @property
    def forward(self) -> Impairment:
        """The impairment currently applied client -> target."""
        return self._forward.impairment

    @property
    def backward(self) -> Impairment:
        """The impairment currently applied target -> client."""
        return self._backward.impairment

    def set_impairment(
        self, *, forward: Impairment | None = None, backward: Impairment | None = None
    ) -> None:
        """Change conditions while running; a direction given as None keeps its impairment.

        Datagrams already in flight keep the fate they were given; the random generators and
        the link state carry on.
        """
        if forward is not None:
            self._forward.set_impairment(forward)
        if backward is not None:
            self._backward.set_impairment(backward)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Resolve the target, bind the listening socket and return its address."""
        if self._closed:
            raise RuntimeError("relay is closed")
        if self._listen is not None:
            raise RuntimeError("relay already started")
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(*self.target, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve target {self.target!r}")
        family, _, _, _, sockaddr = infos[0]
        self._target_family = family
        self._target_addr = (sockaddr[0], sockaddr[1])
        v6 = family == socket.AF_INET6
        if ipaddress.ip_address(sockaddr[0]).is_loopback:
            self._upstream_local = ("::1" if v6 else "127.0.0.1", 0)
        else:  # let the kernel pick the route's source address when connecting
            self._upstream_local = ("::" if v6 else "0.0.0.0", 0)

        emit = self._emit if (self.record or self.on_record is not None) else None
        for direction in (self._forward, self._backward):
            direction.loop = loop
            direction.emit = emit

        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
        if not infos:
            raise OSError(f"cannot resolve listening address {(host, port)!r}")
        family, _, _, _, sockaddr = infos[0]
        sock = _udp_socket(family, sockaddr)
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _ListenProtocol(self), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        _tune_transport(transport)
        self._listen = transport
        self._listen_sock = sock
        self._listen_protocol = protocol
        sockname = transport.get_extra_info("sockname")
        self._address = (sockname[0], sockname[1])
        return self._address

    @property
    def address(self) -> tuple[str, int]:
        """The listening address (host, port); clients send here."""
        if self._address is None:
            raise RuntimeError("relay not started")
        return self._address

    @property
    def clients(self) -> list[Address]:
        """Client addresses seen so far, in order of first appearance."""
        return list(self._upstreams)

    def upstream_address(self, client: Address) -> Address | None:
        """The address the target sees for `client` (None while its socket is opening)."""
        upstream = self._upstreams.get(client)
        if upstream is None or upstream.transport is None:
            return None
        sockname: Address = upstream.transport.get_extra_info("sockname")
        return sockname

    async def rebind(self, client: Address) -> Address | None:
        """Give ``client`` a new upstream socket, as a NAT that dropped and remade its
        mapping does: from now on the target sees the client's datagrams come from a new
        port, and what it sends to the old one is lost. Returns the new address (None if
        the socket could not be opened)."""
        old = self._upstreams.pop(client, None)
        if old is not None and old.transport is not None:
            old.transport.close()
        upstream = self._upstreams[client] = _Upstream(self, client)
        upstream.task = asyncio.get_running_loop().create_task(
            upstream.open(self._target_family, self._upstream_local, self._target_addr)
        )
        await upstream.task
        return self.upstream_address(client)

    @property
    def pending(self) -> int:
        """Datagrams (both directions) waiting on a link or in a delay line."""
        return self._forward.pending + self._backward.pending

    async def close(self) -> None:
        """Close every socket and drop every datagram still in flight. Idempotent."""
        if self._closed:
            if self._close_done is not None:
                await self._close_done.wait()
            return
        self._closed = True
        self._close_done = done = asyncio.Event()
        try:
            self._forward.close()
            self._backward.close()
            upstreams = list(self._upstreams.values())
            # Let sockets still opening finish (it takes one loop iteration), so that every
            # transport is closed below rather than abandoned half-made.
            opening = [u.task for u in upstreams if u.task is not None and not u.task.done()]
            if opening:
                _, stuck = await asyncio.wait(opening, timeout=1.0)
                for task in stuck:
                    task.cancel()
            waiters: list[asyncio.Future[Any]] = []
            for upstream in upstreams:
                if upstream.transport is not None:
                    upstream.transport.close()
                    waiters.append(upstream.closed)
            if self._listen is not None and self._listen_protocol is not None:
                self._listen.close()
                waiters.append(self._listen_protocol.closed)
            if waiters:
                await asyncio.wait(waiters, timeout=1.0)
        finally:
            done.set()

    async def __aenter__(self) -> Relay:
        if self._listen is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- datagram paths -----------------------------------------------------------------------

    def _from_client(self, data: bytes, client: Address) -> None:
        upstream = self._upstreams.get(client)
        if upstream is None:
            if self._closed:
                return
            upstream = self._upstreams[client] = _Upstream(self, client)
            upstream.task = asyncio.get_running_loop().create_task(
                upstream.open(self._target_family, self._upstream_local, self._target_addr)
            )
        self._forward.submit(data, client, upstream.send_forward)

    def _emit(self, record: Record) -> None:
        if self.record:
            self.records.append(record)
        if self.on_record is not None:
            try:
                self.on_record(record)
            except Exception:  # a broken observer must not kill the relay
                logger.exception("relay: on_record callback failed")


# --------------------------------------------------------------------------------------------
# Command line


def _host_port(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` or ``PORT`` (host defaults to loopback)."""
    match = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]*):(\d+)|(\d+)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT or [IPV6]:PORT, got {text!r}")
    v6_host, v6_port, host, port, bare_port = match.groups()
    if v6_host is not None:
        host, port = v6_host, v6_port
    elif bare_port is not None:
        host, port = "", bare_port
    number = int(port)
    if number > 65535:
        raise argparse.ArgumentTypeError(f"port out of range in {text!r}")
    return (host or "127.0.0.1", number)


EPILOG = (
    'SPEC is a comma-separated list such as "loss=5%,dup=0.02,reorder=0.05,delay=10ms,'
    'jitter=5ms,rate=10mbit,mtu=1200". Times need a unit (us, ms, s) and rates one '
    "(bit, kbit, mbit, gbit per second, or b, kb, mb, gb for bytes per second); "
    "probabilities are fractions or percentages. --both applies to both directions; "
    "--forward/--backward items are added after it and override it."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The relay's command-line options (shared by ``udptcp relay`` and ``udptcp-relay``)."""
    parser.add_argument(
        "--listen",
        type=_host_port,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="UDP address clients send to (default 127.0.0.1, any free port)",
    )
    parser.add_argument(
        "--target", type=_host_port, required=True, metavar="HOST:PORT", help="where to relay to"
    )
    parser.add_argument("--forward", default="", metavar="SPEC", help="client -> target")
    parser.add_argument("--backward", default="", metavar="SPEC", help="target -> client")
    parser.add_argument("--both", default="", metavar="SPEC", help="both directions")
    parser.add_argument("--seed", type=int, default=0, help="seed of the impairments (0)")
    parser.add_argument(
        "--stats-every", type=float, default=0.0, metavar="SECONDS", help="print stats periodically"
    )
    parser.add_argument(
        "--duration", type=float, default=None, metavar="SECONDS", help="stop after this long"
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")


def _build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or _prog(),
        description="UDP relay applying seeded loss/duplication/reordering/delay/corruption/"
        "rate/MTU impairments, separately per direction.",
        epilog=EPILOG,
    )
    add_arguments(parser)
    return parser


def _prog() -> str:
    """The name the relay was started by: ``udptcp-relay`` (the console script) or
    ``python -m udptcp.tools.relay``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if name in ("", "relay.py", "__main__.py", "-c"):
        return "python -m udptcp.tools.relay"
    return name


def _print_stats(relay: Relay, label: str) -> None:
    print(f"{label} forward:  {relay.forward_stats}", flush=True)
    print(f"{label} backward: {relay.backward_stats}", flush=True)


async def _report_every(relay: Relay, every: float) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        await asyncio.sleep(every)
        _print_stats(relay, f"[{loop.time() - started:.1f}s]")


async def _serve(args: argparse.Namespace, forward: Impairment, backward: Impairment) -> None:
    relay = Relay(args.target, forward=forward, backward=backward, seed=args.seed)
    host, port = await relay.start(*args.listen)
    print(
        f"relay {host}:{port} -> {args.target[0]}:{args.target[1]} "
        f"forward[{forward}] backward[{backward}] seed={args.seed}",
        flush=True,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # SIGTERM (a harness stopping the relay) ends the run like --duration; Ctrl-C cancels us.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    reporter = None
    if args.stats_every > 0:
        reporter = loop.create_task(_report_every(relay, args.stats_every))
    try:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)
        if reporter is not None:
            reporter.cancel()
        await relay.close()
        _print_stats(relay, "[final]")


def _run(coro: Coroutine[Any, Any, None], use_uvloop: bool) -> None:
    """Run `coro` on a fresh loop; on Ctrl-C it is cancelled (so it can clean up), then
    KeyboardInterrupt propagates."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if use_uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(coro)
    else:  # pragma: no cover - Python 3.10
        loop = factory() if factory is not None else asyncio.new_event_loop()
        task = loop.create_task(coro)
        try:
            loop.run_until_complete(task)
        except KeyboardInterrupt:
            task.cancel()
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
            raise
        finally:
            loop.close()


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the relay the parsed ``args`` describe; bad impairments and addresses are usage
    errors (``parser.error``), not tracebacks."""
    try:
        forward = Impairment.parse(f"{args.both},{args.forward}")
        backward = Impairment.parse(f"{args.both},{args.backward}")
    except ValueError as exc:
        parser.error(str(exc))
    for option, (host, port) in (("--target", args.target), ("--listen", args.listen)):
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            parser.error(f"cannot resolve {option} host {host!r}: {exc.strerror}")
    try:
        _run(_serve(args, forward, backward), args.uvloop)
    except KeyboardInterrupt:
        pass  # Ctrl-C is the normal way to stop; stats were printed on the way out
    except OSError as exc:  # the listening address is in use, not ours, ...
        print(f"{parser.prog}: error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; runs until Ctrl-C or ``--duration`` and prints stats."""
    parser = _build_parser()
    return run(parser.parse_args(argv), parser)


if __name__ == "__main__":
    raise SystemExit(main())
