"""``python -m examples.chat``: the server behind a lossy relay, and the plain client."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import pytest
from chat_helpers import Person, chat_server, people

ROOT = Path(__file__).resolve().parents[2]


def loop_name(request: pytest.FixtureRequest) -> str:
    return "uvloop" if "uvloop" in request.node.name else "asyncio"


async def run(*args: str, stdin: int | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.chat",
        *args,
        cwd=ROOT,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def read_until(proc: asyncio.subprocess.Process, pattern: str) -> re.Match[str]:
    """Read the child's output line by line until one matches ``pattern``."""
    assert proc.stdout is not None
    seen: list[str] = []
    while True:
        raw = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert raw, f"EOF before {pattern!r}; output: {seen}"
        line = raw.decode().rstrip("\n")
        seen.append(line)
        if match := re.search(pattern, line):
            return match


async def test_server_command_runs_behind_a_lossy_relay_and_stops_on_sigint(
    request: pytest.FixtureRequest,
) -> None:
    proc = await run(
        "server", "--port", "0", "--relay", "loss=0.05,delay=1ms", "--loop", loop_name(request)
    )
    try:
        await read_until(proc, r"chat server on 127\.0\.0\.1:\d+ over udptcp")
        relay = await read_until(proc, r"relay \(loss=0\.05,delay=0\.001\) on 127\.0\.0\.1:(\d+)")
        alice = Person("alice", int(relay.group(1)))
        async with people(alice):
            await alice.registered()
            await alice.say("through the relay")
            await alice.expect("MSG", "lobby", "alice", text="through the relay")
            proc.send_signal(signal.SIGINT)
            await alice.expect("BYE", text="server shutting down")
            assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_plain_client_reads_commands_from_a_pipe(request: pytest.FixtureRequest) -> None:
    async with chat_server() as server:
        port = server.address[1]
        bob = Person("bob", port)
        async with people(bob):
            await bob.registered()
            proc = await run(
                "client", "--port", str(port), "--nick", "carol", "--plain",
                "--loop", loop_name(request), stdin=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert proc.stdin is not None
            proc.stdin.write(b"/users\nhi bob\n/msg bob psst\n/quit bye all\n")
            await proc.stdin.drain()
            proc.stdin.close()
            await read_until(proc, r"^\* in #lobby: bob, carol$")
            await bob.expect("MSG", "lobby", "carol", text="hi bob")
            await bob.expect("PRIV", "carol", "bob", text="psst")
            await read_until(proc, r"^-> \*bob\* psst$")
            await bob.expect("LEAVE", "lobby", "carol", text="quit: bye all")
            assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_plain_client_gives_up_once_stdin_is_closed_and_no_server_answers(
    request: pytest.FixtureRequest,
) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once this block ends: nobody answers there
    proc = await run(
        "client", "--port", str(port), "--nick", "dave", "--plain", "--eof-timeout", "0.5",
        "--backoff", "0.05", "--loop", loop_name(request), stdin=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"is anyone there?\n")
        await proc.stdin.drain()
        proc.stdin.close()
        await read_until(
            proc,
            rf"^! standard input is closed and the lines left could not be sent to"
            rf" 127\.0\.0\.1:{port} within 0\.5 s: giving up \(last: .*refused",
        )
        assert await asyncio.wait_for(proc.wait(), 10) == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_plain_tcp_client_against_a_udptcp_server_says_so_and_exits(
    request: pytest.FixtureRequest,
) -> None:
    async with chat_server() as server:
        port = server.address[1]
        proc = await run(
            "client", "--port", str(port), "--nick", "erin", "--plain", "--transport", "tcp",
            "--loop", loop_name(request), stdin=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await read_until(
                proc,
                rf"^! 127\.0\.0\.1:{port} is a udptcp \(TCP over UDP\) server, and this client"
                r" speaks kernel TCP: run the client with --transport udptcp",
            )
            assert await asyncio.wait_for(proc.wait(), 10) == 1
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
