"""A plain udptcp connection opened (TLS and secure-mode keywords are dealt with by
:func:`udptcp.aio.api.create_connection` before it gets here): on the caller's socket or a
shared client socket, over each resolved address in turn or in a happy-eyeballs race
(RFC 8305), waiting for ESTABLISHED and leaving nothing half-open when it fails.
"""

from __future__ import annotations

import asyncio
import asyncio.staggered
import functools
import socket
from collections.abc import Callable
from typing import TypeVar

from udptcp.core.config import Config

from .addresses import (
    check_port,
    check_vport,
    interleave_families,
    numeric_infos,
    raise_connect_errors,
    resolve,
)
from .endpoint import Address, Endpoint
from .transport import Transport
from .udpsockets import check_udp_socket, client_endpoint, enlarge_buffers

__all__ = ["connect_on", "connect_plain"]

_Q = TypeVar("_Q", bound=asyncio.BaseProtocol)


async def connect_plain(
    protocol_factory: Callable[[], _Q],
    host: str | None,
    port: int | str | None,
    *,
    local_addr: tuple[str, int] | None,
    sock: socket.socket | None,
    config: Config | None,
    vport: int | None,
    local_vport: int | None,
    family: int,
    all_errors: bool,
    happy_eyeballs_delay: float | None = None,
    interleave: int | None = None,
    own_socket: bool = True,
) -> tuple[Transport, _Q]:
    """``create_connection`` without TLS or secure-mode keywords: check the arguments,
    resolve the peer, and connect on ``sock`` or on a client endpoint per address."""
    check_vport("vport", vport)
    check_vport("local_vport", local_vport)
    check_port(port, "connect")
    if local_addr is not None:
        check_port(local_addr[1], "bind")
    loop = asyncio.get_running_loop()
    config = config if config is not None else Config()

    if sock is not None:
        if local_addr is not None:
            raise ValueError("local_addr and sock can not be specified at the same time")
        check_udp_socket(sock)
        if host is None and port is None:
            try:
                peer: Address = sock.getpeername()
            except OSError:
                raise ValueError(
                    "host and port were not specified and sock is not connected"
                ) from None
        else:
            infos = numeric_infos(host, port, sock.family, 0)
            if infos is None:
                infos = await resolve(loop, host, port, sock.family, 0)
            peer = infos[0][4]
        endpoint = Endpoint.existing(loop, sock)
        if endpoint is None:
            enlarge_buffers(sock)
            endpoint = Endpoint.for_socket(loop, sock, config, owns_socket=own_socket)
        return await connect_on(
            endpoint, peer, protocol_factory, config, vport, local_vport, keep_socket=True
        )

    if host is None or port is None:
        raise ValueError("host and port was not specified and no sock specified")
    infos = numeric_infos(host, port, family, 0) or await resolve(loop, host, port, family, 0)
    local_infos = None
    if local_addr is not None:
        local_infos = await resolve(loop, local_addr[0], local_addr[1], family, 0)

    if len(infos) == 1 and not all_errors:
        # One address (an IP literal, say): its error is the answer as it is.
        fam, _type, proto, _name, addr = infos[0]
        endpoint = client_endpoint(loop, fam, proto, addr, local_infos, config)
        return await connect_on(endpoint, addr, protocol_factory, config, vport, local_vport)
    attempts = [(fam, proto, addr) for fam, _type, proto, _name, addr in infos]
    if happy_eyeballs_delay is not None and interleave is None:
        interleave = 1  # as asyncio: happy eyeballs interleaves the families
    if interleave and len(attempts) > 1:
        attempts = interleave_families(attempts, interleave)
    exceptions: list[OSError] = []

    async def attempt(fam: int, proto: int, addr: Address) -> tuple[Transport, _Q]:
        try:
            endpoint = client_endpoint(loop, fam, proto, addr, local_infos, config)
            return await connect_on(endpoint, addr, protocol_factory, config, vport, local_vport)
        except OSError as exc:  # ConnectionRefusedError, TimeoutError, ...
            exceptions.append(exc)
            raise

    if happy_eyeballs_delay is None or len(attempts) == 1:
        for fam, proto, addr in attempts:
            try:
                return await attempt(fam, proto, addr)
            except OSError:
                continue
    else:
        # RFC 8305 as asyncio runs it: the next address starts after the delay (or as soon
        # as the previous one failed); the first to connect wins, the others are reset.
        winner, _, _ = await asyncio.staggered.staggered_race(
            (functools.partial(attempt, *a) for a in attempts), happy_eyeballs_delay
        )
        if winner is not None:
            return winner  # type: ignore[no-any-return]
    raise_connect_errors(exceptions, all_errors)


async def connect_on(
    endpoint: Endpoint,
    peer: Address,
    protocol_factory: Callable[[], _Q],
    config: Config,
    vport: int | None,
    local_vport: int | None,
    *,
    keep_socket: bool = False,
) -> tuple[Transport, _Q]:
    """Connect on ``endpoint``; with ``keep_socket`` (the caller's socket) a failure or
    cancellation that leaves the endpoint unused closes it without closing the socket."""
    if config.pmtu_max is not None:
        endpoint.set_dont_fragment()
    endpoint.acquire()
    ok = False
    try:
        transport = endpoint.connect(
            peer,
            protocol_factory,
            config,
            remote_vport=vport if vport is not None else peer[1],
            local_vport=local_vport,
        )
        assert transport._waiter is not None
        try:
            await transport._waiter
        except BaseException:
            # Cancelled, or the handshake failed: leave nothing half-open behind.
            if transport._protocol is None:
                transport.abort_unowned()
            else:
                transport.abort()
            raise
        ok = True
        return transport, transport.get_protocol()  # type: ignore[return-value]
    finally:
        if not ok and keep_socket and endpoint.idle_but_for_holds(1):
            endpoint.owns_socket = False
        endpoint.release()
