"""Handing a connection's events to the application: the error it sees, with the peer's
address in its message, and data fed to a ``BufferedProtocol`` (the Transport's helpers)."""

from __future__ import annotations

import asyncio
from typing import TypeVar, cast

from .interfaces import Address

__all__ = ["feed_buffered", "with_address"]

_E = TypeVar("_E", bound="BaseException | None")


def with_address(error: _E, peer: Address, connecting: bool) -> _E:
    """A connection's error as the application sees it: the core's exception (an
    ``OSError`` with ``errno`` and ``strerror``) made again with the peer's UDP address in
    its message, as asyncio's ``ConnectionRefusedError(111, "Connect call failed
    ('127.0.0.1', 9)")`` has it; anything else is returned as it is.

    ``connecting``: the connection never reached the application (``create_connection``
    raises it), so the message starts as asyncio's does for a failed connect.
    """
    if not isinstance(error, OSError) or error.errno is None or error.strerror is None:
        return error
    if connecting:
        text = f"Connect call failed {peer!r}: {error.strerror}"
    else:
        text = f"Connection with {peer!r}: {error.strerror}"
    return cast(_E, type(error)(error.errno, text))


def feed_buffered(protocol: asyncio.BufferedProtocol, data: bytes) -> None:
    """Copy ``data`` into a BufferedProtocol's buffers, chunk by chunk (as asyncio's
    ``protocols._feed_data_to_buffered_proto`` does for SSL)."""
    view = memoryview(data)
    while view:
        buf = protocol.get_buffer(len(view))
        size = len(buf)  # type: ignore[arg-type]
        if not size:
            raise RuntimeError("get_buffer() returned an empty buffer")
        n = min(size, len(view))
        memoryview(buf)[:n] = view[:n]
        protocol.buffer_updated(n)
        view = view[n:]
