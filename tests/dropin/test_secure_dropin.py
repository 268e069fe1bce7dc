"""Secure mode on the drop-in loop: its ``config=`` and the keywords on the loop's methods."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

import udptcp

T = TypeVar("T")
SERVER = udptcp.Identity.generate()
CLIENT = udptcp.Identity.generate()


def run(body: Callable[[], Awaitable[T]], **factory_kw: Any) -> T:
    factory = udptcp.loop_factory(**factory_kw)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(body())  # type: ignore[arg-type]
    loop = factory()
    try:
        return loop.run_until_complete(body())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.read(100))
    await writer.drain()
    writer.close()


@pytest.mark.parametrize("base", [None, "uvloop"], ids=["asyncio", "uvloop"])
def test_the_loops_config_makes_unmodified_code_secure(base: str | None) -> None:
    async def body() -> tuple[object, bytes]:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"over the drop-in loop")
        reply = await reader.read(100)
        info = writer.get_extra_info("secure")
        writer.close()
        server.close()
        return info, reply

    config = udptcp.Config(identity=SERVER, peer_key=SERVER.public_key)
    info, reply = run(body, base=base, config=config)
    assert info == ("IK", "ChaCha20-Poly1305")
    assert reply == b"over the drop-in loop"


@pytest.mark.parametrize("base", [None, "uvloop"], ids=["asyncio", "uvloop"])
def test_the_loops_methods_take_the_secure_keywords(base: str | None) -> None:
    async def body() -> tuple[object, object]:
        loop = asyncio.get_running_loop()
        seen: list[asyncio.BaseTransport] = []

        class Keep(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                seen.append(transport)

        server = await loop.create_server(Keep, "127.0.0.1", 0, identity=SERVER)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(
            asyncio.Protocol, "127.0.0.1", port, identity=CLIENT, peer_key=SERVER.public_key
        )
        while not seen:
            await asyncio.sleep(0.005)
        result = (transport.get_extra_info("peer_key"), seen[0].get_extra_info("peer_key"))
        transport.close()
        server.close()
        return result

    server_key, client_key = run(body, base=base)
    assert server_key == SERVER.public_key
    assert client_key == CLIENT.public_key
