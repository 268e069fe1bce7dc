"""udptcp through its public API: ``create_connection`` / ``create_server`` and the streams
functions. Options: ``pmtu_max`` (path-MTU probing up to that UDP payload size), ``secure``
(secure mode: the server has a fixed benchmark identity, the client pins its public key, so
the Noise NK handshake runs on every connection). The offload-off variant is the same code
run with ``UDPTCP_OFFLOAD=0`` in the environment."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Callable
from typing import Any

import udptcp

from .base import ClientPeer, P, ServerPeer, StreamHandler

SOCKET_BUFFER = 2 * 1024 * 1024


# Benchmark-only key pair, the same in the server and the client process (never use a key
# derived from a public string for anything else).
BENCH_IDENTITY = udptcp.Identity.from_private_bytes(
    hashlib.sha256(b"udptcp benchmark identity").digest()
)


def make_config(options: dict[str, Any], *, server: bool = False) -> udptcp.Config:
    pmtu_max = options.get("pmtu_max")
    config = udptcp.Config(pmtu_max=int(pmtu_max) if pmtu_max else None)
    if options.get("secure"):
        if server:
            return config.replace(identity=BENCH_IDENTITY)
        return config.replace(peer_key=BENCH_IDENTITY.public_key)
    return config


def make_server_config(options: dict[str, Any]) -> udptcp.Config:
    """The server's config: the client's, with connection limits that let the scenarios in
    (the idle one opens 10,000 connections, 50 handshakes at a time, from one address; the
    defaults refuse more than 4096 per endpoint and 256 per address)."""
    return make_config(options, server=True).replace(
        max_connections=100_000,
        max_connections_per_address=100_000,
        max_half_open_per_address=1024,
    )


class Client(ClientPeer):
    """With ``shared_socket`` every connection goes over one UDP socket (``sock=`` passed
    again shares its endpoint; connections are told apart by their virtual ports)."""

    _sock: socket.socket | None = None
    _config: udptcp.Config | None = None

    async def connect(
        self, factory: Callable[[], P], host: str, port: int
    ) -> tuple[asyncio.Transport, P]:
        # One Config for every connection, as an application makes its settings once (the
        # kernel TCP peer builds nothing per connect either).
        config = self._config
        if config is None:
            config = self._config = make_config(self.options)
        if not self.shared_socket:
            return await udptcp.create_connection(factory, host, port, config=config)
        if self._sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            sock.bind((host, 0))
            self._sock = sock
        return await udptcp.create_connection(factory, host, port, sock=self._sock, config=config)

    async def open_stream(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await udptcp.open_connection(host, port, config=make_config(self.options))


class Server(ServerPeer):
    _servers: list[udptcp.Server]

    async def start(
        self,
        factory: Callable[[], asyncio.Protocol],
        host: str,
        port: int = 0,
        reuse_port: bool = False,
    ) -> int:
        server = await udptcp.create_server(
            factory,
            host,
            port,
            config=make_server_config(self.options),
            backlog=1024,
            reuse_port=reuse_port or None,
        )
        self._servers = [*getattr(self, "_servers", []), server]
        return int(server.sockets[0].getsockname()[1])

    async def start_streams(self, handler: StreamHandler, host: str) -> int | None:
        server = await udptcp.start_server(
            handler, host, 0, config=make_server_config(self.options)
        )
        self._servers = [*getattr(self, "_servers", []), server]
        return int(server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        for server in getattr(self, "_servers", []):
            server.close()
