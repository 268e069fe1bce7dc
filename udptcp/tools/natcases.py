"""The NAT traversal cases, run the same way in the kernel lab and in the emulator.

An *environment* gives two peers' sockets (each behind its NAT), a rendezvous and, when
asked for, a STUN/TURN server (coturn): :class:`KernelEnv` (``udptcp.tools.natlab``: real
nftables NATs in network namespaces, root) or :class:`EmulatorEnv`
(``udptcp.tools.natemu``: user-space NATs on 127.0.0.0/8, no root). The cases:

* :func:`connect_pair` — both peers call ``create_peer_connection`` (one optionally
  ``late``), then send ``payload`` bytes each way and check them; reports each side's path,
  set-up time (from the moment both had called) and errors;
* :func:`idle_then_message` — a connected pair idles, then each side sends one message;
  reports whether both arrived and how long each took.

``tests/nat`` runs short versions; ``python -m benchmarks.natlab`` the full acceptance.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any

import udptcp
from udptcp.aio.endpoint import Endpoint
from udptcp.nat.rendezvous import RendezvousServer

from . import natemu
from .natlab import (
    TURN_PASSWORD,
    TURN_USER,
    NatLab,
    coturn_unavailable,
    start_coturn,
    stop_process,
    wait_coturn,
)

__all__ = [
    "EmulatorEnv",
    "KernelEnv",
    "PeerResult",
    "close_pairs",
    "connect_pair",
    "coturn_unavailable",
    "idle_then_message",
]


@dataclass
class PeerResult:
    """One peer's outcome in a case."""

    path: str | None = None
    error: BaseException | None = None
    #: Seconds from the moment both peers had called to this one's connection.
    setup: float | None = None
    #: Seconds from this peer's own call to its result (success or error).
    elapsed: float = 0.0
    intact: bool | None = None
    nat: dict[str, Any] = field(default_factory=dict)
    #: Secure mode: ``get_extra_info("secure")`` and ``("peer_key")`` of the connection.
    secure: Any = None
    peer_key: bytes | None = None


class _Env:
    """What the cases need from an environment."""

    rendezvous: str
    stun: str | None = None
    turn: str | None = None
    server: RendezvousServer

    def peer_socket(self, i: int) -> socket.socket:
        raise NotImplementedError

    def kwargs(self) -> dict[str, Any]:
        if self.turn is None:
            return {"stun": self.stun}
        return {
            "stun": self.stun,
            "turn": self.turn,
            "turn_username": TURN_USER,
            "turn_password": TURN_PASSWORD,
        }


class KernelEnv(_Env):
    """The kernel lab (``NatLab``) with a rendezvous in its public namespace."""

    def __init__(self, lab: NatLab) -> None:
        self.lab = lab
        self.rendezvous = lab.rendezvous
        if lab.turn:
            self.stun = self.turn = lab.stun
        self._transport: asyncio.BaseTransport | None = None

    async def __aenter__(self) -> KernelEnv:
        loop = asyncio.get_running_loop()
        sock = self.lab.socket("pub", int(self.rendezvous.rsplit(":", 1)[1]))
        self._transport, self.server = await loop.create_datagram_endpoint(
            RendezvousServer, sock=sock
        )
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._transport is not None:
            self._transport.close()

    def peer_socket(self, i: int) -> socket.socket:
        return self.lab.socket(f"peer{i}")


class EmulatorEnv(_Env):
    """Two emulated NATs (``natemu``) on loopback, a rendezvous, optionally coturn."""

    def __init__(
        self,
        nat1: natemu.Behaviour,
        nat2: natemu.Behaviour,
        *,
        turn: bool = False,
        seed: int = 0,
    ) -> None:
        self.behaviours = (nat1, nat2)
        self.want_turn = turn
        self.seed = seed
        self._transport: asyncio.BaseTransport | None = None
        self._turn: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    async def __aenter__(self) -> EmulatorEnv:
        loop = asyncio.get_running_loop()
        self.network = natemu.NatNetwork(self.seed)
        self.nats = [self.network.nat(b) for b in self.behaviours]
        self._transport, self.server = await loop.create_datagram_endpoint(
            RendezvousServer, local_addr=("127.0.0.1", 0)
        )
        self.rendezvous = f"127.0.0.1:{self._transport.get_extra_info('sockname')[1]}"
        if self.want_turn:
            port = await loop.run_in_executor(None, self._start_turn)
            self.stun = self.turn = f"127.0.0.1:{port}"
        return self

    def _start_turn(self) -> int:
        self._dir = tempfile.TemporaryDirectory(prefix="udptcp-turn-")
        for _ in range(5):
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            probe.close()
            self._turn = start_coturn("127.0.0.1", port, self._dir.name, loopback_peers=True)
            if wait_coturn(self._turn, ("127.0.0.1", port)):
                return port
            stop_process(self._turn)
        raise RuntimeError("coturn did not start on loopback")

    async def __aexit__(self, *exc: Any) -> None:
        if self._transport is not None:
            self._transport.close()
        self.network.close()
        if self._turn is not None:
            stop_process(self._turn)
        if self._dir is not None:
            self._dir.cleanup()

    def peer_socket(self, i: int) -> socket.socket:
        sock = self.network.host_socket()
        endpoint = Endpoint.for_socket(asyncio.get_running_loop(), sock)
        self.nats[i - 1].attach(endpoint)
        return sock


