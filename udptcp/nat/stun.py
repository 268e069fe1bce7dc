"""STUN on a connection's own socket: discovery (RFC 8489) and NAT behaviour (RFC 5780).

:class:`StunClient` runs STUN transactions through an :class:`~udptcp.aio.endpoint.Endpoint`
(the socket that will carry the connection, so the mapping it learns is the one the peer
will see): requests go out with :meth:`Endpoint.send_datagram`, responses come back through
a datagram handler, matched by transaction ID. Message encoding, parsing and the request
retransmission schedule are aioice's (``aioice.stun``).

:func:`nat_behaviour` runs RFC 5780 §4.3 (mapping) and §4.4 (filtering) tests against a
server that has an alternate address (OTHER-ADDRESS in its answers, as coturn gives when it
listens on two IP addresses).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from udptcp.aio.endpoint import Address, Endpoint, is_stun

from .errors import require_aioice

__all__ = ["NatBehaviour", "StunClient", "nat_behaviour"]

#: Retransmissions of one STUN request (RFC 8489 §6.2.1: Rc = 7 in all; fewer here, as a
#: peer connection has a timeout of its own): 0.5 s, 1 s, 2 s between them.
RETRANSMISSIONS = 3

#: CHANGE-REQUEST flags (RFC 5780 §7.2).
CHANGE_IP = 0x4
CHANGE_PORT = 0x2


class StunClient:
    """STUN transactions from one endpoint's socket."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.stun = require_aioice().stun
        self.endpoint = endpoint
        self._transactions: dict[bytes, Any] = {}
        self._remove = endpoint.add_datagram_handler(self._on_datagram)

    def close(self) -> None:
        """Stop hearing responses (transactions still running fail on their timeout)."""
        self._remove()

    # aioice's Transaction sends through this (its TransactionSender protocol).
    def send_stun(self, message: Any, addr: Address) -> None:
        """Send one STUN message to ``addr`` on the endpoint's socket."""
        self.endpoint.send_datagram(bytes(message), tuple(addr))

    async def request(
        self, message: Any, addr: Address, retransmissions: int = RETRANSMISSIONS
    ) -> tuple[Any, Address]:
        """Run one transaction; returns ``(response, source address)``. Raises aioice's
        ``TransactionTimeout`` or ``TransactionFailed`` (an error response)."""
        transaction = self.stun.Transaction(message, tuple(addr), self, retransmissions)
        self._transactions[message.transaction_id] = transaction
        try:
            return await transaction.run()  # type: ignore[no-any-return]
        finally:
            self._transactions.pop(message.transaction_id, None)

    def _on_datagram(self, data: bytes, addr: Address) -> bool:
        if not is_stun(data):
            return False
        transaction = self._transactions.get(data[8:20])
        if transaction is None:
            return False
        try:
            message = self.stun.parse_message(data)
        except Exception:  # hostile: ValueError, struct.error, UnicodeDecodeError ...
            self.endpoint.stats["stun_bad_responses"] += 1
            return True
        if message.message_class in (self.stun.Class.RESPONSE, self.stun.Class.ERROR):
            transaction.response_received(message, addr)
        return True

    async def binding(
        self, server: Address, *, change: int = 0, retransmissions: int = RETRANSMISSIONS
    ) -> tuple[Address, Any]:
        """A Binding request to ``server``: our address as it sees it, and the response."""
        stun = self.stun
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        if change:
            request.attributes["CHANGE-REQUEST"] = change
        response, _ = await self.request(request, server, retransmissions)
        mapped = response.attributes.get("XOR-MAPPED-ADDRESS") or response.attributes.get(
            "MAPPED-ADDRESS"
        )
        if mapped is None:
            raise ValueError(f"STUN server {server!r} answered without a mapped address")
        return tuple(mapped), response


@dataclass
class NatBehaviour:
    """What RFC 5780 tests found out about the NAT in front of a socket."""

    local: Address
    mapped: Address | None = None
    #: "none" (no NAT), "endpoint-independent", "address-dependent",
    #: "address-and-port-dependent", or "unknown" (the server has no alternate address).
    mapping: str = "unknown"
    filtering: str = "unknown"
    other_address: Address | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "local": list(self.local[:2]),
            "mapped": list(self.mapped[:2]) if self.mapped else None,
            "mapping": self.mapping,
            "filtering": self.filtering,
            "other_address": list(self.other_address[:2]) if self.other_address else None,
            "notes": self.notes,
        }


async def nat_behaviour(
    endpoint: Endpoint, server: Address, *, timeout: float = 3.0
) -> NatBehaviour:
    """RFC 5780 §4.3 and §4.4 from ``endpoint``'s socket against ``server``."""
    client = StunClient(endpoint)
    stun = client.stun
    result = NatBehaviour(local=endpoint.sockname)

    async def binding(dest: Address, change: int = 0) -> Address | None:
        try:
            mapped, _ = await asyncio.wait_for(client.binding(dest, change=change), timeout)
            return mapped
        except (asyncio.TimeoutError, stun.TransactionError, ValueError):
            return None

    try:
        try:
            mapped, response = await asyncio.wait_for(client.binding(server), timeout)
        except (asyncio.TimeoutError, stun.TransactionError, ValueError) as exc:
            result.notes.append(f"no answer from {server!r}: {exc!r}")
            return result
        result.mapped = mapped
        other = response.attributes.get("OTHER-ADDRESS") or response.attributes.get(
            "CHANGED-ADDRESS"
        )
        if tuple(mapped[:2]) == tuple(result.local[:2]):
            result.mapping = "none"
        if other is None:
            result.notes.append("the server gave no OTHER-ADDRESS: it cannot run RFC 5780 tests")
            return result
        other = tuple(other)
        result.other_address = other
        # §4.3 mapping: the alternate IP with the primary port, then the alternate address.
        if result.mapping != "none":
            x2 = await binding((other[0], server[1]))
            if x2 is None:
                result.notes.append("no answer from the alternate IP address")
            elif x2 == mapped:
                result.mapping = "endpoint-independent"
            else:
                x3 = await binding(other)
                if x3 is None:
                    result.notes.append("no answer from the alternate address")
                else:
                    result.mapping = (
                        "address-dependent" if x3 == x2 else "address-and-port-dependent"
                    )
        # §4.4 filtering: ask for an answer from the other IP and port, then the other port.
        if await binding(server, CHANGE_IP | CHANGE_PORT) is not None:
            result.filtering = "endpoint-independent"
        elif await binding(server, CHANGE_PORT) is not None:
            result.filtering = "address-dependent"
        else:
            result.filtering = "address-and-port-dependent"
        return result
    finally:
        client.close()
