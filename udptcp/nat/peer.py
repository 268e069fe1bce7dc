"""``open_peer_connection`` / ``create_peer_connection``: one call per peer, the same on both.

Both peers name a session and a rendezvous. Each, on one new UDP socket (or ``sock=``):

1. **Discovery** (in parallel): a STUN Binding request to ``stun`` (RFC 8489) gives the
   server-reflexive address; with ``turn`` a TURN allocation (RFC 8656) on the same socket
   gives a relayed address; the socket's own address is the host candidate.
2. **Rendezvous** (:mod:`udptcp.nat.rendezvous`): register the candidates; when the other
   peer is there, the rendezvous measures both RTTs and tells each, at the same moment,
   the other's candidates (plus the address it saw the other at), a role and the virtual
   ports.
3. **Punching** (:mod:`udptcp.nat.punch`): a simultaneous open whose SYN goes to every
   direct candidate every 200 ms; after ``relay_delay`` also to the peer's relayed address
   (when the peer is the one whose relay is used: role a's if both have one). The peer
   whose relay is used installs TURN permissions for the other's public addresses and
   answers, through the relay, whatever reaches it there.
4. The connection is ordinary udptcp, with NAT binding maintenance on (``Config.
   nat_keepalive``, 5 s unless the config says otherwise) and ``get_extra_info("path")``
   ("direct" or "relayed") and ``get_extra_info("nat")`` (what was learned).

With keys (``identity`` and ``peer_key``, or ``psk``) the connection is secure
(:mod:`udptcp.core.secure_peer`): role b runs the Noise handshake's initiator, role a its
responder, and a peer that does not hold the pinned key (someone else who joined the
session) fails the handshake with :class:`~udptcp.SecureHandshakeError`.

Failure at any stage raises :class:`~udptcp.nat.errors.NATTraversalError` within
``timeout`` (which covers all of it), naming every candidate and its outcome. The socket a
caller passed is never closed by a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from udptcp.aio.api import STREAM_LIMIT, _secure_config
from udptcp.aio.endpoint import Address, Endpoint
from udptcp.aio.natkeep import keep_binding
from udptcp.aio.transport import Transport
from udptcp.aio.udpsockets import enlarge_buffers
from udptcp.core.config import Config
from udptcp.core.keys import Identity
from udptcp.core.secure import SecureHandshakeError
from udptcp.core.secure_peer import peer_pattern, peer_secure

from . import rendezvous as rv
from .errors import Attempt, NATTraversalError, require_aioice
from .punch import Punch
from .stun import StunClient
from .turn import TurnRelay

__all__ = ["create_peer_connection", "open_peer_connection", "parse_hostport"]

logger = logging.getLogger("udptcp")

_P = TypeVar("_P", bound=asyncio.BaseProtocol)

#: NAT binding maintenance interval for peer connections (below a 10 s NAT binding timeout,
#: with room for one lost keepalive).
PEER_NAT_KEEPALIVE = 5.0
#: Direct candidates get this head start before the relay path is tried.
RELAY_DELAY = 1.0
#: The share of ``timeout`` that STUN and TURN discovery may take (at least 1 s).
DISCOVERY_SHARE = 0.3
#: Register again this often until the rendezvous answers, then every WAIT_REFRESH.
REGISTER_RETRY = 0.25
WAIT_REFRESH = 1.0


def parse_hostport(text: str | tuple[str, int]) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` (or a ``(host, port)`` tuple) as a tuple."""
    if isinstance(text, tuple):
        return text[0], int(text[1])
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


async def _resolve(loop: asyncio.AbstractEventLoop, text: str, family: int = 0) -> Address:
    host, port = parse_hostport(text)
    infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {text!r}")
    return tuple(infos[0][4])


def _host_address(sock: socket.socket, towards: Address) -> Address:
    """The socket's own address as a candidate: its bound address, or for a wildcard bind
    the local address the kernel picks towards the rendezvous."""
    local = sock.getsockname()
    if local[0] not in ("0.0.0.0", "::"):
        return local[:2]
    probe = socket.socket(sock.family, socket.SOCK_DGRAM)
    try:
        probe.connect(towards)
        return (probe.getsockname()[0], local[1])
    finally:
        probe.close()


