"""Passive opens: listeners, and what a SYN (or a SYN cookie's ACK) for no connection gets.

A SYN for no connection meets the listener of its virtual port (or the wildcard one), and
the limits (:mod:`udptcp.aio.limits`): past ``max_connections`` or
``max_connections_per_address`` it is refused with RST; past ``max_half_open_per_address``
or a full backlog it is answered statelessly with a SYN cookie (RFC 4987 §3.6) when
``Config.syn_cookies`` allows, else dropped; otherwise it makes a half-open connection that
the listener hands to its server on ESTABLISHED. A bare ACK for no connection that checks
out against a recent cookie makes the connection then.

A part of :class:`~udptcp.aio.endpoint.Endpoint` (see :mod:`udptcp.aio.endpointbase`).
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from udptcp.core.config import PAYLOAD_BUDGET_IPV4, PAYLOAD_BUDGET_IPV6, Config
from udptcp.core.connection import Connection
from udptcp.core.cookies import check_ts_echo
from udptcp.core.segment import Segment
from udptcp.core.seq import seq_add

from . import natkeep, observe, securelink, tracing
from .endpointbase import Listener
from .interfaces import Address
from .interfaces import ConnectionKey as Key
from .routing import Routing
from .transport import Transport

__all__ = ["PassiveOpens", "payload_budget"]


def payload_budget(family: int) -> int:
    """Default UDP payload budget for a socket family (docs/architecture.md#wire-format)."""
    return PAYLOAD_BUDGET_IPV6 if family == socket.AF_INET6 else PAYLOAD_BUDGET_IPV4


class PassiveOpens(Routing):
    """Listeners and the connections made from SYNs (an Endpoint part)."""

    # ------------------------------------------------------------------ listeners

    def add_listener(self, vport: int | None, listener: Listener) -> None:
        """Accept SYNs for ``vport`` (``None``: any virtual port no other listener has)."""
        if self._closed:
            raise OSError(errno.EBADF, "udptcp endpoint is closed")
        if vport in self._listeners:
            where = "any virtual port" if vport is None else f"virtual port {vport}"
            raise OSError(errno.EADDRINUSE, f"{self.sockname!r} already listens on {where}")
        self._listeners[vport] = listener

    @property
    def has_listeners(self) -> bool:
        """True while a server listens on this endpoint."""
        return bool(self._listeners)

    def remove_listener(self, vport: int | None, listener: Listener) -> None:
        """Stop accepting SYNs for ``vport``; existing connections are not touched."""
        if self._listeners.get(vport) is listener:
            del self._listeners[vport]

    # ------------------------------------------------------------------ SYNs

    def mss_for(self, config: Config) -> int:
        """Data bytes per segment this endpoint accepts for a connection using ``config``."""
        return config.mss_for(payload_budget(self.family))

    def _listener_for(self, seg: Segment) -> Listener | None:
        listener = self._listeners.get(seg.dst_port) or self._listeners.get(None)
        return listener if listener is not None and listener.serving else None

    def _on_syn(
        self, seg: Segment, addr: Address, key: Key, size: int | None, iss: int | None = None
    ) -> None:
        """A SYN for no connection: refuse it, answer it with a cookie, or open a half-open
        connection (with ``iss`` when it reopens a TIME-WAIT 4-tuple)."""
        listener = self._listener_for(seg)
        if listener is None:
            self._reply_rst(seg, addr, size)  # a closed port (RFC 9293 §3.10.7.1)
            return
        config = listener.config
        host = addr[0]
        if self._limits.refuses(config, host):
            # RST, as a full Linux listener with syncookies does not do but a server
            # refusing a client does: the client learns at once instead of after its SYN
            # retries, and a forged SYN earns its victim one RST no larger than the SYN.
            self._reply_rst(seg, addr, size)
            return
        now = self.loop.time()
        over_address = self._limits.half_open_from(host) >= config.max_half_open_per_address
        if over_address or listener.pending >= listener.backlog:
            if over_address:
                self.stats["half_open_per_address"] += 1
                limit = config.max_half_open_per_address
                observe.limit_hit("half_open_per_address", host, limit)
            if config.syn_cookies and securelink.cookie_allowed(config, seg):
                self._send_cookie(seg, addr, config, now, size)
            elif not over_address:
                # Like Linux with a full queue and no cookies: drop (no RST, which would
                # fail a client that a SYN retry a second later might get through).
                self.stats["syn_dropped_backlog"] += 1
                observe.limit_hit("syn_dropped_backlog", observe._addr(addr), listener.backlog)
            return
        attach = None
        wire_extra = (0, 0)
        if securelink.server_secure(config) or (seg.options is not None and seg.options.unknown):
            # Secure mode: an offer to accept or decline, or a plain SYN to refuse.
            accepted = securelink.accept_syn(self, config, seg, addr, size)
            if accepted is None:
                return
            seg, config, attach, wire_extra = accepted
        if iss is None:
            local = self.sockname
            iss = self.isn.isn_for(
                local[0], local[1], seg.dst_port, addr[0], addr[1], seg.src_port, now
            )
        conn = Connection.accept(
            config,
            seg,
            iss=iss,
            mss=self.mss_for(config),
            now=now,
            received=size,
            wire_extra=wire_extra,
        )
        transport = Transport(self, conn, addr, listener=listener)
        if attach is not None:
            attach(transport)
        listener.add_pending(transport)
        self._conns.add(key, transport)
        if config.nat_keepalive is not None:
            natkeep.keeper_for(self).track(transport, config.nat_keepalive)
        if config.trace is not None:
            tracing.trace_connection(self, transport, config.trace, (seg, addr))
        self._guarded(transport, transport.pump)

    def _send_cookie(
        self, seg: Segment, addr: Address, config: Config, now: float, size: int | None
    ) -> None:
        """Answer ``seg`` with a SYN cookie's SYN-ACK and forget it (RFC 4987 §3.6)."""
        opts = seg.options
        peer_mss = opts.mss if opts is not None and opts.mss else 536  # RFC 9293 §3.7.1
        cookie = self.cookies.make(
            _cookie_peer(addr), seg.dst_port, seg.src_port, seg.seq, peer_mss, now
        )
        syn_ack = Connection.cookie_syn_ack(
            config, seg, iss=cookie, mss=self.mss_for(config), now=now
        )
        if self._send_stateless(addr, syn_ack, seg, size):
            self.stats["syn_cookies_sent"] += 1
            backlog = self._listener_for(seg)
            limit = backlog.backlog if backlog is not None else 0
            observe.limit_hit("syn_cookies_sent", observe._addr(addr), limit)

    def _on_cookie_ack(self, seg: Segment, addr: Address, key: Key, size: int | None) -> bool:
        """A bare ACK for no connection: if it completes a SYN cookie's handshake, make the
        connection and return True. False: it is a stray segment (answered with RST)."""
        now = self.loop.time()
        if not self.cookies.recently_made(now):
            return False
        listener = self._listener_for(seg)
        if listener is None or not listener.config.syn_cookies:
            return False
        config = listener.config
        iss = seq_add(seg.ack, -1)
        peer_mss = self.cookies.check(
            _cookie_peer(addr), seg.dst_port, seg.src_port, seq_add(seg.seq, -1), iss, now
        )
        wscale: int | None = None
        sack = False
        ts = seg.options.timestamps if seg.options is not None else None
        if peer_mss is not None and ts is not None and config.timestamps:
            # The window-scale and SACK choices come back in the TSecr (RFC 7323 says a
            # peer echoes our TSval); one that cannot be our cookie's TSval is refused.
            choices = check_ts_echo(ts[1], iss, now)
            if choices is None:
                peer_mss = None
            else:
                wscale, sack = choices
        if peer_mss is None:
            self.stats["syn_cookies_rejected"] += 1
            return False
        if self._limits.refuses(config, addr[0]):
            self._reply_rst(seg, addr, size)
            return True
        conn = Connection.from_cookie(
            config,
            seg,
            iss=iss,
            mss=self.mss_for(config),
            peer_mss=peer_mss,
            wscale=wscale,
            sack=sack,
            now=now,
        )
        self.stats["syn_cookies_accepted"] += 1
        transport = Transport(self, conn, addr, listener=listener)
        self._conns.add(key, transport)
        if config.trace is not None:
            tracing.trace_connection(self, transport, config.trace, (seg, addr))
        self._guarded(transport, transport.pump)
        return True


def _cookie_peer(addr: Address) -> tuple[Any, ...]:
    """The part of a UDP address a SYN cookie is bound to: host and port."""
    return (addr[0], addr[1])