async def connect_pair(
    env: _Env,
    *,
    session: str = "case",
    late: float = 0.0,
    payload: int = 0,
    timeout: float = 10.0,
    use_turn: bool = True,
    config: udptcp.Config | None = None,
    keep: list[Any] | None = None,
    peer_kwargs: tuple[dict[str, Any], dict[str, Any]] = ({}, {}),
) -> tuple[PeerResult, PeerResult]:
    """Both peers connect (peer 2 ``late`` seconds after peer 1) and exchange ``payload``
    bytes each way. With ``keep`` the (reader, writer) pairs are appended there, open.
    ``peer_kwargs``: more keywords for each peer's call (its secure-mode keys)."""
    loop = asyncio.get_running_loop()
    kw = env.kwargs() if use_turn else {"stun": env.stun}
    results = (PeerResult(), PeerResult())
    called: list[float] = []
    data = [
        hashlib.sha256(f"{session}/{i}".encode()).digest() * (payload // 32 + 1) for i in (1, 2)
    ]

    async def peer(i: int) -> Any:
        result = results[i - 1]
        if i == 2 and late:
            await asyncio.sleep(late)
        sock = env.peer_socket(i)
        start = loop.time()
        called.append(start)
        try:
            reader, writer = await udptcp.open_peer_connection(
                session,
                env.rendezvous,
                sock=sock,
                timeout=timeout,
                config=config,
                **kw,
                **peer_kwargs[i - 1],
            )
        except Exception as exc:
            result.error = exc
            result.elapsed = loop.time() - start
            with contextlib.suppress(OSError):
                sock.close()
            return None
        now = loop.time()
        result.elapsed = now - start
        result.path = writer.get_extra_info("path")
        result.nat = writer.get_extra_info("nat")
        result.secure = writer.get_extra_info("secure")
        result.peer_key = writer.get_extra_info("peer_key")
        result.setup = now - max(called) if len(called) == 2 else None
        return reader, writer

    pairs = await asyncio.gather(peer(1), peer(2))
    if pairs[0] is None or pairs[1] is None:
        await close_pairs([pair for pair in pairs if pair is not None])
        return results
    if payload:

        async def send(i: int) -> None:
            writer = pairs[i - 1][1]
            writer.write(data[i - 1][:payload])
            await writer.drain()

        async def receive(i: int) -> None:
            reader = pairs[i - 1][0]
            got = await reader.readexactly(payload)
            results[i - 1].intact = got == data[2 - i][:payload]

        try:
            await asyncio.wait_for(
                asyncio.gather(send(1), send(2), receive(1), receive(2)), timeout + payload / 1e5
            )
        except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            for r in results:
                if r.intact is None:
                    r.intact = False
                    r.error = exc
    if keep is not None:
        keep.extend(pairs)
    else:
        await close_pairs(list(pairs))
    return results


async def close_pairs(pairs: list[Any], timeout: float = 5.0) -> None:
    """Close both ends and wait (at most ``timeout``) until they are closed, so nothing
    is left delivering when the lab goes away (the loop's shutdown would wait for it)."""
    for _, writer in pairs:
        writer.close()
    endpoints = {w.transport.endpoint for _, w in pairs if hasattr(w.transport, "endpoint")}
    with contextlib.suppress(asyncio.TimeoutError, OSError):
        await asyncio.wait_for(
            asyncio.gather(*(w.wait_closed() for _, w in pairs), return_exceptions=True),
            timeout,
        )
        # connection_lost comes once the data is handed over; FIN and its ACK follow.
        await asyncio.wait_for(asyncio.gather(*(ep.linger() for ep in endpoints)), timeout)


async def idle_then_message(
    pairs: list[Any], idle: float, patience: float = 5.0
) -> tuple[list[bool], list[float | None]]:
    """Idle ``idle`` seconds, then each side sends a line and the other waits for it at most
    ``patience`` seconds; returns (arrived, latencies), indexed by the receiving side."""
    await asyncio.sleep(idle)
    loop = asyncio.get_running_loop()
    arrived = [False, False]
    latency: list[float | None] = [None, None]
    for i in (0, 1):
        writer = pairs[i][1]
        reader = pairs[1 - i][0]
        start = loop.time()
        writer.write(b"after the idle\n")
        try:
            line = await asyncio.wait_for(reader.readline(), patience)
        except (asyncio.TimeoutError, OSError):
            continue
        arrived[1 - i] = line == b"after the idle\n"
        latency[1 - i] = loop.time() - start
    return arrived, latency
