"""Tests for the impairment relay (udptcp.tools.relay), end to end over UDP on 127.0.0.1.

Every end-to-end test runs on both event loops: the `run` fixture executes a scenario
coroutine on a fresh default asyncio loop or uvloop loop. (Tests are sync functions so that
the choice of loop stays inside this file; pytest-asyncio is not involved.)

Traffic is paced by the relay's own receive counter, so the kernel never drops a datagram on
its way to the relay and the seeded fate patterns are exact.
"""

from __future__ import annotations

import ast
import asyncio
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest

from udptcp.tools import relay as relay_module
from udptcp.tools.relay import Impairment, Record, Relay, RelayStats, main

try:
    import uvloop
except ImportError:  # pragma: no cover - Windows
    uvloop = None

Run = Callable[[Coroutine[Any, Any, Any]], Any]
Address = tuple[Any, ...]

LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop] | None] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop if uvloop is not None else None,
}
SCENARIO_TIMEOUT = 60.0  # a hang guard only; scenarios take well under a second
# uvloop times are whole milliseconds as floats: differences may be off by a rounding error.
EPSILON = 1e-9


@pytest.fixture(
    params=[
        "asyncio",
        pytest.param(
            "uvloop", marks=pytest.mark.skipif(uvloop is None, reason="uvloop not installed")
        ),
    ]
)
def run(request: pytest.FixtureRequest) -> Run:
    """Run a scenario coroutine to completion on a fresh loop of the parametrized kind."""
    factory = LOOP_FACTORIES[request.param]
    assert factory is not None

    def runner(coro: Coroutine[Any, Any, Any]) -> Any:
        loop = factory()
        try:
            return loop.run_until_complete(asyncio.wait_for(coro, SCENARIO_TIMEOUT))
        finally:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    return runner


# --------------------------------------------------------------------------------------------
# Helpers: a UDP peer on 127.0.0.1 that records (and optionally echoes) what it receives