class _RendezvousClient:
    """Register, answer pings, wait for "start" (see :mod:`udptcp.nat.rendezvous`)."""

    def __init__(self, endpoint: Endpoint, server: Address, session: str, candidates: Any):
        self.endpoint = endpoint
        self.server = server
        self.session = session
        self.ident = secrets.token_hex(8)
        self.candidates = candidates
        self.start: asyncio.Future[dict[str, Any]] = endpoint.loop.create_future()
        self.answered = False
        self._release = endpoint.claim_address(server, self._on_datagram)

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps({"v": rv.VERSION, **message}, separators=(",", ":")).encode()
        self.endpoint.send_direct(data, self.server)

    def register(self) -> None:
        self._send(
            {
                "op": "register",
                "session": self.session,
                "peer": self.ident,
                "candidates": self.candidates,
            }
        )

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        try:
            message = json.loads(data.decode("utf-8"))
            op = message.get("op") if isinstance(message, dict) else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            op = None
        if op == "ping" and isinstance(message.get("nonce"), str):
            self.answered = True
            self._send({"op": "pong", "nonce": message["nonce"]})
        elif op == "waiting":
            self.answered = True
        elif op == "start" and not self.start.done():
            try:
                self.start.set_result(_check_start(message))
            except rv.Malformed:
                self.endpoint.stats["rendezvous_malformed"] += 1
        elif op == "error" and not self.start.done():
            reason = message.get("reason")
            self.start.set_exception(
                NATTraversalError(
                    f"the rendezvous refused session {self.session!r}: {reason}",
                    stage="rendezvous",
                )
            )
        else:
            self.endpoint.stats["rendezvous_malformed"] += 1

    async def wait(self) -> dict[str, Any]:
        """Register until the start comes (the caller bounds the time)."""
        while not self.start.done():
            self.register()
            delay = WAIT_REFRESH if self.answered else REGISTER_RETRY
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.start), delay)
        return self.start.result()

    def close(self) -> None:
        self._release()
        if not self.start.done():
            self.start.cancel()
        elif not self.start.cancelled():
            self.start.exception()  # retrieved: no "never retrieved" warning


def _check_start(message: dict[str, Any]) -> dict[str, Any]:
    role, vports, peer = message.get("role"), message.get("vports"), message.get("peer")
    if role not in ("a", "b") or not isinstance(peer, dict):
        raise rv.Malformed("start")
    if not (
        isinstance(vports, list)
        and len(vports) == 2
        and all(isinstance(v, int) and 0 < v < 65536 for v in vports)
    ):
        raise rv.Malformed("vports")
    candidates = rv.parse_candidates(peer)
    candidates["observed"] = list(rv.parse_addr(peer.get("observed")))
    you = message.get("you")
    return {
        "role": role,
        "vports": vports,
        "peer": candidates,
        "you": list(rv.parse_addr(you)) if you is not None else None,
    }


