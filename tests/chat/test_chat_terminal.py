"""The real terminal client on a pseudo-terminal: incoming lines never tear a half-typed one.

The client runs as a subprocess (``python -m examples.chat client``) on a pty; what it
writes is replayed on a small VT100 screen (``chat_screen``) and read back as a user would
see it. prompt_toolkit's ``patch_stdout`` must print each incoming message above the prompt
and redraw the prompt with the half-typed text, which must still be there, intact, to finish.
"""

from __future__ import annotations

import asyncio
import codecs
import fcntl
import os
import struct
import sys
import termios
from collections.abc import Callable
from pathlib import Path

import pytest
from chat_helpers import Person, chat_server, people
from chat_screen import Screen

pytest.importorskip("prompt_toolkit")

ROOT = Path(__file__).resolve().parents[2]
ROWS, COLS = 24, 100


class Terminal:
    """A child process on a pseudo-terminal, its output replayed on a :class:`Screen`."""

    def __init__(self, master: int, proc: asyncio.subprocess.Process) -> None:
        self.master = master
        self.proc = proc
        self.screen = Screen(ROWS, COLS)
        self.output = ""
        self.eof = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._readable)

    @classmethod
    async def spawn(cls, *args: str) -> Terminal:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", PYTHONUNBUFFERED="1")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=ROOT,
                env=env,
                start_new_session=True,  # the pty becomes its controlling terminal
            )
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        return cls(master, proc)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the child closed the terminal
            data = b""
        if not data:
            self.eof = True
            asyncio.get_running_loop().remove_reader(self.master)
        else:
            text = self._decoder.decode(data)
            self.output += text
            self.screen.feed(text)
        self._changed.set()

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    async def until(
        self, predicate: Callable[[], object], what: str, timeout: float = 10.0
    ) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"no {what} within {timeout} s; screen:\n{self.screen.text()}\n"
                f"cursor line: {self.screen.cursor_line!r}"
            ) from None

    async def prompt(self, buffer: str = "") -> None:
        """Wait until the cursor's line is the prompt with ``buffer`` typed."""
        expected = f"[#lobby] carol> {buffer}".rstrip()
        await self.until(lambda: self.screen.cursor_line == expected, f"prompt {expected!r}")

    def rows_with(self, text: str) -> list[int]:
        return [i for i, line in enumerate(self.screen.lines()) if text in line]

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.master)
        os.close(self.master)


async def test_incoming_lines_print_above_a_half_typed_line_which_stays_intact(
    request: pytest.FixtureRequest,
) -> None:
    loop_name = "uvloop" if "uvloop" in request.node.name else "asyncio"
    async with chat_server() as server:
        port = server.address[1]
        bob = Person("bob", port)
        async with people(bob):
            await bob.registered()
            term = await Terminal.spawn(
                "-m", "examples.chat", "client", "--port", str(port), "--nick", "carol",
                "--loop", loop_name, "--backoff", "0.05", "--backoff-max", "0.2", "--ping", "0",
            )  # fmt: skip
            try:
                await bob.expect("JOIN", "lobby", "carol")
                await term.prompt()

                term.type("half a li")
                await term.prompt("half a li")
                await bob.say("incoming from bob")
                message = "[#lobby] <bob> incoming from bob"
                await term.until(lambda: term.rows_with(message), "bob's message on screen")
                await term.prompt("half a li")  # redrawn after the message
                (message_row,) = term.rows_with(message)
                assert term.screen.lines()[message_row] == message  # not torn by the prompt
                assert term.rows_with("half a li") == [term.screen.row]  # drawn once, below it
                assert message_row < term.screen.row
                assert term.output.rindex("half a li") > term.output.rindex("incoming from bob")

                term.type("ne\r")  # finish the line: what was typed is what is sent
                await bob.expect("MSG", "lobby", "carol", text="half a line")
                await term.until(lambda: term.rows_with("[#lobby] <carol> half a line"), "echo")
                await term.prompt()

                # The server goes away and comes back; the client says so and reconnects, and
                # a line half-typed meanwhile survives that too.
                term.type("still typ")
                await term.prompt("still typ")
                await server.close()
                await term.until(
                    lambda: "connection refused by 127.0.0.1:" in term.output, "refused message"
                )
                assert (
                    "! disconnected: the server said goodbye: server shutting down" in term.output
                )
                await server.start("127.0.0.1", port)
                await bob.registered(2)
                await term.until(
                    lambda: term.output.count("* you are carol") == 2, "re-registration"
                )
                await term.prompt("still typ")
                term.type("ing\r")
                await bob.expect("MSG", "lobby", "carol", text="still typing")

                term.type("/quit\r")
                await bob.expect("LEAVE", "lobby", "carol", text="quit")
                assert await asyncio.wait_for(term.proc.wait(), 10) == 0
            finally:
                await term.close()


async def test_the_terminal_client_names_the_other_transport_and_exits(
    request: pytest.FixtureRequest,
) -> None:
    loop_name = "uvloop" if "uvloop" in request.node.name else "asyncio"
    async with chat_server() as server:  # udptcp
        port = server.address[1]
        term = await Terminal.spawn(
            "-m", "examples.chat", "client", "--port", str(port), "--nick", "carol",
            "--transport", "tcp", "--loop", loop_name,
        )  # fmt: skip
        try:
            await term.until(
                lambda: "is a udptcp (TCP over UDP) server" in term.screen.text(),
                "the transport mismatch explained",
            )
            assert await asyncio.wait_for(term.proc.wait(), 10) == 1
        finally:
            await term.close()