class Peer(asyncio.DatagramProtocol):
    """A plain UDP socket: a client, a collector, or an echo server when `echo` is set."""

    def __init__(self, sock: socket.socket, echo: bool = False) -> None:
        self.sock = sock
        self.echo = echo
        self.received: list[tuple[float, bytes, Address]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.errors: list[Exception] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (The default loop's datagram transport does not subclass DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received.append((asyncio.get_running_loop().time(), data, addr))
        if self.echo:
            self.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    @property
    def data(self) -> list[bytes]:
        return [data for _, data, _ in self.received]

    def sendto(self, data: bytes, addr: Address) -> None:
        assert self.transport is not None
        if data:
            self.transport.sendto(data, addr)
        else:  # the loops' sendto() skips empty datagrams
            self.sock.sendto(data, addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_peer(echo: bool = False, host: str = "127.0.0.1") -> Peer:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind((host, 0))
    sock.setblocking(False)
    _, peer = await loop.create_datagram_endpoint(lambda: Peer(sock, echo), sock=sock)
    return peer


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


async def send_paced(
    peer: Peer, dest: Address, datagrams: list[bytes], stats: RelayStats, chunk: int = 32
) -> list[float]:
    """Send `datagrams` from `peer`, waiting for the relay to take each chunk; return send times."""
    loop = asyncio.get_running_loop()
    times = []
    expected = stats.received
    for start in range(0, len(datagrams), chunk):
        for data in datagrams[start : start + chunk]:
            times.append(loop.time())
            peer.sendto(data, dest)
            expected += 1
        await until(lambda expected=expected: stats.received >= expected)
    return times


def numbered(count: int, size: int = 16) -> list[bytes]:
    return [i.to_bytes(4, "big") + bytes(size - 4) for i in range(count)]


def index(data: bytes) -> int:
    return int.from_bytes(data[:4], "big")


async def settle() -> None:
    """Give datagrams already sent on loopback time to land."""
    await asyncio.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Pass-through


def test_passthrough_keeps_content_and_order(run: Run) -> None:
    async def scenario() -> None:
        target, client = await open_peer(echo=True), await open_peer()
        # Sizes 0..1399 plus the largest IPv4 UDP payload: all go through untouched.
        datagrams = [bytes([i % 256]) * (i * 7 % 1400) for i in range(600)] + [b"L" * 65507]
        async with Relay(target.address) as relay:
            await send_paced(client, relay.address, datagrams, relay.forward_stats)
            await until(lambda: len(client.received) >= len(datagrams))
            assert target.data == datagrams
            assert client.data == datagrams
            assert all(addr[:2] == relay.address for _, _, addr in client.received)
            for stats in (relay.forward_stats, relay.backward_stats):
                assert stats.received == stats.sent == len(datagrams)
                assert stats.bytes_sent == sum(map(len, datagrams))
        target.close()
        client.close()

    run(scenario())


# --------------------------------------------------------------------------------------------
# Loss


def test_loss_one_drops_everything(run: Run) -> None:
    async def scenario() -> None:
        target, client = await open_peer(echo=True), await open_peer()
        async with Relay(target.address, forward=Impairment(loss=1.0)) as relay:
            await send_paced(client, relay.address, numbered(100), relay.forward_stats)
            await settle()
            assert target.received == []
            assert relay.forward_stats.dropped_loss == 100
            assert relay.forward_stats.sent == 0
        target.close()
        client.close()

    run(scenario())


async def forward_loss_pattern(
    seed: int, backward: Impairment | None = None, count: int = 2000
) -> list[int]:
    """Indices of datagrams that crossed a loss=0.3 forward direction, in arrival order."""
    target, client = await open_peer(echo=backward is not None), await open_peer()
    async with Relay(
        target.address, forward=Impairment(loss=0.3), backward=backward, seed=seed
    ) as relay:
        await send_paced(client, relay.address, numbered(count), relay.forward_stats)
        await until(lambda: len(target.received) >= relay.forward_stats.sent)
        assert relay.forward_stats.dropped_loss + relay.forward_stats.sent == count
        if backward is not None:
            await until(lambda: relay.backward_stats.received >= relay.forward_stats.sent)
    target.close()
    client.close()
    return [index(data) for data in target.data]


def test_loss_fraction_is_seeded_and_reproducible(run: Run) -> None:
    async def scenario() -> None:
        first = await forward_loss_pattern(seed=1)
        again = await forward_loss_pattern(seed=1)
        other = await forward_loss_pattern(seed=2)
        assert first == sorted(first)  # loss alone never reorders
        assert 0.25 * 2000 < 2000 - len(first) < 0.35 * 2000
        assert first == again
        assert first != other

    run(scenario())


def _loss_runs(pattern: list[int], count: int) -> list[int]:
    """Lengths of the runs of consecutive indices missing from ``pattern``."""
    arrived = set(pattern)
    runs, current = [], 0
    for i in range(count):
        if i in arrived:
            if current:
                runs.append(current)
            current = 0
        else:
            current += 1
    return runs + ([current] if current else [])


def test_bursty_loss_keeps_the_mean_rate_in_longer_runs(run: Run) -> None:
    async def scenario() -> None:
        count = 4000
        patterns = {}
        for burst in (0.0, 4.0):
            target, client = await open_peer(), await open_peer()
            impairment = Impairment(loss=0.05, burst=burst)
            async with Relay(target.address, forward=impairment, seed=11) as relay:
                await send_paced(client, relay.address, numbered(count), relay.forward_stats)
                stats = relay.forward_stats
                await until(lambda t=target, st=stats: len(t.received) >= st.sent)  # type: ignore[misc]
                assert stats.dropped_loss + stats.sent == count
            patterns[burst] = [index(data) for data in target.data]
            target.close()
            client.close()
        for burst, pattern in patterns.items():
            runs = _loss_runs(pattern, count)
            lost = sum(runs)
            # 5 % of 4000 is 200; bursty runs of mean 4 make the count noisier.
            assert 100 < lost < 320, (burst, lost)
            mean_run = lost / len(runs)
            if burst:
                assert 2.5 < mean_run < 6, mean_run
            else:
                assert mean_run < 1.3, mean_run

    run(scenario())


def test_a_loss_spell_does_not_outlast_a_silent_sender() -> None:
    # The chain steps per datagram and per millisecond of silence: datagrams a microsecond
    # apart meet spells of `burst` datagrams, datagrams a second apart meet the average.
    import random

    imp = Impairment(loss=0.2, burst=20.0)

    def mean_run(gap: float) -> tuple[float, float]:
        direction = relay_module.Direction("forward", imp, random.Random(5), RelayStats())
        fates = [direction._lose(imp, i * gap) for i in range(20_000)]
        runs, current = [], 0
        for lost in fates:
            if lost:
                current += 1
            elif current:
                runs.append(current)
                current = 0
        return sum(fates) / len(fates), sum(runs) / len(runs)

    busy_share, busy_run = mean_run(1e-6)
    idle_share, idle_run = mean_run(1.0)
    assert 0.15 < busy_share < 0.25 and 15 < busy_run < 25
    assert 0.18 < idle_share < 0.22 and idle_run < 1.5  # 1 / (1 - 0.2) for independent losses


# --------------------------------------------------------------------------------------------
# Duplication, reordering, corruption


def test_duplication_sends_some_datagrams_twice(run: Run) -> None:
    async def scenario() -> None:
        target, client = await open_peer(), await open_peer()
        async with Relay(target.address, forward=Impairment(duplicate=0.5), seed=3) as relay:
            await send_paced(client, relay.address, numbered(300), relay.forward_stats)
            stats = relay.forward_stats
            await until(lambda: len(target.received) >= stats.sent)
            copies = Counter(target.data)
            assert set(copies) == set(numbered(300))
            assert set(copies.values()) == {1, 2}
            assert sum(1 for n in copies.values() if n == 2) == stats.duplicated
            assert 100 < stats.duplicated < 200
            assert stats.sent == 300 + stats.duplicated
        target.close()
        client.close()

    run(scenario())


def test_reordering_changes_order_but_loses_nothing(run: Run) -> None:
    async def scenario() -> None:
        target, client = await open_peer(), await open_peer()
        impairment = Impairment(reorder=0.2, reorder_delay=0.03)
        async with Relay(target.address, forward=impairment, seed=4) as relay:
            datagrams = numbered(300)
            await send_paced(client, relay.address, datagrams, relay.forward_stats)
            await until(lambda: len(target.received) >= len(datagrams))
            assert sorted(target.data) == datagrams
            assert target.data != datagrams
            assert 20 < relay.forward_stats.reordered < 100
        target.close()
        client.close()

    run(scenario())


def test_corruption_flips_exactly_one_bit(run: Run) -> None:
    async def scenario() -> None:
        target, client = await open_peer(), await open_peer()
        datagrams = [bytes([i % 256]) * 64 for i in range(300)]
        async with Relay(target.address, forward=Impairment(corrupt=0.5), seed=5) as relay:
            await send_paced(client, relay.address, datagrams, relay.forward_stats)
            await until(lambda: len(target.received) >= len(datagrams))
            flipped = [
                sum(bin(a ^ b).count("1") for a, b in zip(sent, got))
                for sent, got in zip(datagrams, target.data)
            ]
            assert set(flipped) == {0, 1}
            assert flipped.count(1) == relay.forward_stats.corrupted
            assert 100 < relay.forward_stats.corrupted < 200
            assert [len(d) for d in target.data] == [64] * 300
        target.close()
        client.close()

    run(scenario())


# --------------------------------------------------------------------------------------------
# Delay, MTU, rate and queue


def test_delay_adds_at_least_the_delay_each_way(run: Run) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        target, client = await open_peer(echo=True), await open_peer()
        forward = Impairment(delay=0.05, jitter=0.01)
        backward = Impairment(delay=0.03)
        async with Relay(target.address, forward=forward, backward=backward) as relay:
            sent_at = {}
            for data in numbered(20):
                sent_at[data] = loop.time()
                client.sendto(data, relay.address)
                await asyncio.sleep(0.002)
            await until(lambda: len(client.received) >= 20)
            for arrived, data, _ in target.received:
                assert arrived - sent_at[data] >= 0.05 - EPSILON
            for arrived, data, _ in client.received:
                assert arrived - sent_at[data] >= 0.08 - EPSILON
        target.close()
        client.close()

    run(scenario())


def test_mtu_drops_oversize_only(run: Run) -> None:
    async def scenario() -> None:
        target, client = await open_peer(), await open_peer()
        sizes = [1, 499, 500, 501, 1000, 1400, 200, 0]
        datagrams = [b"m" * size for size in sizes]
        async with Relay(target.address, forward=Impairment(mtu=500)) as relay:
            await send_paced(client, relay.address, datagrams, relay.forward_stats)
            await settle()
            assert [len(d) for d in target.data] == [1, 499, 500, 200, 0]
            assert relay.forward_stats.dropped_mtu == 3
        target.close()
        client.close()

    run(scenario())


def test_rate_limit_serialises_datagrams(run: Run) -> None:
    async def scenario() -> None:
        target, client = await open_peer(), await open_peer()
        datagrams = numbered(100, size=1000)
        async with Relay(target.address, forward=Impairment(rate=200_000)) as relay:
            times = await send_paced(client, relay.address, datagrams, relay.forward_stats)
            await until(lambda: len(target.received) >= 100)
            # 100 kB at 200 kB/s: the last byte cannot be through before ~0.5 s.
            assert target.received[-1][0] - times[0] >= 0.45
            assert target.data == datagrams
            assert relay.forward_stats.dropped_queue == 0
        target.close()
        client.close()

    run(scenario())


def test_queue_limit_drops_tail_and_close_cancels_pending(run: Run) -> None:
    async def scenario() -> None:
        target, client = await open_peer(), await open_peer()
        # 1000 bytes at 10 kB/s: 0.1 s per datagram, so the whole burst meets a busy link.
        impairment = Impairment(rate=10_000, queue_limit=5)
        relay = Relay(target.address, forward=impairment)
        await relay.start()
        await send_paced(client, relay.address, numbered(30, size=1000), relay.forward_stats)
        # One on the wire, five waiting, the rest dropped at the tail.
        assert 20 <= relay.forward_stats.dropped_queue <= 24
        assert relay.pending + relay.forward_stats.dropped_queue == 30
        await relay.close()
        await relay.close()  # idempotent
        assert relay.pending == 0
        await asyncio.sleep(0.15)  # the first datagram was due after 0.1 s
        assert target.received == []
        target.close()
        client.close()

    run(scenario())


# --------------------------------------------------------------------------------------------
# Directions, clients, records, live changes, errors


def test_directions_have_independent_impairments(run: Run) -> None:
    async def scenario() -> None:
        target, client = await open_peer(echo=True), await open_peer()
        async with Relay(target.address, backward=Impairment(loss=1.0)) as relay:
            await send_paced(client, relay.address, numbered(50), relay.forward_stats)
            await until(lambda: relay.backward_stats.received >= 50)
            await settle()
            assert len(target.received) == 50
            assert client.received == []
            assert relay.forward_stats.dropped_loss == 0
            assert relay.backward_stats.dropped_loss == 50
        target.close()
        client.close()

    run(scenario())


def test_directions_have_independent_random_streams(run: Run) -> None:
    async def scenario() -> None:
        quiet = await forward_loss_pattern(seed=7, count=600)
        noisy = await forward_loss_pattern(
            seed=7, count=600, backward=Impairment(loss=0.5, duplicate=0.3, corrupt=0.2)
        )
        assert quiet == noisy

    run(scenario())


def test_each_client_gets_its_own_upstream_address(run: Run) -> None:
    async def scenario() -> None:
        target = await open_peer(echo=True)
        alice, bob = await open_peer(), await open_peer()
        async with Relay(target.address) as relay:
            for i in range(5):
                alice.sendto(b"alice %d" % i, relay.address)
                bob.sendto(b"bob %d" % i, relay.address)
            await until(lambda: len(alice.received) == 5 and len(bob.received) == 5)
            sources = {data.split()[0]: set() for data in target.data}
            for _, data, addr in target.received:
                sources[data.split()[0]].add(addr)
            assert len(sources[b"alice"]) == len(sources[b"bob"]) == 1
            (alice_seen,) = sources[b"alice"]
            (bob_seen,) = sources[b"bob"]
            assert alice_seen != bob_seen
            assert relay.address not in (alice_seen, bob_seen)
            assert alice_seen[0] == bob_seen[0] == "127.0.0.1"
            assert relay.upstream_address(alice.address) == alice_seen
            assert sorted(relay.clients) == sorted([alice.address, bob.address])
            assert all(data.startswith(b"alice") for data in alice.data)
            assert all(data.startswith(b"bob") for data in bob.data)
        for peer in (target, alice, bob):
            peer.close()

    run(scenario())


def test_rebind_moves_a_client_to_a_new_upstream_port(run: Run) -> None:
    async def scenario() -> None:
        target = await open_peer(echo=True)
        client = await open_peer()
        async with Relay(target.address) as relay:
            client.sendto(b"before", relay.address)
            await until(lambda: len(client.received) == 1)
            old = relay.upstream_address(client.address)
            new = await relay.rebind(client.address)
            assert new is not None and new != old
            assert relay.upstream_address(client.address) == new
            client.sendto(b"after", relay.address)
            await until(lambda: len(client.received) == 2)
            assert [addr for _, _, addr in target.received] == [old, new]
            assert client.data == [b"before", b"after"]
            # What the target still sends to the old port reaches nobody.
            target.sendto(b"to the old mapping", old)
            target.sendto(b"to the new one", new)
            await until(lambda: len(client.received) == 3)
            assert client.data[-1] == b"to the new one"
        for peer in (target, client):
            peer.close()

    run(scenario())


def _ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback_works(), reason="no IPv6 loopback on this machine")
def test_ipv6_loopback_relay(run: Run) -> None:
    async def scenario() -> None:
        target, client = await open_peer(echo=True, host="::1"), await open_peer(host="::1")
        async with Relay(target.address) as relay:
            await relay.close()  # the context manager closes again: idempotent
        relay = Relay(target.address)
        host, _ = await relay.start("::1")
        assert host == "::1"
        await send_paced(client, relay.address, numbered(10), relay.forward_stats)
        await until(lambda: len(client.received) == 10)
        assert client.data == numbered(10)
        assert target.received[0][2][0] == "::1"
        assert target.received[0][2][:2] != relay.address
        await relay.close()
        target.close()
        client.close()

    run(scenario())


def test_records_capture_every_fate(run: Run) -> None:
    async def scenario() -> None:
        target, client = await open_peer(), await open_peer()
        seen: list[Record] = []
        impairment = Impairment(loss=0.3, duplicate=0.3, corrupt=0.3, mtu=100)
        datagrams = [bytes([i % 256]) * (50 if i % 4 else 150) for i in range(200)]
        async with Relay(
            target.address, forward=impairment, seed=8, record=True, on_record=seen.append
        ) as relay:
            await send_paced(client, relay.address, datagrams, relay.forward_stats)
            stats = relay.forward_stats
            await until(lambda: len(target.received) >= stats.sent)
            records = relay.records
        assert records == seen
        fates = Counter(record.fate for record in records)
        assert fates["dropped-mtu"] == stats.dropped_mtu == 50
        assert fates["dropped-loss"] == stats.dropped_loss > 0
        assert fates["duplicate"] == stats.duplicated > 0
        assert fates["sent"] + fates["duplicate"] == stats.sent
        assert set(fates) == {"sent", "duplicate", "dropped-loss", "dropped-mtu"}
        corrupted = [r for r in records if "corrupted" in r.flags and r.fate == "sent"]
        assert len(corrupted) == stats.corrupted > 0
        # Records hold the datagram as forwarded, in the order it left the relay.
        forwarded = [r.data for r in records if r.fate in ("sent", "duplicate")]
        assert forwarded == target.data
        assert all(r.direction == "forward" and r.client == client.address for r in records)
        assert [r.time for r in records] == sorted(r.time for r in records)
        target.close()
        client.close()

    run(scenario())


def test_set_impairment_changes_conditions_while_running(run: Run) -> None:
    async def scenario() -> None:
        target, client = await open_peer(), await open_peer()
        async with Relay(target.address, forward=Impairment(loss=1.0)) as relay:
            await send_paced(client, relay.address, numbered(20), relay.forward_stats)
            relay.set_impairment(forward=Impairment())
            assert relay.forward == Impairment()
            assert relay.backward == Impairment()
            await send_paced(client, relay.address, numbered(20), relay.forward_stats)
            await until(lambda: len(target.received) >= 20)
            await settle()
            assert target.data == numbered(20)
            assert relay.forward_stats.dropped_loss == 20
        target.close()
        client.close()

    run(scenario())


def test_send_errors_are_counted_and_survived(run: Run) -> None:
    async def scenario() -> None:
        # A target port with nothing behind it: ICMP port unreachable comes back.
        closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        closed.bind(("127.0.0.1", 0))
        dead_target = closed.getsockname()
        closed.close()
        client = await open_peer()
        async with Relay(dead_target) as relay:
            for _ in range(5):
                await send_paced(client, relay.address, numbered(10), relay.forward_stats)
                await asyncio.sleep(0.01)
            await until(lambda: relay.forward_stats.errors > 0)
            assert relay.forward_stats.received == 50
        client.close()

    run(scenario())


# --------------------------------------------------------------------------------------------
# Impairment.parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Impairment()),
        ("loss=0.05", Impairment(loss=0.05)),
        ("loss=5%", Impairment(loss=0.05)),
        ("drop=0.5", Impairment(loss=0.5)),
        ("dup=0.02", Impairment(duplicate=0.02)),
        ("duplicate=0.02", Impairment(duplicate=0.02)),
        ("reorder=0.1,reorder-delay=20ms", Impairment(reorder=0.1, reorder_delay=0.02)),
        ("reorder_delay=0.5s", Impairment(reorder_delay=0.5)),
        ("delay=10ms", Impairment(delay=0.01)),
        ("delay=250us", Impairment(delay=0.00025)),
        ("delay=1.5s", Impairment(delay=1.5)),
        ("delay=0.2s", Impairment(delay=0.2)),
        ("delay=0", Impairment()),
        ("jitter=5ms", Impairment(jitter=0.005)),
        ("corrupt=0.01", Impairment(corrupt=0.01)),
        ("rate=10mbit", Impairment(rate=1_250_000)),
        ("rate=800kbit", Impairment(rate=100_000)),
        ("rate=1gbit", Impairment(rate=125_000_000)),
        ("rate=64bit", Impairment(rate=8)),
        ("rate=200kb", Impairment(rate=200_000)),
        ("rate=2mb/s", Impairment(rate=2_000_000)),
        ("rate=1gb", Impairment(rate=1e9)),
        ("rate=512b", Impairment(rate=512)),
        ("rate=none", Impairment()),
        ("queue=50", Impairment(queue_limit=50)),
        ("queue_limit=7", Impairment(queue_limit=7)),
        ("mtu=1200", Impairment(mtu=1200)),
        ("LOSS=0.1 Delay=5MS", Impairment(loss=0.1, delay=0.005)),
        ("loss=0.1,loss=0.2", Impairment(loss=0.2)),
        (" loss=0.1 , ", Impairment(loss=0.1)),
        ("loss=1%,burst=4", Impairment(loss=0.01, burst=4.0)),
        (
            "loss=0.05,dup=0.02,reorder=0.05,corrupt=0.01,delay=10ms,jitter=5ms,rate=10mbit,mtu=1200",
            Impairment(
                loss=0.05,
                duplicate=0.02,
                reorder=0.05,
                corrupt=0.01,
                delay=0.01,
                jitter=0.005,
                rate=1_250_000,
                mtu=1200,
            ),
        ),
    ],
)
def test_parse_accepts_names_and_units(text: str, expected: Impairment) -> None:
    parsed = Impairment.parse(text)
    names = ("loss", "burst", "duplicate", "reorder", "reorder_delay", "delay", "jitter", "corrupt")
    for name in names:
        assert getattr(parsed, name) == pytest.approx(getattr(expected, name)), name
    assert parsed.rate == pytest.approx(expected.rate)
    assert (parsed.queue_limit, parsed.mtu) == (expected.queue_limit, expected.mtu)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loss", "key=value"),
        ("loss=", "key=value"),
        ("=0.1", "key=value"),
        ("bogus=1", "unknown impairment parameter 'bogus'"),
        ("loss=1.5", "probability"),
        ("loss=-0.1", "probability"),
        ("loss=150%", "probability"),
        ("loss=abc", "not a number"),
        ("loss=nan", "finite"),
        ("delay=-5ms", "not a time"),
        ("delay=10", "'10' needs a unit"),  # never silently ten seconds
        ("jitter=0.5", "needs a unit"),
        ("rate=512", "needs a unit"),
        ("delay=5parsecs", "unknown unit"),
        ("delay=inf", "not a time"),
        ("rate=10mbitz", "unknown unit"),
        ("rate=0", "positive"),
        ("rate=fast", "not a rate"),
        ("mtu=12.5", "integer"),
        ("queue=-1", "integer"),
        ("burst=0.5", "burst must be"),
    ],
)
def test_parse_rejects_nonsense_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Impairment.parse(text)