async def create_peer_connection(
    protocol_factory: Callable[[], _P],
    session: str,
    rendezvous: str,
    *,
    stun: str | None = None,
    turn: str | None = None,
    turn_username: str | None = None,
    turn_password: str | None = None,
    timeout: float = 10.0,
    config: Config | None = None,
    local_addr: str | tuple[str, int] | None = None,
    sock: socket.socket | None = None,
    relay_delay: float = RELAY_DELAY,
    identity: Identity | None = None,
    peer_key: bytes | None = None,
    psk: bytes | None = None,
) -> tuple[asyncio.Transport, _P]:
    """Connect to the peer that names the same ``session`` at ``rendezvous``; returns
    ``(transport, protocol)`` like ``create_connection``.

    Addresses are ``"host:port"`` strings. ``stun``: a STUN server for the server-reflexive
    address (the rendezvous' own view is used too). ``turn`` (with ``turn_username`` /
    ``turn_password``): a TURN server to relay through when no direct path opens. ``timeout``
    bounds the whole call. ``local_addr`` binds the new socket; ``sock`` uses yours (left
    open on failure). ``relay_delay``: seconds the direct candidates have before the relay
    path is tried. Raises :class:`NATTraversalError` (a ``ConnectionError``).

    Secure mode: ``identity`` (ours) and ``peer_key`` (the other peer's 32-byte public key)
    authenticate both peers (Noise IK); ``psk`` (32 bytes) on its own authenticates both
    by the shared key (NNpsk0), with the other two as well it is mixed in (IKpsk2). Both
    peers need the same kind of keys. A failed handshake (a wrong key, a peer without
    secure mode, someone else in the session) raises
    :class:`~udptcp.SecureHandshakeError` on both sides, saying why.
    """
    require_aioice()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    config = _secure_config(config, identity, peer_key, psk, None)
    if peer_secure(config):
        pattern = peer_pattern(config)  # keys no peer pattern takes: ValueError now
        if config.allow_plain:
            raise ValueError(
                "allow_plain is not supported on a secure peer connection: both peers "
                "run secure mode or both run plain"
            )
    else:
        pattern = None
    if config.nat_keepalive is None:
        config = config.replace(nat_keepalive=PEER_NAT_KEEPALIVE)
    server = await _resolve(loop, rendezvous)
    family = socket.AF_INET6 if len(server) == 4 else socket.AF_INET
    stun_addr = await _resolve(loop, stun, family) if stun else None
    turn_addr = await _resolve(loop, turn, family) if turn else None

    caller_sock = sock is not None
    if sock is None:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(
                parse_hostport(local_addr)
                if local_addr
                else ("::" if family == socket.AF_INET6 else "0.0.0.0", 0)
            )
        except BaseException:
            sock.close()
            raise
    endpoint = Endpoint.existing(loop, sock)
    if endpoint is None:
        enlarge_buffers(sock)
        endpoint = Endpoint.for_socket(loop, sock, config)
    endpoint.acquire()
    stage = "discovery"
    relay: TurnRelay | None = None
    client: StunClient | None = None
    rendezvous_client: _RendezvousClient | None = None
    punch: Punch | None = None
    ok = False

    # Cleaning up after a failure takes a moment too: stop waiting a little before the
    # deadline, so the error is raised within ``timeout``.
    margin = min(0.25, 0.05 * timeout)

    def remaining() -> float:
        return max(deadline - margin - loop.time(), 0.0)

    try:
        nat: dict[str, Any] = {"local_address": _host_address(sock, server)}

        async def discover() -> None:
            nonlocal client
            if stun_addr is None:
                return
            client = StunClient(endpoint)
            try:
                mapped, _ = await client.binding(stun_addr)
                nat["mapped_address"] = mapped
            except Exception as exc:  # discovery is best effort: the rendezvous also sees us
                nat["stun_error"] = repr(exc)

        async def allocate() -> None:
            nonlocal relay
            if turn_addr is None:
                return
            relay = TurnRelay(endpoint, turn_addr, turn_username, turn_password)
            try:
                nat["relayed_address"] = await relay.allocate()
            except Exception as exc:
                nat["turn_error"] = repr(exc)
                await relay.close()
                relay = None

        # Discovery is best effort (the rendezvous sees our public address anyway, and
        # direct paths need no relay): what has not answered within its share of the time
        # is given up and noted, and the rest goes on.
        budget = min(remaining(), max(1.0, DISCOVERY_SHARE * timeout))
        tasks = [asyncio.ensure_future(discover()), asyncio.ensure_future(allocate())]
        _, pending = await asyncio.wait(tasks, timeout=budget)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        if stun_addr is not None and "mapped_address" not in nat:
            nat.setdefault("stun_error", f"no answer from {stun} within {budget:.1f} s")
        if turn_addr is not None and (relay is None or relay.relayed_address is None):
            nat.setdefault("turn_error", f"no allocation from {turn} within {budget:.1f} s")
            if relay is not None:
                await relay.close()
                relay = None

        stage = "rendezvous"
        candidates = {
            "host": [list(nat["local_address"])],
            "srflx": list(nat["mapped_address"][:2]) if "mapped_address" in nat else None,
            "relay": list(relay.relayed_address[:2]) if relay and relay.relayed_address else None,
        }
        rendezvous_client = _RendezvousClient(endpoint, server, session, candidates)
        try:
            start = await asyncio.wait_for(rendezvous_client.wait(), remaining())
        except asyncio.TimeoutError:
            raise NATTraversalError(
                f"no peer joined session {session!r} at {rendezvous} within {timeout} s"
                + ("" if rendezvous_client.answered else " (the rendezvous never answered)"),
                stage=stage,
            ) from None
        rendezvous_client.close()
        if start["you"] is not None:
            nat["observed_address"] = tuple(start["you"])
        nat["mapping"] = _mapping_behaviour(nat, stun_addr, server)

        stage = "punching"
        peer = start["peer"]
        role = start["role"]
        direct: list[Attempt] = []
        seen: set[tuple[str, int]] = set()
        for kind in ("host", "srflx", "observed"):
            items = peer[kind] if kind == "host" else [peer[kind]] if peer[kind] else []
            for item in items:
                addr = (item[0], item[1])
                if addr not in seen:
                    seen.add(addr)
                    direct.append(Attempt(kind, addr))
        # One relay per pair: a's if a has one, else b's.
        we_have_relay = relay is not None and relay.relayed_address is not None
        peer_has_relay = peer["relay"] is not None
        relay_owner = _relay_owner(role, we_have_relay, peer_has_relay)
        relayed: list[Attempt] = []
        if relay_owner == "peer":
            relayed.append(Attempt("relay", tuple(peer["relay"])))
        if relay is not None and relay_owner != "us":
            _background(relay.close())  # the other peer's relay is the one used
            nat.pop("relayed_address", None)
            relay = None
        elif relay is not None:
            public_ips = sorted(
                {peer["observed"][0]} | ({peer["srflx"][0]} if peer["srflx"] else set())
            )
            try:
                await asyncio.wait_for(relay.permit(public_ips), remaining())
            except Exception as exc:
                nat["turn_error"] = f"permission failed: {exc!r}"
        our_relay = relay

        nat["peer_candidates"] = {k: v for k, v in peer.items()}
        nat["role"] = role
        punch = Punch(
            endpoint,
            role=role,
            local_vport=start["vports"][0],
            remote_vport=start["vports"][1],
            direct=direct,
            relayed=relayed,
            relay_delay=relay_delay,
            config=config,
            protocol_factory=protocol_factory,
            relayed_by_us=(lambda addr: our_relay is not None and our_relay.routes_to(addr)),
        )
        transport = punch.start()
        assert transport._waiter is not None
        try:
            await asyncio.wait_for(asyncio.shield(transport._waiter), remaining())
        except asyncio.TimeoutError:
            punch.stop()
            transport.abort_unowned()
            tried = list(punch.attempts)
            if our_relay is not None and our_relay.relayed_address is not None:
                if not our_relay.peers_seen:
                    tried.append(
                        Attempt(
                            "relayed", our_relay.relayed_address, "the peer never came through it"
                        )
                    )
            hint = (
                "" if relayed or our_relay else " (no TURN server on either side to relay through)"
            )
            if "turn_error" in nat:
                hint += f" (TURN: {nat['turn_error']})"
            raise NATTraversalError(
                f"no path to the peer of session {session!r} opened within {timeout} s{hint}",
                stage=stage,
                attempts=tried,
            ) from None
        except SecureHandshakeError as exc:
            punch.stop()
            raise SecureHandshakeError(
                f"secure handshake ({pattern}) with the peer of session {session!r} at "
                f"{_show(punch.transport.peer if punch.transport else None)} failed: {exc}"
            ) from None
        except OSError as exc:
            punch.stop()
            raise NATTraversalError(
                f"the peer connection failed: {exc}", stage=stage, attempts=punch.attempts
            ) from exc
        punch.stop()
        chosen = punch.chosen()
        relayed_path = chosen is not None and (
            chosen.kind in ("relay", "relayed")
            or (our_relay is not None and our_relay.routes_to(chosen.address))
        )
        nat["attempts"] = [str(a) for a in punch.attempts]
        transport._extra["path"] = "relayed" if relayed_path else "direct"  # type: ignore[attr-defined]
        transport._extra["nat"] = nat  # type: ignore[attr-defined]
        if our_relay is not None:
            if relayed_path:
                _watch(transport, our_relay, endpoint, config)
            else:
                _background(our_relay.close())  # not needed: a direct path opened
            relay = None
        if endpoint.nat_keeper is not None:
            endpoint.nat_keeper.on_change.append(
                lambda remote, old, new: nat.__setitem__(
                    "mapping_changes", nat.get("mapping_changes", 0) + 1
                )
            )
        ok = True
        protocol = transport.get_protocol()
        return transport, protocol  # type: ignore[return-value]
    finally:
        if client is not None:
            client.close()
        if rendezvous_client is not None:
            rendezvous_client.close()
        if not ok:
            if punch is not None:
                punch.stop()
                if punch.transport is not None and punch.transport._protocol is None:
                    punch.transport.abort_unowned()
            if relay is not None:
                with contextlib.suppress(Exception):
                    await relay.close()
            if caller_sock and endpoint.idle_but_for_holds(1):
                endpoint.owns_socket = False
        endpoint.release()


