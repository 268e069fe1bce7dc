"""A whole conversation through the real server and clients, over udptcp on both loops.

Three people join, talk in a room, whisper, list the room, live through a server restart
(the clients reconnect and rejoin by themselves) and leave. The same script runs over
plain TCP (the chat is transport-agnostic) and through the impairment relay with loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from chat_helpers import FAST, Person, people, until

from examples.chat.net import Transport
from examples.chat.server import ChatServer
from udptcp.tools.relay import Impairment, Relay

#: Client ping interval and server idle timeout for the lossy run.
PING = 0.5
IDLE_TIMEOUT = 1.5


@contextlib.asynccontextmanager
async def front(port: int, lossy: bool) -> AsyncIterator[int]:
    """The port clients use: the server's, or a lossy relay's in front of it."""
    if not lossy:
        yield port
        return
    lossy_link = Impairment(loss=0.05, delay=0.002, jitter=0.001)
    async with Relay(("127.0.0.1", port), forward=lossy_link, backward=lossy_link, seed=7) as relay:
        yield relay.address[1]
        stats = (relay.forward_stats, relay.backward_stats)
    assert sum(s.dropped_loss for s in stats) > 0, "the relay lost nothing: not a lossy test"


async def start(transport: Transport, port: int = 0, lossy: bool = False) -> ChatServer:
    # Through loss, a client's RST can be lost like any segment (and is never retransmitted):
    # the server then notices the dead client only by its silence, so clients ping.
    server = ChatServer(
        transport=transport,
        config=FAST if transport == "udptcp" else None,
        idle_timeout=IDLE_TIMEOUT if lossy else None,
        close_grace=0.5,
    )
    await server.start("127.0.0.1", port)
    return server


@pytest.mark.parametrize(
    ("transport", "lossy"),
    [("udptcp", False), ("udptcp", True), ("tcp", False)],
    ids=["udptcp", "udptcp-lossy-relay", "tcp"],
)
async def test_three_people_chat_survive_a_server_restart_and_leave(
    transport: Transport, lossy: bool
) -> None:
    server = await start(transport, lossy=lossy)
    port = server.address[1]
    try:
        async with front(port, lossy) as client_port:
            alice, bob, carol = (
                Person(n, client_port, transport=transport, ping_interval=PING if lossy else None)
                for n in ("alice", "bob", "carol")
            )
            async with people(alice, bob, carol, start=False):
                await conversation(server, transport, lossy, alice, bob, carol)
                server = await restart(server, transport, lossy, alice, bob, carol)
                await after_restart(server, lossy, alice, bob, carol)
    finally:
        await server.close()
    assert server.sessions == []


async def conversation(
    server: ChatServer, transport: Transport, lossy: bool, alice: Person, bob: Person, carol: Person
) -> None:
    everyone = (alice, bob, carol)
    # One at a time, so the join notices have a known order.
    for i, person in enumerate(everyone):
        person.client.start()
        await person.registered()
        for earlier in everyone[: i + 1]:
            await earlier.expect("JOIN", "lobby", person.client.nick)
    assert alice.client.rooms == ["lobby"] and alice.client.current == "lobby"

    for i, person in enumerate(everyone):
        await person.say("/join #Dev")
        for earlier in everyone[: i + 1]:
            await earlier.expect("JOIN", "dev", person.client.nick)
        await person.expect("CURRENT", "dev")
    assert carol.client.rooms == ["lobby", "dev"]

    await alice.say("hello, dev room")
    await bob.say("hi alice")
    for person in everyone:
        await person.expect("MSG", "dev", "alice", text="hello, dev room")
        await person.expect("MSG", "dev", "bob", text="hi alice")
    assert all(p.count("MSG", "lobby") == 0 for p in everyone)  # said in dev only

    # A private message reaches its target (and the sender's echo), nobody else.
    await alice.say("/msg carol the cake is in the fridge")
    await carol.expect("PRIV", "alice", "carol", text="the cake is in the fridge")
    await alice.expect("PRIV", "alice", "carol", text="the cake is in the fridge")
    await bob.barrier("after-the-whisper")  # bob's lines before the PONG are all in
    assert bob.count("PRIV") == 0

    await bob.say("/users")
    await bob.expect("USERS", "dev", text="alice bob carol")
    await bob.say("/rooms")
    await bob.expect("ROOMS", text="dev:3 lobby:3")


async def restart(
    server: ChatServer, transport: Transport, lossy: bool, alice: Person, bob: Person, carol: Person
) -> ChatServer:
    """Stop the server and start a new one on the same port; everyone comes back."""
    everyone = (alice, bob, carol)
    port = server.address[1]
    await server.close()
    for person in everyone:
        await person.expect("BYE", text="server shutting down")
        await person.status("disconnected: the server said goodbye: server shutting down")
    if not lossy:
        # Straight to the closed port, reconnection attempts are refused (over udptcp the
        # ICMP port unreachable becomes ConnectionRefusedError), and the client says so.
        for person in everyone:
            await person.status("connection refused by 127.0.0.1:")
    # The new server binds the very same port: the old one left nothing in TIME-WAIT.
    server = await start(transport, port, lossy)
    for person in everyone:
        await person.registered(2)
    return server


async def after_restart(
    server: ChatServer, lossy: bool, alice: Person, bob: Person, carol: Person
) -> None:
    everyone = (alice, bob, carol)
    # The clients re-sent /nick and /join: same names, same rooms, dev current again.
    for person in everyone:
        await person.in_rooms("lobby", "dev")
    await carol.say("/users dev")
    await carol.expect("USERS", "dev", text="alice bob carol")
    await carol.say("anyone still here?")
    for person in everyone:
        await person.expect("MSG", "dev", "carol", text="anyone still here?")

    # Leaving: a /leave, a /quit, and a connection that just drops.
    await carol.say("/leave")
    for person in everyone:
        await person.expect("LEAVE", "dev", "carol", text="left")
    await carol.expect("CURRENT", "lobby")
    await bob.client.quit("gotta go")
    for person in (alice, carol):
        await person.expect("LEAVE", "lobby", "bob", text="quit: gotta go")
    await alice.expect("LEAVE", "dev", "bob", text="quit: gotta go")
    await carol.client.close()  # no /quit: the connection is reset
    gone = await alice.expect("LEAVE", "lobby", "carol")
    assert gone.text == "disconnected" or (lossy and gone.text == "idle"), gone
    await alice.say("/users lobby")
    await alice.expect("USERS", "lobby", text="alice")
    await alice.client.quit()
    await alice.expect("BYE", text="bye")
    await until(lambda: not server.sessions, "the server to let go of every connection")