def test_address_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = Relay(("127.0.0.1", 9)).address


def test_constructor_validates() -> None:
    for bad in (
        {"loss": 2.0},
        {"delay": -1.0},
        {"rate": 0.0},
        {"queue_limit": -1},
        {"mtu": -5},
        {"loss": 0.1, "burst": 0.5},
        {"loss": 1.0, "burst": 3.0},
    ):
        with pytest.raises(ValueError):
            Impairment(**bad)


# --------------------------------------------------------------------------------------------
# Command line and module hygiene


@pytest.mark.parametrize("loop_flag", [[], ["--uvloop"]], ids=["asyncio", "uvloop"])
def test_cli_runs_for_duration_and_prints_stats(
    loop_flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    if loop_flag and uvloop is None:
        pytest.skip("uvloop not installed")
    argv = [
        "--listen",
        "127.0.0.1:0",
        "--target",
        "127.0.0.1:9",
        "--forward",
        "loss=0.05",
        "--backward",
        "loss=0.05",
        "--both",
        "delay=1ms",
        "--seed",
        "1",
        "--stats-every",
        "0.2",
        "--duration",
        "0.5",
        *loop_flag,
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "forward[loss=0.05,delay=0.001]" in out
    assert out.count("s] forward:") >= 2  # periodic reports at 0.2 s and 0.4 s
    assert out.count("s] backward:") >= 2
    assert "[final] forward:" in out
    assert "[final] backward:" in out


def test_cli_rejects_bad_impairment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["--target", "127.0.0.1:9", "--forward", "loss=2"])
    assert excinfo.value.code == 2
    assert "probability" in capsys.readouterr().err


def test_cli_help_names_the_program_and_shows_percentages(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/udptcp-relay"])
    with pytest.raises(SystemExit) as excinfo:
        main(["--help"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: udptcp-relay ")
    assert "loss=5%," in out and "%%" not in out
    assert "Times need a unit" in " ".join(out.split())


def test_cli_reports_an_unresolvable_target_as_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["--target", "no-such-host.invalid:9000", "--duration", "0.1"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "cannot resolve --target host 'no-such-host.invalid'" in err
    assert "Traceback" not in err


def test_cli_reports_a_busy_listen_address_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        code = main(["--listen", f"127.0.0.1:{port}", "--target", "127.0.0.1:9"])
    assert code == 1
    err = capsys.readouterr().err
    assert "error:" in err and "in use" in err and "Traceback" not in err


def test_module_runs_as_a_script() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "udptcp.tools.relay",
            "--target",
            "127.0.0.1:9",
            "--duration",
            "0.1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "forward:" in result.stdout


def test_relay_imports_nothing_from_core_or_aio() -> None:
    tree = ast.parse(Path(relay_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not [name for name in imported if "core" in name or "aio" in name.replace("asyncio", "")]
