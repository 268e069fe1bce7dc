"""The server under bad input, abrupt and slow clients: an error line or a notice, never a crash."""

from __future__ import annotations

import asyncio

import pytest
from chat_helpers import FAST, Person, Raw, chat_server, people, until

from examples.chat.protocol import MAX_LINE, ServerLine


async def test_bad_input_gets_error_lines_and_the_session_carries_on() -> None:
    async with chat_server() as server:
        raw = await Raw.connect(server.address[1])
        assert (await raw.line()) == ServerLine(
            "WELCOME", ("udptcp-chat",), "choose a nickname with /nick NAME"
        )
        raw.write(
            b"hello before a nick\n"
            b"/join dev\n"
            b"/nick\n"
            b"/nick 9lives\n"
            b"/nick much_too_long_a_nickname\n"
            b"/nick ok\n"
            b"/frobnicate\n"
            b"\xff\xfe not utf-8\n" + b"x" * (2 * MAX_LINE) + b"\n"
            b"/msg nobody hi\n"
            b"/msg\n"
            b"/join two words\n"
            b"/join !!\n"
            b"/leave nowhere\n"
            b"/users nowhere\n"
            b"/rooms extra\n"
            b"\r\n"
            b"   \n"
            b"hi \x1b[31mred\x1b[0m\x07 there\tfriend\r\n"
            b"/ping end\n"
        )
        got = [(line.kind, *line.fields) for line in await raw.until("PONG")]
        assert got == [
            ("ERR", "no-nick"),
            ("ERR", "no-nick"),
            ("ERR", "bad-nick"),
            ("ERR", "bad-nick"),
            ("ERR", "bad-nick"),
            ("NICK", "ok"),
            ("JOIN", "lobby", "ok"),
            ("CURRENT", "lobby"),
            ("ERR", "unknown-command"),
            ("ERR", "bad-encoding"),
            ("ERR", "too-long"),
            ("ERR", "no-such-user"),
            ("ERR", "bad-args"),
            ("ERR", "bad-args"),
            ("ERR", "bad-room"),
            ("ERR", "not-in-room"),
            ("ERR", "no-such-room"),
            ("ERR", "bad-args"),
            ("MSG", "lobby", "ok"),
            ("PONG",),
        ]
        raw.write(b"/quit\n")
        assert [line.kind for line in await raw.until("BYE")] == ["BYE"]
        raw.writer.close()
        assert await raw.eof() == []
        await until(lambda: not server.sessions, "session cleanup")


async def test_control_characters_never_reach_another_screen() -> None:
    async with chat_server() as server:
        raw = await Raw.connect(server.address[1])
        await raw.register("ok")
        # ESC (C0), CSI (C1, U+009B), BEL, and a tab that becomes a space.
        raw.write("hi \x1b[31mred\x1b[0m\x07 there\tfriend \x9b2J\r\n".encode())
        (msg,) = [line for line in await raw.until("MSG") if line.kind == "MSG"]
        assert msg == ServerLine("MSG", ("lobby", "ok"), "hi [31mred[0m there friend 2J")
        raw.writer.close()


async def test_nicknames_are_unique_ignoring_case_and_renames_are_announced() -> None:
    async with chat_server() as server:
        port = server.address[1]
        alice, bob = Person("alice", port), Person("bob", port)
        async with people(alice, bob):
            await alice.registered()
            await bob.registered()
            await bob.say("/nick ALICE")
            await bob.expect("ERR", "nick-taken", text="ALICE is taken")
            await bob.say("/nick robert")
            await bob.expect("NICK", "robert")
            await alice.expect("RENAME", "bob", "robert")
            assert bob.client.nick == "robert"
            await alice.say("/users")
            await alice.expect("USERS", "lobby", text="alice robert")


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_a_client_leaving_in_the_middle_of_a_line_is_removed_with_a_notice(how: str) -> None:
    async with chat_server() as server:
        port = server.address[1]
        bob = Person("bob", port)
        async with people(bob):
            await bob.registered()
            dave = await Raw.connect(port)
            await dave.register("dave")
            await bob.expect("JOIN", "lobby", "dave")
            dave.write(b"half a li")
            await dave.writer.drain()
            if how == "close":
                dave.writer.close()  # FIN after the partial line
            else:
                dave.writer.transport.abort()  # RST
            await bob.expect("LEAVE", "lobby", "dave", text="disconnected")
            await bob.barrier("after-dave")
            assert bob.count("MSG") == 0  # the partial line was not said
            await until(lambda: len(server.sessions) == 1, "dave's session cleanup")


async def test_a_client_that_stops_reading_is_dropped_and_does_not_stall_the_others() -> None:
    async with chat_server(queue_limit=8 * 1024) as server:
        port = server.address[1]
        alice, bob = Person("alice", port), Person("bob", port)
        async with people(alice, bob):
            await alice.registered()
            await bob.registered()
            # A receive buffer of 64 KiB, so its window closes soon after it stops reading.
            slow = await Raw.connect(port, config=FAST.replace(receive_buffer=65535))
            await slow.register("slow")
            await alice.expect("JOIN", "lobby", "slow")
            transport = slow.writer.transport
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()  # its receive window closes

            text = "y" * 500
            count = 400  # 200 KB: more than slow's window, send buffer and queue together
            for i in range(count):
                await alice.say(f"{i} {text}")
            for person in (alice, bob):
                await person.expect("MSG", "lobby", "alice", text=f"{count - 1} {text}")
                await person.expect("LEAVE", "lobby", "slow", text="dropped: too slow")
            assert bob.count("MSG", "lobby", "alice") == count  # nothing lost, nothing stuck
            assert [s.nick for s in server.sessions] in (["alice", "bob"], ["bob", "alice"])
            slow.writer.transport.abort()


async def test_an_idle_client_is_told_and_disconnected() -> None:
    async with chat_server(idle_timeout=0.2) as server:
        raw = await Raw.connect(server.address[1])
        await raw.register("sleepy")
        lines = await raw.until("BYE")
        assert lines[-1] == ServerLine("BYE", (), "idle for 0.2 s")
        raw.writer.close()
        assert await raw.eof() == []
        await until(lambda: not server.sessions, "session cleanup")


async def test_quit_is_answered_with_bye_and_the_server_closes_if_the_client_does_not() -> None:
    async with chat_server(close_grace=0.2) as server:
        raw = await Raw.connect(server.address[1])
        await raw.register("netcat")
        raw.write(b"/quit see you\n")
        assert (await raw.until("BYE"))[-1] == ServerLine("BYE", (), "bye")
        assert await raw.eof() == []  # the server closed after its grace period
        await until(lambda: not server.sessions, "session cleanup")


async def test_shutdown_resets_clients_that_do_not_close() -> None:
    server_port = 0
    async with chat_server(close_grace=0.2) as server:
        server_port = server.address[1]
        raw = await Raw.connect(server_port)
        await raw.register("stubborn")
        closing = asyncio.ensure_future(server.close())
        assert (await raw.until("BYE"))[-1] == ServerLine("BYE", (), "server shutting down")
        with pytest.raises(ConnectionResetError):
            await raw.eof()
        await asyncio.wait_for(closing, 5)
    # Nothing is left in TIME-WAIT on the server side: the port is free at once.
    async with chat_server(port=server_port) as again:
        assert again.address[1] == server_port
