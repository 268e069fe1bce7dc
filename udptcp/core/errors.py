"""The exceptions a connection ends with, as asyncio users already catch them.

They are the built-in ``OSError`` subclasses with ``errno`` set the way kernel TCP sets it
(``ECONNREFUSED``, ``ECONNRESET``, ``ETIMEDOUT``), so code that looks at ``exc.errno`` or
catches ``ConnectionError`` behaves as over TCP. ``strerror`` is the system's text for the
errno followed by what happened, in parentheses. The core does not know UDP addresses
(sans-I/O); the asyncio adapter re-raises them with the peer's address
(:func:`udptcp.aio.transport.with_address`).
"""

from __future__ import annotations

import errno
import os

__all__ = ["aborted", "refused", "reset", "timed_out"]


def _text(code: int, detail: str) -> str:
    return f"{os.strerror(code)} ({detail})"


def refused(detail: str) -> ConnectionRefusedError:
    """The connection could not be opened: nobody accepts it at that address."""
    return ConnectionRefusedError(errno.ECONNREFUSED, _text(errno.ECONNREFUSED, detail))


def reset(detail: str) -> ConnectionResetError:
    """An open connection was ended by (or for want of) its peer."""
    return ConnectionResetError(errno.ECONNRESET, _text(errno.ECONNRESET, detail))


def timed_out(detail: str) -> TimeoutError:
    """The peer stopped answering (handshake, retransmissions or keepalive exhausted)."""
    return TimeoutError(errno.ETIMEDOUT, _text(errno.ETIMEDOUT, detail))


def aborted(detail: str) -> ConnectionAbortedError:
    """The connection was ended on this side before it was handed to the application."""
    return ConnectionAbortedError(errno.ECONNABORTED, _text(errno.ECONNABORTED, detail))
