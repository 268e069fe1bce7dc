"""NAT binding maintenance: keep a UDP mapping open, per socket and remote address.

TCP keepalive (``Config.keepalive``) asks whether the peer is alive, after minutes of
silence; a NAT forgets an idle UDP binding after as little as 10-30 s, and then neither side
can reach the other again (in plain mode a connection never moves to a new address). Binding
maintenance is the other job: a small datagram to each remote address at a fixed interval,
whatever the connection is doing, from both sides (RFC 4787 §4.3: a binding is refreshed by
outbound traffic, and on many NATs only by that).

The datagram is a STUN Binding request (RFC 8489 §6.1), 20 bytes, as ICE's keepalives are
STUN (RFC 8445 §11): a udptcp endpoint tells STUN apart before decoding, and a plain udptcp
peer that does not keep bindings drops it as a malformed segment (its checksum fails), so it
never reaches a connection's state machine. A peer that keeps bindings too answers requests
from the addresses it keeps, with the address it sees the request come from
(XOR-MAPPED-ADDRESS); when that address changes, our NAT has given us a new mapping (the old
binding expired, or the NAT restarted), and the change is counted (``nat_mapping_changed``),
logged and handed to the ``on_change`` callbacks. Answers and the parsing of answers use
aioice's STUN codec (the ``nat`` extra); without it requests still go out, which is what
keeps the binding, and nothing is answered or checked.

One :class:`BindingKeeper` per endpoint, with one timer. It keeps the remote address of
every connection made with ``Config(nat_keepalive=...)`` once that connection is past its
handshake (a server's accepted connections too, so a listener-only socket keeps its peers'
bindings), plus any address given to :func:`keep_binding` (a rendezvous, a STUN or TURN
server).

The path keepalive (``Config.path_keepalive``, on by default) is the same request from the
opening side only, one per (socket, remote address) however many connections are
multiplexed over that pair: :meth:`BindingKeeper.keep_path` files the address when a
connection is opened, and the address is dropped at the first round that finds no
connection to it left. A client behind a NAT is the side whose binding expires, and
outbound traffic is what refreshes it; a server answers nothing (it counts the request as
``stun_unhandled``) and keeps no per-client timer, so ten thousand clients cost it ten
thousand incoming 20-byte datagrams per interval, dropped before any decoding, where a
TCP keepalive per connection costs both sides a probe and an ACK through the whole stack.
A server that keeps bindings itself (``nat_keepalive``) answers them as it answers any.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from udptcp.core.connection import State

from .interfaces import Address, ExtensionHost, HostedTransport

if TYPE_CHECKING:
    import asyncio

# What this module may use of the endpoint and its transports (it imports neither).
Endpoint = ExtensionHost[Any]
Transport = HostedTransport

__all__ = ["BindingKeeper", "MappingChange", "keep_binding", "keeper_for"]

logger = logging.getLogger("udptcp")

#: STUN Binding request and success response message types (RFC 8489 §5, §18.2).
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
_HEADER = struct.Struct("!HHI12s")
_COOKIE = 0x2112A442
#: States in which a connection's remote address is settled (not a punching placeholder).
_SETTLED = frozenset(State) - {State.CLOSED, State.SYN_SENT, State.SYN_RECEIVED, State.LISTEN}

#: ``on_change(remote, old_mapped, new_mapped)``: our address as ``remote`` sees it moved.
MappingChange = Callable[["Address", "Address", "Address"], None]


def binding_request() -> tuple[bytes, bytes]:
    """A STUN Binding request without attributes: ``(transaction id, datagram)``."""
    txid = os.urandom(12)
    return txid, _HEADER.pack(BINDING_REQUEST, 0, _COOKIE, txid)


def _stun_codec() -> Any:
    try:
        from aioice import stun
    except ImportError:
        return None
    return stun


class BindingKeeper:
    """Binding maintenance for one endpoint (see the module docstring)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.loop: asyncio.AbstractEventLoop = endpoint.loop
        self._transports: dict[Transport, float] = {}
        self._explicit: dict[Address, float] = {}
        self._paths: dict[Address, float] = {}  # keep_path(): while connections go there
        self._last: dict[Address, float] = {}
        self._txids: dict[Address, bytes] = {}  # the one outstanding request per address
        #: Our address as each remote address last reported it.
        self.mapped: dict[Address, Address] = {}
        #: Called on every change of a reported mapping.
        self.on_change: list[MappingChange] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self._remove_handler: Callable[[], None] | None = endpoint.add_datagram_handler(
            self._on_stun
        )

    # ------------------------------------------------------------------ what is kept

    def track(self, transport: Transport, interval: float) -> None:
        """Keep ``transport``'s remote address bound while the connection lives."""
        self._transports[transport] = interval
        self._arm(self.loop.time() + interval)

    def keep(self, addr: Address, interval: float) -> Callable[[], None]:
        """Keep ``addr`` bound until the returned function is called."""
        addr = tuple(addr)
        self._explicit[addr] = interval
        self._last.setdefault(addr, self.loop.time())
        self._arm(self.loop.time() + interval)

        def stop() -> None:
            if self._explicit.get(addr) == interval:
                del self._explicit[addr]

        return stop

    def keep_path(self, addr: Address, interval: float) -> None:
        """Keep ``addr`` bound for as long as any connection of the endpoint goes there:
        one request per ``interval`` for all of them (``Config.path_keepalive``)."""
        known = self._paths.get(addr)
        if known is not None and known <= interval:
            return  # the usual case: another connection over the same pair
        self._paths[addr] = interval
        now = self.loop.time()
        self._last.setdefault(addr, now)
        self._arm(now + interval)

    def addresses(self) -> dict[Address, float]:
        """Every address kept now, with its interval (the shortest one asked for)."""
        out = dict(self._explicit)
        if self._paths:
            # One pass over the connection table per round (every interval, not per
            # segment): a path is kept while any connection, of any state, goes there.
            live = {key[0] for key in self.endpoint._conns}
            for addr, interval in list(self._paths.items()):
                if addr not in live:
                    del self._paths[addr]
                    continue
                out[addr] = min(interval, out.get(addr, interval))
        conns = self.endpoint._conns
        for transport, interval in list(self._transports.items()):
            if not conns.holds(transport.key, transport):
                del self._transports[transport]  # the connection is gone
                continue
            if transport.conn.state not in _SETTLED:
                continue
            addr = transport.peer
            out[addr] = min(interval, out.get(addr, interval))
        return out

    # ------------------------------------------------------------------ the timer

    def _arm(self, when: float) -> None:
        if self.endpoint.is_closed:
            return
        if self._timer_when is not None and self._timer_when <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._tick)
        self._timer_when = when

    def _tick(self) -> None:
        self._timer = None
        self._timer_when = None
        endpoint = self.endpoint
        if endpoint.is_closed:
            self.close()
            return
        now = self.loop.time()
        kept = self.addresses()
        for addr in list(self._last):
            if addr not in kept:
                del self._last[addr]
                self._txids.pop(addr, None)
        if not kept and not self._transports:
            return  # nothing to keep: the timer stops until something is tracked
        next_due = now + min(kept.values(), default=1.0)
        for addr, interval in kept.items():
            last = self._last.setdefault(addr, now)
            due = last + interval
            if due <= now + 0.001:
                self._send(addr)
                self._last[addr] = now
                due = now + interval
            next_due = min(next_due, due)
        self._arm(next_due)

    def _send(self, addr: Address) -> None:
        txid, datagram = binding_request()
        self._txids[addr] = txid
        self.endpoint.stats["nat_keepalives_sent"] += 1
        self.endpoint.send_datagram(datagram, addr)

    def close(self) -> None:
        """Stop: no more requests, no more answers."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_when = None
        if self._remove_handler is not None:
            self._remove_handler()
            self._remove_handler = None
        self._transports.clear()
        self._explicit.clear()
        self._paths.clear()
        if getattr(self.endpoint, "nat_keeper", None) is self:
            self.endpoint.nat_keeper = None

    # ------------------------------------------------------------------ STUN in

    def _known(self, addr: Address) -> bool:
        # O(1): the addresses kept (``_last`` holds every address of the last round), so a
        # flood of requests costs nothing per connection. A peer's first request may come
        # before our first round for it: unanswered once, answered from the next on.
        return addr in self._explicit or addr in self._last

    def _on_stun(self, data: bytes, addr: Address) -> bool:
        if len(data) < 20:
            return False
        kind, _length, _cookie, txid = _HEADER.unpack_from(data)
        if kind == BINDING_REQUEST:
            if not self._known(addr):
                return False  # answer only peers we keep: no reflection for strangers
            self._answer(txid, addr)
            return True
        if kind == BINDING_SUCCESS and self._txids.get(addr) == txid:
            del self._txids[addr]
            self._on_answer(data, addr)
            return True
        return False

    def _answer(self, txid: bytes, addr: Address) -> None:
        stun = _stun_codec()
        endpoint = self.endpoint
        if stun is None:
            endpoint.stats["nat_keepalives_unanswered"] += 1
            return
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=txid,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = (addr[0], addr[1])
        endpoint.stats["nat_keepalives_answered"] += 1
        endpoint.send_datagram(bytes(response), addr)

    def _on_answer(self, data: bytes, addr: Address) -> None:
        stun = _stun_codec()
        if stun is None:
            return
        try:
            message = stun.parse_message(data)
            mapped = tuple(message.attributes["XOR-MAPPED-ADDRESS"])
        except Exception:  # a hostile answer: aioice raises ValueError, struct.error, ...
            self.endpoint.stats["nat_keepalive_bad_answers"] += 1
            return
        old = self.mapped.get(addr)
        self.mapped[addr] = mapped
        if old is not None and old != mapped:
            self.endpoint.stats["nat_mapping_changed"] += 1
            logger.warning(
                "udptcp: NAT mapping towards %r changed from %r to %r", addr, old, mapped
            )
            for callback in list(self.on_change):
                try:
                    callback(addr, old, mapped)
                except Exception:
                    logger.exception("udptcp: NAT mapping change callback failed")


def keeper_for(endpoint: Endpoint) -> BindingKeeper:
    """The endpoint's :class:`BindingKeeper`, made on first use."""
    keeper = endpoint.nat_keeper
    if keeper is None or keeper._remove_handler is None:
        keeper = endpoint.nat_keeper = BindingKeeper(endpoint)
    return keeper


def keep_binding(endpoint: Endpoint, addr: Address, interval: float) -> Callable[[], None]:
    """Keep the NAT binding from ``endpoint``'s socket to ``addr`` open with a STUN Binding
    request every ``interval`` seconds (a rendezvous, a STUN or TURN server, or a peer of a
    listener-only socket). Returns a function that stops it."""
    if interval <= 0:
        raise ValueError(f"interval must be > 0, got {interval!r}")
    return keeper_for(endpoint).keep(addr, interval)
