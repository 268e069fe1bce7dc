"""The client's connection handling: clear messages, backoff, pings, coming back as before."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest
from chat_helpers import FAST, Person, Raw, chat_server, people

import udptcp
from examples.chat.client import Backoff
from examples.chat.net import Transport


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0, factor=2.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.delay(10_000) == 4.0
    jittery = Backoff(initial=1.0, maximum=8.0, jitter=0.1)
    rng = random.Random(1)
    assert all(0.9 <= jittery.delay(0, rng) <= 1.1 for _ in range(100))


@pytest.mark.parametrize("transport", ["udptcp", "tcp"])
async def test_a_refused_connection_says_so_and_is_retried(transport: Transport) -> None:
    kind = socket.SOCK_DGRAM if transport == "udptcp" else socket.SOCK_STREAM
    port = free_port(kind)
    nobody = Person("alice", port, transport=transport)
    async with people(nobody):
        await nobody.status(f"connection refused by 127.0.0.1:{port} (is the server running?)")
        await nobody.status("reconnecting in 0.1 s")
        await nobody.status("reconnecting in 0.2 s")  # 0.05, 0.1, 0.2: exponential
        await nobody.until(lambda: nobody.statuses.count("reconnecting in 0.2 s") >= 2, "cap")
        assert not nobody.client.connected


async def test_an_unanswered_connection_times_out_with_a_clear_message() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:  # takes SYNs, says nothing
        sink.bind(("127.0.0.1", 0))
        port = sink.getsockname()[1]
        silent = Person("alice", port, connect_timeout=0.3)
        async with people(silent):
            await silent.status(f"no answer from 127.0.0.1:{port} within 0.3 s (timed out)")
            await silent.status("reconnecting in")


async def test_a_server_that_stops_answering_is_detected_by_ping_and_left() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):  # accepts, listens, never answers
            pass

    server = await udptcp.start_server(mute, "127.0.0.1", 0, config=FAST)
    async with server:
        port = server.sockets[0].getsockname()[1]
        alice = Person("alice", port, ping_interval=0.1)
        async with people(alice):
            await alice.status("connected to")
            await alice.status("disconnected: no reply from the server for 0.1 s")
            await alice.until(
                lambda: alice.statuses.count(f"connected to 127.0.0.1:{port} over udptcp") >= 2,
                "a new connection",
            )
        server.close()
        server.abort_clients()


async def test_rooms_and_current_room_come_back_exactly_after_a_restart() -> None:
    async with chat_server() as server:
        port = server.address[1]
        alice = Person("alice", port, rooms=("ops",))
        async with people(alice):
            await alice.registered()
            await alice.expect("CURRENT", "ops")
            assert alice.client.rooms == ["lobby", "ops"]
            await alice.say("/join dev")
            await alice.say("/leave lobby")
            await alice.say("/join ops")  # back to ops as the current room
            await alice.in_rooms("dev", "ops")
            await server.close()
            await server.start("127.0.0.1", port)
            await alice.registered(2)
            await alice.barrier("rejoined")  # the /join and /leave answers are in
            assert alice.client.rooms == ["dev", "ops"]
            await alice.say("/users lobby")
            await alice.expect("ERR", "no-such-room")


async def test_a_nickname_taken_while_away_is_replaced_by_a_variant() -> None:
    async with chat_server() as server:
        port = server.address[1]
        alice = Person("alice", port, backoff=Backoff(initial=60.0, jitter=0.0))
        async with people(alice):
            await alice.registered()
            await server.close()
            await alice.status("reconnecting in 30.0 s")  # capped at Backoff.maximum
            await server.start("127.0.0.1", port)
            impostor = await Raw.connect(port)  # takes the name while alice is away
            await impostor.register("Alice")
            alice.client.retry_now()
            await alice.registered(2)
            assert alice.client.nick == "alice_"
            await alice.status("nickname taken; trying alice_")
            impostor.writer.close()


async def test_a_udptcp_client_says_the_server_speaks_kernel_tcp_and_stops() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)  # kernel TCP
    port = server.sockets[0].getsockname()[1]
    alice = Person("alice", port, transport="udptcp")
    try:
        async with people(alice):
            await alice.status(
                f"127.0.0.1:{port} is a kernel TCP server, and this client speaks udptcp (TCP"
                " over UDP): run the client with --transport tcp (or the server with"
                " --transport udptcp)"
            )
            task = alice.client.start()
            await asyncio.wait_for(task, 10)  # it stopped trying by itself
            assert alice.client.failure is not None
            assert not any(s.startswith("reconnecting") for s in alice.statuses)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_tcp_client_says_the_server_speaks_udptcp_and_stops() -> None:
    async with chat_server() as server:
        port = server.address[1]
        bob = Person("bob", port, transport="tcp")
        async with people(bob):
            await bob.status(
                f"127.0.0.1:{port} is a udptcp (TCP over UDP) server, and this client speaks"
                " kernel TCP: run the client with --transport udptcp (or the server with"
                " --transport tcp)"
            )
            await asyncio.wait_for(bob.client.start(), 10)
            assert not any(s.startswith("reconnecting") for s in bob.statuses)
