"""The endpoint's side of secure mode (:mod:`udptcp.core.secure` has the protocol).

An endpoint gets a :class:`SecureLink` when its first secure connection or listener appears;
until then secure mode costs a plain endpoint one attribute test per datagram. The link:

* finds the connection of each datagram by the readable header (UDP address and virtual
  ports) *before* decoding it, and hands sealed datagrams to that connection's
  :class:`~udptcp.core.secure.SecureSession`, plain ones (checksum-verified) to its
  handshake rules, and only what those return to the TCP state machine;
* tries a sealed datagram from an address that matches no connection against the secure
  connections with the same virtual ports (at most :data:`MAX_CANDIDATES`): the one whose
  keys authenticate it owns it, and may move there after a path check;
* answers offering SYNs on a listener: accepted (a new session), refused (a REJECT RST),
  or declined by a listener without secure mode (a DECLINE option on its SYN-ACK).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from udptcp.core.config import PAYLOAD_BUDGET_IPV4, PAYLOAD_BUDGET_IPV6, Config
from udptcp.core.connection import State
from udptcp.core.secure import (
    HandshakeRefused,
    SecureSession,
    client_secure,
    server_secure,
)
from udptcp.core.secure_peer import PeerSession
from udptcp.core.secure_wire import (
    ACCEPT_EXTRA,
    DECLINE_EXTRA,
    REFUSED_PLAIN,
    SEAL_HEADER_LEN,
    SEAL_OVERHEAD,
    SEALED_OPTION,
    TAG_LEN,
    decline_option,
    find_offer,
    is_sealed,
    reject_segment,
    stripped,
)
from udptcp.core.segment import ACK, RST, SYN, MalformedSegment, Segment, decode, encode

from .interfaces import Address, ExtensionHost, HostedTransport

# What this module may use of the endpoint and its transports (it imports neither).
Endpoint = ExtensionHost[Any]
Transport = HostedTransport

__all__ = [
    "MAX_CANDIDATES",
    "Accepted",
    "SecureLink",
    "accept_syn",
    "cookie_allowed",
    "client_secure",
    "peer_session",
    "secure_config",
    "server_secure",
]

#: Most connections a sealed datagram from an unknown address is tried against.
MAX_CANDIDATES = 8
_PORTS = struct.Struct("!HH")

Attach = Callable[["Transport"], None]
# SecureLink._open_plain(): "not for the secure path after all" (a SYN reopening TIME-WAIT,
# a datagram that is no segment).
_PLAIN_PATH = object()
# is_sealed(), spelled out on the hot path: the smallest size.
_SEALED_MIN = SEAL_HEADER_LEN + TAG_LEN


def _raise(exc: BaseException) -> None:
    raise exc


def secure_config(config: Config, family_budget: int) -> Config:
    """``config`` for a secure connection: the datagram budget (and the path MTU probing
    ceiling) made smaller by the sealing overhead, so sealed datagrams fit the path."""
    budget = config.max_datagram if config.max_datagram is not None else family_budget
    return config.replace(
        max_datagram=budget - SEAL_OVERHEAD,
        pmtu_max=None if config.pmtu_max is None else config.pmtu_max - SEAL_OVERHEAD,
    )


def _budget(endpoint: Endpoint) -> int:
    return PAYLOAD_BUDGET_IPV6 if endpoint.family == socket.AF_INET6 else PAYLOAD_BUDGET_IPV4


def link_for(endpoint: Endpoint) -> SecureLink:
    """The endpoint's link, made on first use."""
    if endpoint.secure is None:
        endpoint.secure = SecureLink(endpoint)
    return endpoint.secure


class _Decliner:
    """A listener without secure mode answering an offer: its SYN-ACK says DECLINE, so the
    client can tell a udptcp server without keys from a peer that never heard of them."""

    __slots__ = ("transport",)

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def __call__(self, seg: Segment) -> bytes:
        if seg.flags & SYN:
            return encode(decline_option(seg))
        self.transport.seal = None  # past the handshake: a plain connection
        return encode(seg)


class Accepted(NamedTuple):
    """How a listener takes a SYN (see :func:`accept_syn`)."""

    syn: Segment
    """The SYN for the TCP state machine (handshake bytes stripped)."""
    config: Config
    """The connection's config (a smaller datagram budget in secure mode)."""
    attach: Attach | None
    """Called with the new transport, to put secure mode (or a DECLINE) on it."""
    wire_extra: tuple[int, int]
    """Bytes added on the way out to each SYN-ACK and to each other segment, which the
    connection's anti-amplification budget counts."""


def accept_syn(
    endpoint: Endpoint, config: Config, syn: Segment, addr: Address, size: int | None = None
) -> Accepted | None:
    """A listener with ``config`` receives ``syn`` (a datagram of ``size`` bytes): how to
    accept it, or None when it has been answered (a REJECT RST) and nothing more is to be
    done."""
    offer = find_offer(syn)
    secure = server_secure(config)
    if offer is None:
        if secure and not config.allow_plain:
            endpoint.stats["secure_plain_refused"] += 1
            _reject(endpoint, syn, addr, REFUSED_PLAIN, size)
            return None
        return Accepted(syn, config, None, (0, 0))
    if not secure:
        endpoint.stats["secure_declined"] += 1
        return Accepted(stripped(syn), config, _decline, (DECLINE_EXTRA, 0))
    link = link_for(endpoint)
    try:
        session = SecureSession.accept(config, syn, peer=addr, stats=endpoint.stats)
    except HandshakeRefused as exc:
        endpoint.stats["secure_refused"] += 1
        _reject(endpoint, syn, addr, exc.reason, size)
        return None
    derived = secure_config(config, _budget(endpoint))

    def attach(transport: Transport) -> None:
        link.add(transport, session)

    return Accepted(stripped(syn), derived, attach, (ACCEPT_EXTRA, SEAL_OVERHEAD))


def cookie_allowed(config: Config, syn: Segment) -> bool:
    """May a listener with ``config`` answer ``syn`` with a SYN cookie? Only when it would
    take it in plain mode: a cookie holds no handshake state, so a secure handshake cannot
    resume from its final ACK (and a secure-only listener takes no plain client)."""
    if not server_secure(config):
        return True
    return config.allow_plain and find_offer(syn) is None


def _decline(transport: Transport) -> None:
    transport.seal = _Decliner(transport)


def _reject(endpoint: Endpoint, syn: Segment, addr: Address, reason: int, size: int | None) -> None:
    rst = reject_segment(syn, reason)
    # A stateless reply to an unproven address: the endpoint holds it to 3x the SYN.
    if rst is not None and endpoint._send_stateless(addr, rst, syn, size):
        endpoint.stats["rst_sent"] += 1


def client_session(
    endpoint: Endpoint, config: Config, peer: Address, local_vport: int, remote_vport: int
) -> tuple[SecureSession, Config]:
    """The session of an outgoing secure connection and the config its core gets."""
    link_for(endpoint)
    session = SecureSession.connect(
        config,
        local_port=local_vport,
        remote_port=remote_vport,
        peer=peer,
        stats=endpoint.stats,
    )
    return session, secure_config(config, _budget(endpoint))


def peer_session(
    endpoint: Endpoint,
    config: Config,
    *,
    initiator: bool,
    peer: Address,
    local_vport: int,
    remote_vport: int,
) -> tuple[PeerSession, Config]:
    """The session of a secure peer connection (:mod:`udptcp.core.secure_peer`) and the
    config its core gets: without the keys (the session holds them, and
    :meth:`Endpoint.connect` must not make a client session of its own) and with the
    smaller datagram budget."""
    link_for(endpoint)
    session = PeerSession(
        config,
        initiator,
        local_port=local_vport,
        remote_port=remote_vport,
        peer=peer,
        stats=endpoint.stats,
    )
    bare = config.replace(identity=None, peer_key=None, psk=None)
    return session, secure_config(bare, _budget(endpoint))


class SecureLink:
    """Secure mode on one endpoint: see the module docstring."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        # (local vport, remote vport) -> secure transports, for datagrams from new addresses.
        self._by_ports: dict[tuple[int, int], list[Transport]] = {}

    def add(self, transport: Transport, session: SecureSession) -> None:
        """Run ``transport`` through ``session`` from now on."""
        transport.secure_session = session
        transport.seal = session.seal
        self._by_ports.setdefault((session.local_port, session.remote_port), []).append(transport)

    def forget(self, transport: Transport) -> None:
        """The endpoint forgot ``transport``."""
        session = transport.secure_session
        if session is None:
            return
        ports = (session.local_port, session.remote_port)
        others = self._by_ports.get(ports)
        if others is not None:
            if transport in others:
                others.remove(transport)
            if not others:
                del self._by_ports[ports]

    def _detach(self, transport: Transport) -> None:
        """A client fell back to plain mode (``allow_plain``)."""
        self.forget(transport)
        transport.secure_session = None
        transport.seal = None

    def on_datagram(
        self,
        data: bytes,
        addr: Address,
        trains: dict[Any, list[Segment]] | None,  # the endpoint's, keyed by its transports
    ) -> bool:
        """Take a datagram that belongs to a secure connection; False leaves it to the
        endpoint's plain path (plain connections, new SYNs, closed ports)."""
        if len(data) < 20:
            return False
        src_port, dst_port = _PORTS.unpack_from(data)
        endpoint = self.endpoint
        transport = endpoint._conns.get((addr, dst_port, src_port))
        if transport is None:
            if not is_sealed(data):
                return False
            transport = self._owner(data, addr, dst_port, src_port)
            if transport is None:
                endpoint.stats["secure_unknown_sealed"] += 1
                return True
        session = transport.secure_session
        if session is None:
            return False
        # A bug in here must cost this connection only, as one in the core does.
        if (
            len(data) >= _SEALED_MIN
            and data[20:24] == SEALED_OPTION
            and data[12] == 0x80
            and data[24] >= 0x80
        ):
            # The hot path, once per datagram of an established connection.
            try:
                seg = session.open_sealed(data, addr, endpoint.loop.time())
            except Exception as exc:
                endpoint._guarded(transport, _raise, exc)
                return True
            if session.outbox or session.peer != transport.peer:
                endpoint._guarded(transport, self._settle, transport, session)
        else:
            seg = endpoint._guarded(transport, self._open_plain, transport, session, data, addr)
            if seg is _PLAIN_PATH:
                return False
        if seg is not None:
            assert isinstance(seg, Segment)
            if endpoint.trace is not None:
                endpoint._trace("in", addr, seg)
            if trains is not None and not seg.flags & SYN:
                trains.setdefault(transport, []).append(seg)  # as _route would
            else:
                endpoint._route(seg, transport.peer, trains)
        return True

    def _open_plain(
        self, transport: Transport, session: SecureSession, data: bytes, addr: Address
    ) -> Segment | object | None:
        """A plain datagram for a secure connection: the segment its handshake rules let
        through, None, or :data:`_PLAIN_PATH` for a SYN the endpoint's own rules must see."""
        endpoint = self.endpoint
        try:
            plain = decode(data)
        except MalformedSegment:
            # Not a segment: the endpoint counts it (and sees whether it answers a SYN of
            # ours from a service that is not udptcp).
            return _PLAIN_PATH
        if plain.flags & (SYN | ACK | RST) == SYN and transport.conn.state is State.TIME_WAIT:
            return _PLAIN_PATH  # may open a new incarnation: the endpoint's SYN rules
        seg = session.open_plain(plain, addr, endpoint.loop.time())
        self._settle(transport, session)
        return seg

    def open_punched(self, transport: Transport, seg: Segment, addr: Address) -> Segment | None:
        """A plain segment that bound a punching secure connection to ``addr`` (the
        endpoint's punch hook relocated it there): what its session lets through."""
        session = transport.secure_session
        assert session is not None
        return self.endpoint._guarded(  # type: ignore[no-any-return]
            transport, self._open_segment, transport, session, seg, addr
        )

    def _open_segment(
        self, transport: Transport, session: SecureSession, seg: Segment, addr: Address
    ) -> Segment | None:
        opened = session.open_plain(seg, addr, self.endpoint.loop.time())
        self._settle(transport, session)
        return opened

    def _owner(self, data: bytes, addr: Address, dst_port: int, src_port: int) -> Transport | None:
        """The secure connection whose keys authenticate a datagram from a new address."""
        candidates = self._by_ports.get((dst_port, src_port))
        if not candidates:
            return None
        conns = self.endpoint._conns
        for transport in candidates[:MAX_CANDIDATES]:
            session = transport.secure_session
            if (
                session is not None
                and conns.holds(transport.key, transport)
                and session.authentic(data)
            ):
                return transport
        return None

    def _settle(self, transport: Transport, session: SecureSession) -> None:
        """Carry out what the session decided: send, fail, fall back or move."""
        endpoint = self.endpoint
        if session.outbox:
            out, session.outbox = session.outbox, []
            for datagram, addr in out:
                # Through the route to ``addr`` if it has one (a peer behind a relay).
                endpoint.send_datagram(datagram, addr)
        if session.failure is not None:
            transport.conn.fail(session.failure, endpoint.loop.time())
            transport.pump()
        elif session.fell_back:
            self._detach(transport)
        elif session.peer != transport.peer:
            self._migrate(transport, session)

    def _migrate(self, transport: Transport, session: SecureSession) -> None:
        """The peer proved it is at ``session.peer`` now: re-key the connection there."""
        endpoint = self.endpoint
        old_key = transport.key
        new_key = (session.peer, old_key[1], old_key[2])
        other = endpoint._conns.get(new_key)
        if other is not None and other is not transport:
            # Another connection holds that 4-tuple already: stay where we are.
            endpoint.stats["secure_migration_refused"] += 1
            session.peer = transport.peer
            return
        endpoint._conns.remove(old_key, transport)
        endpoint._conns.add(new_key, transport)
        transport.moved(session.peer)
