"""The rendezvous: pairs two peers by session name and starts their punching together.

Protocol: JSON over UDP, one UTF-8 object per datagram (at most :data:`MAX_DATAGRAM`
bytes), every object with ``"v": 1`` and an ``"op"``. Addresses are ``[host, port]``.

Peer to rendezvous:

* ``{"op": "register", "session": S, "peer": P, "candidates": C}`` — S names the session
  (1-128 characters), P is the peer's random identity (1-64 characters), C is
  ``{"host": [[ip, port], ...], "srflx": [ip, port] | null, "relay": [ip, port] | null}``:
  the socket's own addresses, what a STUN server saw, and a TURN relayed address. Sent
  every 250 ms until an answer, then every second while waiting (it also keeps the NAT
  binding to the rendezvous open).
* ``{"op": "pong", "nonce": N}`` — the answer to a ping.

Rendezvous to peer:

* ``{"op": "waiting", "session": S, "expires": seconds}`` — registered; the other peer
  has not come yet.
* ``{"op": "ping", "nonce": N}`` — RTT measurement, once both peers are there.
* ``{"op": "start", "session": S, "role": "a" | "b", "vports": [local, remote],
  "you": [ip, port], "peer": {"observed": [ip, port], ...C}}`` — punch now. ``you`` is
  the peer's own address as the rendezvous saw it (a server-reflexive address), ``peer``
  the other's candidates plus the address the rendezvous saw it at. Role "a" is the peer
  that registered first; it decides which path the connection takes.
* ``{"op": "error", "session": S, "reason": R}`` — e.g. "session full" for a third peer.

Synchronising the start (as libp2p's DCUtR does with its Sync message): once both are
registered the rendezvous pings each (every 100 ms until both answered, at most 1 s) and
sends the "start" to the peer with the longer RTT first and to the other (RTT_long -
RTT_short) / 2 later, so both get it at the same moment. A peer that registers again after
the start (its "start" was lost) gets it again at once.

Sessions expire :data:`SESSION_TTL` seconds after their last message (a waiting peer keeps
its session alive by registering again), and 30 s after their start; at most
:data:`MAX_SESSIONS` exist at once (a new one beyond that gets the error "busy"). Malformed
datagrams (not JSON, wrong types, too long, unknown op) are dropped and counted
(``stats``). Each message costs O(1): sessions and pings are found by name and nonce.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import random
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RendezvousServer", "parse_candidates", "serve"]

logger = logging.getLogger("udptcp.rendezvous")

VERSION = 1
MAX_DATAGRAM = 1400
MAX_HOST_CANDIDATES = 8
#: A session with no message for this long is forgotten.
SESSION_TTL = 60.0
#: How long a started session is remembered (to repeat a lost "start").
STARTED_TTL = 30.0
#: RTT measurement: pings every PING_INTERVAL until both answered, at most PING_WINDOW.
PING_INTERVAL = 0.1
PING_WINDOW = 1.0
#: Most sessions held at once; a register for a new session beyond it is refused ("busy").
MAX_SESSIONS = 10000
#: Virtual ports handed to a pair (RFC 6335 dynamic range).
VPORTS = (49152, 65535)

Addr = tuple[str, int]


class Malformed(ValueError):
    """A datagram that is not a well-formed rendezvous message."""


def parse_addr(value: Any) -> Addr:
    """``[ip, port]`` checked: a literal IP address and a port in 1..65535."""
    if not (isinstance(value, list) and len(value) == 2):
        raise Malformed("address")
    host, port = value
    if not isinstance(host, str) or not isinstance(port, int) or not 0 < port < 65536:
        raise Malformed("address")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise Malformed("address") from None
    return host, port


def parse_candidates(value: Any) -> dict[str, Any]:
    """The ``candidates`` object of a register message, checked and normalised."""
    if not isinstance(value, dict):
        raise Malformed("candidates")
    hosts = value.get("host", [])
    if not isinstance(hosts, list) or len(hosts) > MAX_HOST_CANDIDATES:
        raise Malformed("candidates")
    out: dict[str, Any] = {"host": [list(parse_addr(h)) for h in hosts]}
    for name in ("srflx", "relay"):
        item = value.get(name)
        out[name] = None if item is None else list(parse_addr(item))
    return out


@dataclass
class _Peer:
    ident: str
    addr: Addr
    candidates: dict[str, Any]
    rtt: float | None = None
    #: Outstanding pings: nonce -> when it was sent (each ping has its own nonce, so a
    #: late answer to an early ping is measured from that ping).
    pings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Session:
    name: str
    created: float
    last: float
    peers: list[_Peer] = field(default_factory=list)
    vports: tuple[int, int] = (0, 0)
    started: float | None = None
    pinging: asyncio.TimerHandle | None = None
    ping_since: float = 0.0


class RendezvousServer(asyncio.DatagramProtocol):
    """The rendezvous service as an asyncio datagram protocol (see the module docstring)."""

    def __init__(self, *, ttl: float = SESSION_TTL, seed: int | None = None) -> None:
        self.ttl = ttl
        self.sessions: dict[str, _Session] = {}
        self.stats: Counter[str] = Counter()
        self.transport: asyncio.DatagramTransport | None = None
        self._random = random.Random(seed)
        self._sweeper: asyncio.TimerHandle | None = None
        self._nonces: dict[str, tuple[_Session, _Peer]] = {}

    # ------------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for session in self.sessions.values():
            if session.pinging is not None:
                session.pinging.cancel()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        addr = (addr[0], addr[1])
        try:
            if len(data) > MAX_DATAGRAM:
                raise Malformed("too long")
            message = json.loads(data.decode("utf-8"))
            if not isinstance(message, dict) or message.get("v") != VERSION:
                raise Malformed("not a version 1 object")
            op = message.get("op")
            if op == "register":
                self._register(message, addr)
            elif op == "pong":
                self._pong(message, addr)
            else:
                raise Malformed("unknown op")
        except (Malformed, ValueError, UnicodeDecodeError, RecursionError) as exc:
            self.stats["malformed"] += 1
            logger.debug("rendezvous: dropped a malformed datagram from %r: %s", addr, exc)

    def _send(self, message: dict[str, Any], addr: Addr) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        message = {"v": VERSION, **message}
        self.transport.sendto(json.dumps(message, separators=(",", ":")).encode(), addr)

    # ------------------------------------------------------------------ pairing

    def _register(self, message: dict[str, Any], addr: Addr) -> None:
        name, ident = message.get("session"), message.get("peer")
        if not (isinstance(name, str) and 0 < len(name) <= 128):
            raise Malformed("session")
        if not (isinstance(ident, str) and 0 < len(ident) <= 64):
            raise Malformed("peer")
        candidates = parse_candidates(message.get("candidates", {}))
        now = self.loop.time()
        session = self.sessions.get(name)
        if session is None:
            if len(self.sessions) >= MAX_SESSIONS:
                self.stats["busy"] += 1
                self._send({"op": "error", "session": name, "reason": "busy"}, addr)
                return
            session = self.sessions[name] = _Session(name, now, now)
            self.stats["sessions"] += 1
        session.last = now
        peer = next((p for p in session.peers if p.ident == ident), None)
        if peer is None:
            if len(session.peers) >= 2:
                self.stats["refused"] += 1
                self._send({"op": "error", "session": name, "reason": "session full"}, addr)
                return
            peer = _Peer(ident, addr, candidates)
            session.peers.append(peer)
            self.stats["registered"] += 1
        else:
            peer.addr, peer.candidates = addr, candidates
        if session.started is not None:
            self._send_start(session, session.peers.index(peer))  # its "start" was lost
        elif len(session.peers) == 2:
            if session.pinging is None:
                self.stats["paired"] += 1
                low, high = VPORTS
                a, b = self._random.sample(range(low, high + 1), 2)
                session.vports = (a, b)
                session.ping_since = now
                self._ping(session)
        else:
            self._send({"op": "waiting", "session": name, "expires": self.ttl}, addr)

    def _ping(self, session: _Session) -> None:
        now = self.loop.time()
        waiting = [p for p in session.peers if p.rtt is None]
        if not waiting or now - session.ping_since >= PING_WINDOW:
            session.pinging = None
            self._start(session)
            return
        for peer in waiting:
            nonce = secrets.token_hex(8)
            peer.pings[nonce] = now
            self._nonces[nonce] = (session, peer)
            self._send({"op": "ping", "nonce": nonce}, peer.addr)
        session.pinging = self.loop.call_later(PING_INTERVAL, self._ping, session)

    def _pong(self, message: dict[str, Any], addr: Addr) -> None:
        nonce = message.get("nonce")
        if not isinstance(nonce, str):
            raise Malformed("nonce")
        found = self._nonces.get(nonce)
        if found is None:
            return
        session, peer = found
        sent = peer.pings.get(nonce)
        if sent is not None and peer.rtt is None and session.started is None:
            peer.rtt = self.loop.time() - sent
            self._forget_pings(peer)
            if all(p.rtt is not None for p in session.peers) and session.pinging:
                session.pinging.cancel()
                session.pinging = None
                self._start(session)

    def _forget_pings(self, peer: _Peer) -> None:
        for nonce in peer.pings:
            self._nonces.pop(nonce, None)
        peer.pings.clear()

    def _start(self, session: _Session) -> None:
        session.started = self.loop.time()
        for peer in session.peers:
            self._forget_pings(peer)
        self.stats["started"] += 1
        rtts = [p.rtt if p.rtt is not None else 0.0 for p in session.peers]
        longest = max(rtts)
        for index, rtt in enumerate(rtts):
            # Both "start" messages should arrive together: the nearer peer's leaves later.
            delay = (longest - rtt) / 2
            if delay <= 0:
                self._send_start(session, index)
            else:
                self.loop.call_later(delay, self._send_start, session, index)

    def _send_start(self, session: _Session, index: int) -> None:
        me, other = session.peers[index], session.peers[1 - index]
        vports = session.vports if index == 0 else session.vports[::-1]
        self._send(
            {
                "op": "start",
                "session": session.name,
                "role": "a" if index == 0 else "b",
                "vports": list(vports),
                "you": list(me.addr),
                "peer": {"observed": list(other.addr), **other.candidates},
            },
            me.addr,
        )

    def _sweep(self) -> None:
        now = self.loop.time()
        for name, session in list(self.sessions.items()):
            ttl = STARTED_TTL if session.started is not None else self.ttl
            if now - session.last >= ttl:
                if session.pinging is not None:
                    session.pinging.cancel()
                for peer in session.peers:
                    self._forget_pings(peer)
                del self.sessions[name]
                self.stats["expired"] += 1
        self._sweeper = self.loop.call_later(1.0, self._sweep)


async def serve(host: str, port: int, *, ttl: float = SESSION_TTL) -> tuple[Any, RendezvousServer]:
    """Start a rendezvous on ``host:port``; returns ``(transport, server)``."""
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        lambda: RendezvousServer(ttl=ttl), local_addr=(host, port)
    )
    return transport, server