def _show(addr: Any) -> str:
    if not addr:
        return "an unknown address"
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _mapping_behaviour(nat: dict[str, Any], stun_addr: Address | None, server: Address) -> str:
    """What two views of our address say about our NAT's mapping (RFC 4787 §4.1): the STUN
    server's and the rendezvous' (a cheap form of RFC 5780's test; ``python -m udptcp
    nat-check`` runs the whole of it)."""
    local, mapped = nat.get("local_address"), nat.get("mapped_address")
    observed = nat.get("observed_address")
    seen = mapped or observed
    if seen is not None and local is not None and tuple(seen[:2]) == tuple(local[:2]):
        return "none (no NAT)"
    if mapped is None or observed is None or stun_addr is None:
        return "unknown"
    if tuple(stun_addr[:2]) == tuple(server[:2]):
        return "unknown"
    if tuple(mapped[:2]) == tuple(observed[:2]):
        return "endpoint-independent"
    if stun_addr[0] == server[0]:
        return "address-and-port-dependent"
    return "address-dependent or address-and-port-dependent"


def _relay_owner(role: str, we_have: bool, peer_has: bool) -> str | None:
    """Whose TURN relay a pair uses: role a's if it has one, else b's ("us", "peer" or
    None). Both peers compute the same answer from what the rendezvous told them."""
    mine, theirs = ("us", "peer") if role == "a" else ("peer", "us")
    a_has, b_has = (we_have, peer_has) if role == "a" else (peer_has, we_have)
    if a_has:
        return mine
    if b_has:
        return theirs
    return None


