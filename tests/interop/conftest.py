"""Fixtures for the interop labs: the kernel's TCP, in a network namespace of its own, bridged
onto udptcp through a TUN device.

Each test gets a fresh namespace ``udptcp-lab-<random>`` (``ip netns add``) that holds the whole
kernel side: the TUN device on 10.200.0.0/30 with its route and sysctls, and every kernel
socket the test makes (:meth:`Lab.kernel_connect`, :meth:`Lab.kernel_server`,
``lab.bridge.kernel_socket()``). Only the bridge's UDP socket and udptcp stay in the host
namespace, which therefore sees nothing but UDP on 127.0.0.1. The ``lab`` fixture checks that
while the test runs (no 10.200.* address, route or socket, no TUN device and no changed
sysctl appears in the host namespace) and deletes the namespace afterwards, whatever happened.

Every async test runs on both loops, as in ``tests/aio``. The labs need root, /dev/net/tun,
iproute2 and permission to create network namespaces; without them every test here is skipped
with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import functools
import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import udptcp
from udptcp.aio.endpoint import close_endpoints
from udptcp.core.segment import Segment, decode
from udptcp.tools.tunbridge import NETNS_DIR, TunBridge, call_in_netns, format_record

#: Prefix of the namespaces the labs create (the rest is random, so runs never collide).
NETNS_PREFIX = "udptcp-lab-"
#: A line of ``ip`` output that only a lab would produce: an address in the labs' range, or a
#: TUN device (``ip -d link``).
LAB_TRACE = re.compile(r"\b10\.200\.|\btun type tun\b")
#: Host sysctls a lab must not touch (namespace-wide ones; device ones die with a device).
HOST_SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/rp_filter",
    "net/ipv4/conf/default/rp_filter",
    "net/ipv6/conf/all/disable_ipv6",
    "net/ipv6/conf/default/disable_ipv6",
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# ---------------------------------------------------------------------- can a lab run here?


def ip(*args: str) -> str:
    """Run ``ip ARGS`` from this process's namespace (the host's); return its output."""
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@functools.cache
def lab_unavailable() -> str | None:
    """Why no lab can run on this machine, or None if one can (checked once per session)."""
    if os.geteuid() != 0:
        return "kernel interop needs root (network namespace, TUN device, addresses)"
    if not os.path.exists("/dev/net/tun"):
        return "kernel interop needs /dev/net/tun"
    if shutil.which("ip") is None or shutil.which("ss") is None:
        return "kernel interop needs the ip and ss commands (iproute2)"
    probe = f"{NETNS_PREFIX}probe-{secrets.token_hex(4)}"
    try:
        ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return (
            f"kernel interop needs network namespaces: ip netns add refused: {exc.stderr.strip()}"
        )
    ip("netns", "del", probe)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every interop test, with the reason, where no lab can run (a module-level skip
    shared by all modules here)."""
    here = Path(__file__).parent
    mine = [item for item in items if here in item.path.parents]
    reason = lab_unavailable() if mine else None
    if reason is not None:
        for item in mine:
            item.add_marker(pytest.mark.skip(reason=reason))


# ---------------------------------------------------------------------- the host stays clean


def host_view() -> list[str]:
    """What the host namespace shows that a lab could have left there: each line of ``ip
    link`` / ``ip addr`` / ``ip route`` (IPv4 and IPv6, all tables) with a TUN device or a
    10.200.* address, each host socket (``ss``) talking to a 10.200.* address, and the values
    of :data:`HOST_SYSCTLS`. Runs in the main thread, which never leaves the host namespace
    (only helper threads join a lab's)."""
    view = []
    for command in (
        ("ip", "-o", "-d", "link", "show"),
        ("ip", "-o", "addr", "show"),
        ("ip", "-4", "route", "show", "table", "all"),
        ("ip", "-6", "route", "show", "table", "all"),
        ("ss", "-tanuH"),
    ):
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        view += [
            f"{' '.join(command)}: {line}" for line in out.splitlines() if LAB_TRACE.search(line)
        ]
    for name in HOST_SYSCTLS:
        with open(f"/proc/sys/{name}") as f:
            view.append(f"sysctl {name} = {f.read().strip()}")
    return view


def assert_host_untouched(baseline: list[str], when: str) -> None:
    now = host_view()
    assert now == baseline, f"{when}, the host namespace changed:\n" + "\n".join(
        difflib.unified_diff(baseline, now, "before the labs", when, lineterm="")
    )


@pytest.fixture(scope="session")
def host_baseline() -> list[str]:
    """:func:`host_view` before the first lab of the session: normally only the sysctls."""
    return host_view()


@pytest.fixture
def host_unchanged(host_baseline: list[str]) -> Iterator[None]:
    """For a test that builds its own lab (not the ``lab`` fixture): the host namespace must
    look the same after it as before the first lab."""
    yield
    assert_host_untouched(host_baseline, "after the test")


# ---------------------------------------------------------------------- the lab


class EchoServer(asyncio.Protocol):
    """udptcp server side: echoes, closes on EOF, remembers how the connection ended.

    ``paused``: pause reading as soon as connected and echo nothing, only count (a receiver
    whose window fills). ``close_after_reply``: close right after echoing the first data
    (udptcp as the active closer).
    """

    def __init__(
        self, made: list[EchoServer], *, paused: bool = False, close_after_reply: bool = False
    ) -> None:
        self.made = made
        self.paused = paused
        self.close_after_reply = close_after_reply
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.received = 0
        self.transport: udptcp.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, udptcp.Transport)
        self.transport = transport
        self.made.append(self)
        if self.paused:
            transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.paused:
            return
        self.transport.write(data)
        if self.close_after_reply:
            self.transport.close()

    def eof_received(self) -> bool:
        self.transport.close()
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class Lab:
    """One test's lab: the namespace ``netns`` with the kernel side, the started ``bridge``
    into it (recording every segment), and the helpers the interop modules share.

    Kernel sockets are made in the namespace (``bridge.kernel_socket()``); everything udptcp
    does stays in the host namespace, on 127.0.0.1.
    """

    def __init__(self, netns: str, bridge: TunBridge) -> None:
        self.netns = netns
        self.bridge = bridge
        self._servers: list[asyncio.AbstractServer] = []

    # ------------------------------------------------------------------ kernel side

    async def kernel_connect(
        self, port: int = 80, sock: socket.socket | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A kernel TCP connection from the namespace to udptcp (``peer_ip:port``), as
        streams. ``sock``: a kernel socket already prepared (bound, options set), else a new
        one. Raises what ``connect`` does (``ConnectionRefusedError`` on an RST)."""
        if sock is None:
            sock = self.bridge.kernel_socket()
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (self.bridge.peer_ip, port)), 5)
            return await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise

    async def kernel_server(
        self, handle: Handler, *, rcvbuf: int | None = None
    ) -> tuple[asyncio.Server, int]:
        """A kernel TCP server in the namespace on ``local_ip`` and a free port; returns the
        server and the port. ``rcvbuf`` sets SO_RCVBUF (accepted sockets inherit it)."""
        listener = self.bridge.kernel_socket()
        try:
            if rcvbuf is not None:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            listener.bind((self.bridge.local_ip, 0))
            server = await asyncio.start_server(handle, sock=listener)
        except BaseException:
            listener.close()
            raise
        self._servers.append(server)
        return server, listener.getsockname()[1]

    def kernel_tcp_state(self, local: tuple[str, int], remote: tuple[str, int]) -> int | None:
        """The kernel's state for a TCP 4-tuple in the namespace (TIME-WAIT included), from
        its ``/proc/thread-self/net/tcp`` (``/proc/net`` would show the host's)."""

        def hex_addr(addr: tuple[str, int]) -> str:
            return f"{socket.inet_aton(addr[0])[::-1].hex().upper()}:{addr[1]:04X}"

        def read_table() -> list[str]:
            with open("/proc/thread-self/net/tcp") as f:
                return f.readlines()[1:]

        want = (hex_addr(local), hex_addr(remote))
        for line in call_in_netns(self.netns, read_table):
            fields = line.split()
            if (fields[1], fields[2]) == want:
                return int(fields[3], 16)
        return None

    async def kernel_echo(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        payload: bytes,
        timeout: float = 10,
    ) -> None:
        """On a kernel connection to an echoing udptcp server: send ``payload`` and EOF while
        reading to EOF, and check the echo is ``payload``."""

        async def send() -> None:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        try:
            echoed = await asyncio.wait_for(reader.read(), timeout)
            await sender
        finally:
            sender.cancel()
        self.assert_same_bytes(echoed, payload)

    # ------------------------------------------------------------------ udptcp side

    async def udptcp_server(
        self, *, paused: bool = False, close_after_reply: bool = False, **kw: Any
    ) -> tuple[udptcp.Server, list[EchoServer]]:
        """A udptcp :class:`EchoServer` server on 127.0.0.1 (wildcard virtual port unless
        ``vport=``; ``kw`` goes to ``create_server``) as the bridge's target; also the list
        its protocols append themselves to."""
        made: list[EchoServer] = []
        server = await udptcp.create_server(
            lambda: EchoServer(made, paused=paused, close_after_reply=close_after_reply),
            "127.0.0.1",
            0,
            **kw,
        )
        self._servers.append(server)
        self.bridge.target = server.sockets[0].getsockname()
        return server, made

    @staticmethod
    async def close_server(server: asyncio.AbstractServer) -> None:
        """Close a server (kernel or udptcp) and wait until it is closed."""
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)

    # ------------------------------------------------------------------ the trace

    def trace(self) -> list[tuple[str, Segment]]:
        """Every segment the bridge forwarded, decoded, with its direction."""
        assert self.bridge.record is not None
        return [(d, decode(data)) for d, data in self.bridge.record]

    def segments(self, direction: str | None = None) -> list[Segment]:
        """The segments the bridge forwarded (both directions carry udptcp checksums), in one
        direction or all."""
        return [seg for d, seg in self.trace() if direction is None or d == direction]

    @staticmethod
    def assert_same_bytes(got: bytes, want: bytes) -> None:
        """``got == want``, compared by length and digest: a failure shows two lines, not a
        diff of megabytes."""
        assert (len(got), hashlib.sha256(got).hexdigest()) == (
            len(want),
            hashlib.sha256(want).hexdigest(),
        )

    def _close_servers(self) -> None:
        for server in self._servers:
            with contextlib.suppress(Exception):
                server.close()


@pytest_asyncio.fixture(loop_scope="function")
async def lab(request: pytest.FixtureRequest, host_baseline: list[str]) -> AsyncIterator[Lab]:
    """A fresh network namespace with a started :class:`TunBridge` in it, as a :class:`Lab`.

    ``lab.bridge.target`` starts as None: a test with a udptcp server behind the bridge sets
    it (:meth:`Lab.udptcp_server` does). The device MTU is 1500 unless a test parametrizes
    this fixture indirectly with another. The host namespace is checked at the end of the
    test body and after the lab is gone; the namespace is deleted in any case. On failure the segment trace is printed
    (pytest shows it).
    """
    mtu = getattr(request, "param", 1500)
    record: list[tuple[str, bytes]] = []
    netns = f"{NETNS_PREFIX}{secrets.token_hex(4)}"
    ip("netns", "add", netns)
    bridge = TunBridge(netns=netns, mtu=mtu, record=record)
    try:
        ip("-n", netns, "link", "set", "lo", "up")
        try:
            await bridge.start()
        except PermissionError as exc:
            pytest.skip(f"cannot create a TUN device here: {exc}")
        except subprocess.CalledProcessError as exc:
            if "not permitted" not in exc.stderr:
                raise
            pytest.skip(f"cannot configure a TUN device here: {exc.stderr.strip()}")
        # The kernel side is in the lab namespace ...
        assert f"inet {bridge.local_interface}" in bridge.ip(
            "-o", "addr", "show", "dev", str(bridge.ifname)
        )
        lab = Lab(netns, bridge)
        try:
            yield lab
            # ... and, with the test's connections still there, nothing of it in the host's.
            assert_host_untouched(host_baseline, "at the end of the test")
        finally:
            lab._close_servers()
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                print(f"bridge stats: {bridge.stats}\n{format_record(record)}")
    finally:
        await bridge.close()
        close_endpoints()
        # No check=True here: an error must not hide the test's own; the assertion below
        # reports a namespace that would not go.
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    assert not os.path.exists(os.path.join(NETNS_DIR, netns)), f"{netns} was not deleted"
    assert_host_untouched(host_baseline, "after the lab was deleted")
