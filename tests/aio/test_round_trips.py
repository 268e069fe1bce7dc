"""A request/response exchange at its floor: per 1-byte ping-pong round trip, one datagram
each way (the ACK rides on the reply), one send and one read system call per message on
each side, and no timer work per message (a deadline that moved later is not filed again).
Counted, not timed: the figures come from ``benchmarks.pingcost`` (one process) and
``benchmarks.pingsplit`` (two, with each one's CPU per round trip)."""

from __future__ import annotations

import asyncio
import collections
import fcntl
import socket
from collections.abc import Callable
from typing import Any

from aio_helpers import until

import udptcp
from udptcp.aio.endpoint import Endpoint
from udptcp.aio.sockio import _FIONREAD
from udptcp.aio.transport import Transport
from udptcp.core.timerheap import TimerHeap

WARMUP = 20
ROUNDS = 200
#: Counters of the connection that say a segment was sent again (a stall on a busy
#: machine can fire a loss probe; each allows one more datagram each way).
RESENT = ("retransmits", "tail_loss_probes", "timeouts")


class CountingSocket(socket.socket):
    """A UDP socket counting the system calls the endpoint makes on it."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_DGRAM)
        self.bind(("127.0.0.1", 0))
        self.calls: collections.Counter[str] = collections.Counter()

    def sendto(self, *args: Any) -> int:
        self.calls["send"] += 1
        return super().sendto(*args)

    def send(self, *args: Any) -> int:
        self.calls["send"] += 1
        return super().send(*args)

    def sendmsg(self, *args: Any) -> int:
        self.calls["send"] += 1
        return super().sendmsg(*args)

    def recvfrom(self, *args: Any) -> Any:
        self.calls["read"] += 1
        return super().recvfrom(*args)

    def recvmsg(self, *args: Any) -> Any:
        self.calls["read"] += 1
        return super().recvmsg(*args)


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class Pinger(asyncio.Protocol):
    """Writes the next 1-byte ping from ``data_received``, as a request/response client
    does; ``marks[n]`` runs inside the callback that takes the reply with ``n`` pings
    left to send (0: the last reply)."""

    def __init__(self) -> None:
        self.left = 0
        self.marks: dict[int, Callable[[], None]] = {}
        self.done: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.left -= 1
        mark = self.marks.get(self.left)
        if mark is not None:
            mark()
        if self.left > 0:
            self.transport.write(b"!")
            return
        assert self.done is not None
        self.done.set_result(None)

    async def run(self, rounds: int, marks: dict[int, Callable[[], None]] | None = None) -> None:
        self.left, self.marks = rounds, marks or {}
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(b"!")
        await asyncio.wait_for(self.done, 30)


class CountingTimerHeap(TimerHeap[Any]):
    """A timer heap counting the deadlines filed on it."""

    filed = 0

    def set(self, key: Any, deadline: float | None) -> None:
        self.filed += 1
        super().set(key, deadline)


def _filings(endpoint: Endpoint) -> CountingTimerHeap:
    """Give ``endpoint`` a counting timer heap holding what its own held."""
    counting = CountingTimerHeap()
    plain = endpoint._timers
    for key in list(plain._armed):
        counting.set(key, plain.deadline(key))
    counting.filed = 0
    endpoint._timers = counting
    return counting


def _snapshot(
    endpoint: Endpoint, sock: CountingSocket, timers: CountingTimerHeap
) -> dict[str, int]:
    stats = endpoint.stats
    return {
        "datagrams_out": stats["datagrams_out"],
        "timer_arms": stats["timer_arms"],
        "timer_wakeups": stats["timer_wakeups"],
        "filed": timers.filed,
        "send": sock.calls["send"],
        "read": sock.calls["read"],
    }


def _resent(transport: Transport) -> int:
    stats = transport.get_extra_info("udptcp_stats")
    return sum(stats[name] for name in RESENT)


async def test_ping_pong_costs_one_datagram_and_two_system_calls_per_message() -> None:
    server_sock, client_sock = CountingSocket(), CountingSocket()
    server = await udptcp.create_server(Echo, sock=server_sock)
    try:
        client_sock.connect(server_sock.getsockname())
        transport, pinger = await udptcp.create_connection(Pinger, sock=client_sock)
        assert isinstance(transport, Transport)
        client = transport.endpoint
        server_endpoint = Endpoint.existing(asyncio.get_running_loop(), server_sock)
        assert isinstance(client, Endpoint) and server_endpoint is not None
        client_filed, server_filed = _filings(client), _filings(server_endpoint)
        server_transport = next(iter(server_endpoint._conns.values()))
        snapshots: list[dict[str, int]] = []
        resent: list[int] = []

        def mark() -> None:
            # Inside a reply's callback, before the next ping: the first mark ends the
            # warm-up, the second comes with the last reply (whose delayed ACK is not due).
            snapshots.append(_snapshot(client, client_sock, client_filed))
            snapshots.append(_snapshot(server_endpoint, server_sock, server_filed))
            resent.append(_resent(transport) + _resent(server_transport))

        await pinger.run(WARMUP + ROUNDS, {ROUNDS: mark, 0: mark})
        before, after = snapshots[:2], snapshots[2:]
        resent_count = resent[1] - resent[0]
        for side, start, end in zip(("client", "server"), before, after, strict=True):
            moved = {name: end[name] - start[name] for name in start}
            # One datagram per message, sent with one system call: the ACK of each ping
            # rides on its echo and the ACK of each echo on the next ping (no pure ACKs).
            assert ROUNDS <= moved["datagrams_out"] <= ROUNDS + 2 * resent_count, (side, moved)
            assert moved["send"] == moved["datagrams_out"], (side, moved)
            # One read per wake-up: FIONREAD says nothing else is queued (without it, the
            # read that finds the socket empty is one more).
            reads = ROUNDS if _FIONREAD is not None else 2 * ROUNDS
            assert reads <= moved["read"] <= reads + 2 * resent_count, (side, moved)
            if not resent_count:
                assert moved["datagrams_out"] == ROUNDS, (side, moved)
            # No timer work per message: each round trip moves the deadlines later
            # (loss probe, retransmission timer), which files nothing; the loop's timer is
            # armed, and a deadline filed again, only after a timer wake-up.
            assert moved["timer_arms"] <= moved["timer_wakeups"] + 1, (side, moved)
            assert moved["filed"] <= moved["timer_wakeups"] + 1, (side, moved)
        transport.close()
    finally:
        server.close()
        server.abort_clients()
        await asyncio.wait_for(server.wait_closed(), 5)


async def test_a_deadline_that_moved_later_still_fires() -> None:
    """The last reply's delayed ACK: the client's deadline moved later than the one its
    endpoint had filed (the loss probe of its last ping), and the ACK still goes out, alone,
    when its own time comes."""
    server = await udptcp.create_server(Echo, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        config = udptcp.Config(delayed_ack=0.005)
        transport, pinger = await udptcp.create_connection(Pinger, "127.0.0.1", port, config=config)
        assert isinstance(transport, Transport)
        client = transport.endpoint
        await pinger.run(WARMUP)
        sent, wakeups = client.stats["datagrams_out"], client.stats["timer_wakeups"]
        conn = transport.conn
        assert conn.timers.delack is not None  # the last echo waits for its ACK
        server_endpoint = next(e for e in udptcp.aio.endpoint.open_endpoints() if e is not client)
        server_conn = next(iter(server_endpoint._conns.values())).conn
        await until(lambda: server_conn.snd_una == server_conn.snd_max)
        assert client.stats["datagrams_out"] == sent + 1  # the pure ACK
        assert client.stats["timer_wakeups"] > wakeups
        assert conn.timers.delack is None
        transport.close()
    finally:
        server.close()
        server.abort_clients()
        await asyncio.wait_for(server.wait_closed(), 5)


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)


async def test_acks_waiting_in_the_socket_are_read_before_due_timers_run() -> None:
    """After a stall, the peer's ACK can be waiting in the socket when the loss-probe timer
    of the data it acknowledges comes due, and libuv (uvloop) runs due timers before it
    polls for I/O. The endpoint's timer reads the socket first: nothing is resent."""
    loop = asyncio.get_running_loop()
    sinks: list[Sink] = []

    def sink() -> Sink:
        sinks.append(Sink())
        return sinks[-1]

    server = await udptcp.create_server(sink, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        transport, _ = await udptcp.create_connection(asyncio.Protocol, "127.0.0.1", port)
        assert isinstance(transport, Transport)
        client = transport.endpoint
        assert isinstance(client, Endpoint)
        conn = transport.conn
        # The client stops reading on its own: what the server answers stays queued.
        loop.remove_reader(client._fd)
        # Whole segments (a short last one would wait for the loop's next turn, and its ACK
        # be delayed): more than one, so the server acknowledges them at once.
        data = b"x" * (3 * conn._eff_mss)
        # Nor from inside write() (the write path reads a socket the loop has not read
        # for a millisecond, Endpoint.poll_from_write): as if it had just been read.
        client._last_read, client._writes_unread = loop.time() + 3600.0, 0
        transport.write(data)
        assert conn.snd_nxt != conn.snd_una
        # Its own timer too (the test calls it below, as the loop would after a stall).
        assert client._timer is not None
        client._timer.cancel()
        deadline = transport.deadline
        assert deadline is not None
        await until(lambda: sinks and sinks[0].received == len(data))
        queued = bytearray(4)
        if _FIONREAD is not None:
            await until(
                lambda: fcntl.ioctl(client._fd, _FIONREAD, queued) == 0 and queued != bytearray(4)
            )
        await until(lambda: loop.time() > deadline)
        taken = client.stats["datagrams_in"]
        client._on_timer()
        assert client.stats["datagrams_in"] > taken, "the queued ACK was not read"
        assert conn.snd_una == conn.snd_nxt
        assert _resent(transport) == 0, transport.get_extra_info("udptcp_stats")
        loop.add_reader(client._fd, client._on_readable)
        transport.close()
    finally:
        server.close()
        server.abort_clients()
        await asyncio.wait_for(server.wait_closed(), 5)