def _watch(transport: Transport, relay: TurnRelay, endpoint: Endpoint, config: Config) -> None:
    """Keep the TURN server's binding open while the relayed connection lives, and delete
    the allocation once it is gone."""
    interval = config.nat_keepalive or PEER_NAT_KEEPALIVE
    stop = keep_binding(endpoint, relay.server, interval)
    endpoint.acquire()  # the allocation is deleted before the socket closes

    async def watch() -> None:
        try:
            while endpoint.has_connection(transport) and not endpoint.is_closed:
                await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                await relay.close()
        except asyncio.CancelledError:
            relay.abandon()  # the loop is shutting down: no time to ask the server
            raise
        finally:
            stop()
            relay.abandon()
            endpoint.release()

    _background(watch())


_watchers: set[asyncio.Future[None]] = set()


def _background(coro: Any) -> None:
    """Run ``coro`` on its own (a relay to delete, a watcher), referenced until it ends."""
    task = asyncio.ensure_future(coro)
    _watchers.add(task)
    task.add_done_callback(_watchers.discard)


async def open_peer_connection(
    session: str,
    rendezvous: str,
    *,
    limit: int = STREAM_LIMIT,
    **kw: Any,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """:func:`create_peer_connection` as streams: ``(StreamReader, StreamWriter)``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_peer_connection(lambda: protocol, session, rendezvous, **kw)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer
