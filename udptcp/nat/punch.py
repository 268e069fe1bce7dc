"""Punching: one simultaneous open, its SYN sent to every candidate from one socket.

The connection is an ordinary udptcp connection (one ISN, one state machine) whose remote
address is not known yet. It is registered on the endpoint under a placeholder address
before anything is awaited; the endpoint routes what it sends there through
:meth:`Punch._fan_out` (a copy to every candidate) and asks :meth:`Punch._hook` about
segments with its virtual ports from addresses it is not bound to
(:meth:`Endpoint.add_punch`). The first plausible one binds the connection to that address
(:meth:`Endpoint.relocate`): a SYN, or a SYN,ACK that acknowledges our SYN, from one of the
peer's candidate IP addresses, from whatever port (a peer-reflexive address: the mapping the
peer's NAT made towards us), or from the peer through our TURN relay.

Which path wins must be the same on both sides. Role "a" (the rendezvous' first registrant)
decides: it binds to the first plausible arrival and keeps it. Role "b" follows: until its
connection is established it re-binds to wherever a's latest handshake segment came from,
so a SYN,ACK that a sent on its chosen path pulls b onto that path even if b had first heard
a copy of a's SYN on another one.

Schedule: the core sends the SYN once and retransmits it on TCP's backoff (1, 2, 4 s); a
NAT drops the first SYNs until the other side's have opened it, so copies of the current
handshake segment (the SYN, or once bound the SYN,ACK) go out every :data:`PUNCH_INTERVAL`
until the connection is established. Candidates on the relay path (the peer's TURN relayed
address) join after ``relay_delay``, so a direct path that works wins.

Secure mode (a ``config`` with keys, :mod:`udptcp.core.secure_peer`): role "b" is the Noise
initiator and role "a" the responder. The punching is the same; the connection's session
sees each segment that binds it before the TCP state machine does, and a REJECT RST
answering our SYN is plausible too, so a refused handshake fails at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from udptcp.aio import securelink
from udptcp.aio.endpoint import Address, Endpoint
from udptcp.aio.transport import Transport
from udptcp.core.config import Config
from udptcp.core.connection import State
from udptcp.core.secure_peer import peer_secure
from udptcp.core.secure_wire import REJECT, option_body
from udptcp.core.segment import ACK, RST, SYN, Segment, encode
from udptcp.core.seq import seq_add

from .errors import Attempt

__all__ = ["PLACEHOLDER", "PUNCH_INTERVAL", "Punch"]

#: The remote address a punching connection is registered under until it is bound. Nothing
#: is ever sent to it: its route fans out.
PLACEHOLDER: Address = ("0.0.0.0", 0)
#: Copies of the handshake segment go out this often while punching.
PUNCH_INTERVAL = 0.2
#: Most addresses learned from the peer's datagrams (peer-reflexive) that are recorded; a
#: hostile sender cycling through ports on the peer's IP address adds no more.
MAX_LEARNED = 16
_HANDSHAKE = (State.SYN_SENT, State.SYN_RECEIVED)


class Punch:
    """One punching connection (see the module docstring)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        role: str,
        local_vport: int,
        remote_vport: int,
        direct: list[Attempt],
        relayed: list[Attempt],
        relay_delay: float,
        config: Config,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        relayed_by_us: Callable[[Address], bool] = lambda addr: False,
        interval: float = PUNCH_INTERVAL,
    ) -> None:
        self.endpoint = endpoint
        self.loop = endpoint.loop
        self.role = role
        self.local_vport = local_vport
        self.remote_vport = remote_vport
        self.attempts = direct + relayed
        self._direct = direct
        self._relayed = relayed
        self.relay_delay = relay_delay
        self.config = config
        self.protocol_factory = protocol_factory
        self.relayed_by_us = relayed_by_us
        self.interval = interval
        self.allowed_ips = {a.address[0] for a in self.attempts}
        self.transport: Transport | None = None
        self.bound: Address | None = None
        self._relay_on = relay_delay <= 0
        self._syn: bytes | None = None
        self._started = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def targets(self) -> list[Attempt]:
        """Where copies go now: every direct candidate, the relay ones after the delay."""
        return self._direct + self._relayed if self._relay_on else list(self._direct)

    def start(self) -> Transport:
        """Register the connection and send its first SYNs; nothing is awaited."""
        endpoint = self.endpoint
        self._started = self.loop.time()
        endpoint.set_route(PLACEHOLDER, self._fan_out)
        for attempt in self.targets():
            attempt.outcome = "no answer"
        config, session = self.config, None
        if peer_secure(config):
            session, config = securelink.peer_session(
                endpoint,
                config,
                initiator=self.role == "b",
                peer=PLACEHOLDER,
                local_vport=self.local_vport,
                remote_vport=self.remote_vport,
            )
        transport = endpoint.connect(
            PLACEHOLDER,
            self.protocol_factory,
            config,
            remote_vport=self.remote_vport,
            local_vport=self.local_vport,
            secure=session,
        )
        self.transport = transport
        endpoint.add_punch(transport, self._hook)
        self._timer = self.loop.call_later(self.interval, self._tick)
        return transport

    def stop(self) -> None:
        """Stop sending copies (the connection is established, or given up)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.endpoint.route_of(PLACEHOLDER) == self._fan_out:
            self.endpoint.set_route(PLACEHOLDER, None)

    # ------------------------------------------------------------------ sending

    def _fan_out(self, data: bytes, addr: Address) -> None:
        if len(data) > 13 and data[13] & SYN:
            self._syn = data
        for attempt in self.targets():
            attempt.sent += 1
            self.endpoint.send_datagram(data, attempt.address)

    def _tick(self) -> None:
        self._timer = None
        transport = self.transport
        if transport is None or self.endpoint.is_closed:
            return
        conn = transport.conn
        if conn.state not in _HANDSHAKE:
            self.stop()
            return
        if not self._relay_on and self.loop.time() - self._started >= self.relay_delay:
            self._relay_on = True
            for attempt in self._relayed:
                attempt.outcome = "no answer"
        if self.bound is None:
            if self._syn is not None:
                self._fan_out(self._syn, PLACEHOLDER)
        elif conn.state is State.SYN_RECEIVED:
            # Our SYN,ACK on the bound path (the core's own retransmission waits an RTO).
            self._count_sent(self.bound)
            seal = transport.seal or encode  # a secure SYN,ACK carries its Noise message
            self.endpoint.send_datagram(seal(conn._syn_ack_again()), self.bound)
        elif self._syn is not None:
            self._count_sent(self.bound)
            self.endpoint.send_datagram(self._syn, self.bound)
        self._timer = self.loop.call_later(self.interval, self._tick)

    def _count_sent(self, addr: Address) -> None:
        attempt = self._attempt_for(addr)
        if attempt is not None:
            attempt.sent += 1

    # ------------------------------------------------------------------ receiving

    def _attempt_for(self, addr: Address) -> Attempt | None:
        for attempt in self.attempts:
            if attempt.address == addr:
                return attempt
        if len(self.attempts) - len(self._direct) - len(self._relayed) >= MAX_LEARNED:
            return None
        kind = "relayed" if self.relayed_by_us(addr) else "prflx"
        attempt = Attempt(kind, addr, "answered")
        self.attempts.append(attempt)
        return attempt

    def _plausible(self, seg: Segment) -> bool:
        """A handshake segment of our peer's connection, as far as we can tell."""
        assert self.transport is not None
        conn = self.transport.conn
        flags = seg.flags
        ours = seq_add(conn.iss, 1)
        if flags & RST:
            # In secure mode the peer refuses a handshake with a REJECT RST answering our
            # SYN (it cannot be guessed without our ISS); any other RST is not our peer's.
            body = option_body(seg.options) if self.transport.secure_session is not None else None
            return (
                body is not None
                and body[:1] == bytes((REJECT,))
                and bool(flags & ACK)
                and seg.ack == ours
            )
        if flags & SYN:
            if flags & ACK and seg.ack != ours:
                return False
            return conn.state is not State.SYN_RECEIVED or seg.seq == conn.irs
        # The third segment of the handshake, on a path b had not heard on yet.
        return (
            bool(flags & ACK)
            and conn.state is State.SYN_RECEIVED
            and seg.ack == ours
            and seg.seq == seq_add(conn.irs, 1)
        )

    def _hook(self, seg: Segment, addr: Address) -> bool:
        transport = self.transport
        if transport is None or transport.conn.state not in _HANDSHAKE:
            return False  # settled: copies from other paths are dropped, nothing recorded
        if addr[0] not in self.allowed_ips and not self.relayed_by_us(addr):
            self.endpoint.stats["punch_foreign"] += 1
            return False
        attempt = self._attempt_for(addr)
        if attempt is None:
            return False
        attempt.received += 1
        if attempt.outcome in ("no answer", "not tried"):
            attempt.outcome = "answered"
        if not self._plausible(seg):
            return False
        if self.bound is not None and self.role == "a":
            return False  # a keeps the path it chose
        self.endpoint.relocate(transport, addr)
        self.bound = addr
        return True

    def chosen(self) -> Attempt | None:
        """The attempt the connection is bound to, marked "chosen"."""
        if self.bound is None:
            return None
        attempt = self._attempt_for(self.bound)
        if attempt is not None:
            attempt.outcome = "chosen"
        return attempt
