"""The address arguments of ``create_connection`` and ``create_server``: ports checked as
asyncio checks them, numeric addresses resolved without an await, a server's ``host``
argument read as asyncio reads it, and the order of and failure over several addresses
(RFC 8305).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

__all__ = [
    "check_port",
    "check_vport",
    "interleave_families",
    "numeric_infos",
    "raise_connect_errors",
    "resolve",
    "server_hosts",
]


def interleave_families(attempts: list[Any], first_family_count: int) -> list[Any]:
    """Alternate address families, ``first_family_count`` of the first family first
    (RFC 8305 §4, as ``loop.create_connection(interleave=)`` orders them)."""
    by_family: dict[int, list[Any]] = {}
    for item in attempts:
        by_family.setdefault(item[0], []).append(item)
    lists = list(by_family.values())
    ordered: list[Any] = lists[0][: first_family_count - 1]
    lists[0] = lists[0][first_family_count - 1 :]
    for group in itertools.zip_longest(*lists):
        ordered.extend(item for item in group if item is not None)
    return ordered


def raise_connect_errors(exceptions: list[OSError], all_errors: bool = False) -> NoReturn:
    """Raise as asyncio does when every address failed."""
    if not exceptions:
        raise OSError("getaddrinfo() returned empty list")
    if all_errors and sys.version_info >= (3, 11):
        raise ExceptionGroup("create_connection failed", exceptions)  # noqa: F821 (3.11+)
    if len(exceptions) == 1 or all(str(e) == str(exceptions[0]) for e in exceptions):
        raise exceptions[0]
    raise OSError(f"Multiple exceptions: {', '.join(str(e) for e in exceptions)}")


def server_hosts(host: str | Iterable[str] | None) -> list[str | None]:
    """The hosts a server listens on, as ``loop.create_server`` reads its ``host``
    argument: ``None`` or ``""`` for every interface, one name, or several."""
    if host is None or host == "":
        return [None]
    if isinstance(host, str):
        return [host]
    return list(host)


def numeric_infos(
    host: str | None, port: int | str | None, family: int, flags: int
) -> list[Any] | None:
    """``getaddrinfo`` for a numeric host and port, without waiting (it cannot block: no
    name is looked up), or None when a lookup is needed.

    An address already in the form ``getaddrinfo`` would give back (``"127.0.0.1"``,
    ``"::1"``) with an integer port is answered here, without the C library: it is what
    every connection to an IP literal asks, and the call costs more than the parse."""
    if host is None or port is None:
        return None
    info = _literal_info(host, port, family)
    if info is not None:
        return [info]
    try:
        infos = socket.getaddrinfo(
            host,
            port,
            family=family,
            type=socket.SOCK_DGRAM,
            proto=0,
            flags=flags | socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
        )
    except (OSError, UnicodeError):
        return None
    return infos or None


def _literal_info(host: object, port: object, family: int) -> tuple[Any, ...] | None:
    """The one ``getaddrinfo`` answer (UDP) for an IP literal in its canonical form and a
    port number; None for anything else (a name, a scoped or non-canonical address, a
    service name), which ``getaddrinfo`` itself must read."""
    if type(host) is not str or type(port) is not int or not 0 <= port <= 65535:
        return None
    for fam in (socket.AF_INET, socket.AF_INET6):
        if family not in (0, fam):
            continue
        try:
            canonical = socket.inet_ntop(fam, socket.inet_pton(fam, host))
        except (OSError, ValueError):
            continue
        if canonical != host:
            return None
        addr = (host, port) if fam == socket.AF_INET else (host, port, 0, 0)
        return (fam, socket.SOCK_DGRAM, socket.IPPROTO_UDP, "", addr)
    return None


async def resolve(
    loop: asyncio.AbstractEventLoop,
    host: str | None,
    port: int | str | None,
    family: int,
    flags: int,
) -> list[Any]:
    """``loop.getaddrinfo`` for UDP; an empty answer is an ``OSError`` as asyncio makes it."""
    infos = await loop.getaddrinfo(
        host, port, family=family, type=socket.SOCK_DGRAM, proto=0, flags=flags
    )
    if not infos:
        raise OSError("getaddrinfo() returned empty list")
    return infos


def check_port(port: object, call: str) -> None:
    """Refuse a port number outside 0-65535 with the ``OverflowError`` asyncio's default
    loop raises for it (the socket module's, from ``connect()`` or ``bind()``).

    Checked before name resolution, whatever the host: ``getaddrinfo`` would silently take
    the port modulo 65536 (70000 becomes 4464), which asyncio lets through for host names
    and uvloop for every host. A service name ("http") is left to ``getaddrinfo``.
    """
    if isinstance(port, (str, bytes)):
        try:
            port = int(port)
        except ValueError:
            return
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise OverflowError(f"{call}(): port must be 0-65535.")


def check_vport(name: str, vport: int | None) -> None:
    """Refuse a virtual port outside 1-65535 (``OverflowError`` beyond the range, as for a
    UDP port; ``ValueError`` for 0 or a non-integer)."""
    if vport is None:
        return
    if isinstance(vport, int) and not 0 <= vport <= 65535:
        raise OverflowError(f"{name}: port must be 0-65535.")
    if not (isinstance(vport, int) and vport >= 1):
        raise ValueError(f"{name} must be a port number in 1..65535, got {vport!r}")
