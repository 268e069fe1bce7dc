"""A TURN allocation (RFC 8656) on a connection's own socket.

aioice's TURN client (``aioice.turn.TurnClientUdpProtocol``) is a datagram protocol: it
sends through whatever transport it is given and is fed what arrives. Here its transport is
a shim that sends on the endpoint's socket to the TURN server, and the endpoint hands it
every datagram from that server (:meth:`Endpoint.claim_address`: ChannelData starts with
0x40-0x4F and could pass for anything). So the allocation, its authentication (long-term
credentials, the 401/438 retry), refreshes, permissions and channel bindings are aioice's,
on the one socket whose NAT binding the peer connection already uses.

Two paths are ours, because aioice's own ones do not fit a TCP stream on a shared socket:

* Sending: aioice's ``TurnTransport.sendto`` starts a task per datagram. Here a peer's
  datagrams go out at once: as ChannelData once its channel is bound, as Send indications
  until then (RFC 8656 §11, §12), with the ChannelBind running in the background.
* Receiving: aioice drops Data indications from peers it has no channel for; the first
  datagrams of a peer reaching us through the relay are exactly those. Here ChannelData and
  Data indications from permitted peers are unwrapped and handed to the endpoint as if they
  had come from the peer's address (:meth:`Endpoint.inject`), and replies to that address
  are routed back through the relay (:meth:`Endpoint.set_route`).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any

from udptcp.aio.endpoint import Address, Endpoint, is_stun

from .errors import require_aioice

__all__ = ["TurnRelay"]

logger = logging.getLogger("udptcp")

_CHANNEL_HEADER = struct.Struct("!HH")
#: Channel numbers a client may use (RFC 8656 §12).
FIRST_CHANNEL, LAST_CHANNEL = 0x4000, 0x4FFF
#: A channel binding lasts 10 minutes and the permission it installs 5 (RFC 8656 §12,
#: §9); binding again refreshes both, well before the permission would lapse.
CHANNEL_REFRESH = 240.0
#: Most distinct peer addresses heard through the relay (each gets a route): a hostile
#: sender on a permitted IP address cycling through ports adds no more.
MAX_PEERS = 32


class _ShimTransport(asyncio.DatagramTransport):
    """What aioice's TURN protocol sends through: the endpoint's socket, to the server."""

    def __init__(self, endpoint: Endpoint, server: Address) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._server = server
        self._closed = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        if not self._closed:
            self._endpoint.send_direct(bytes(data), self._server)

    def is_closing(self) -> bool:
        return self._closed or self._endpoint.is_closed

    def close(self) -> None:
        self._closed = True

    def abort(self) -> None:
        self._closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._server
        if name == "sockname":
            return self._endpoint.sockname
        return default


class TurnRelay:
    """One TURN allocation on ``endpoint``'s socket, and the peers reached through it."""

    def __init__(
        self,
        endpoint: Endpoint,
        server: Address,
        username: str | None,
        password: str | None,
        *,
        lifetime: int = 600,
    ) -> None:
        aioice = require_aioice()
        self.stun = aioice.stun
        self.endpoint = endpoint
        self.server = tuple(server)
        self.protocol = aioice.turn.TurnClientUdpProtocol(
            self.server,
            username=username,
            password=password,
            lifetime=lifetime,
            channel_refresh_time=int(CHANNEL_REFRESH),
        )
        self._shim = _ShimTransport(endpoint, self.server)
        self.protocol.connection_made(self._shim)
        self._release = endpoint.claim_address(self.server, self._on_datagram)
        #: Our relayed transport address (the peer sends here), once allocated.
        self.relayed_address: Address | None = None
        self._permitted: set[str] = set()
        self._channels: dict[Address, int] = {}  # bound
        self._binding: dict[Address, asyncio.Task[None]] = {}
        self._by_channel: dict[int, Address] = {}
        self._next_channel = FIRST_CHANNEL
        #: Called with a peer address the first time a datagram of it comes through.
        self.on_peer: Callable[[Address], None] | None = None
        self.peers_seen: set[Address] = set()
        self._closed = False

    async def allocate(self) -> Address:
        """Create the allocation (RFC 8656 §7); returns the relayed address."""
        self.relayed_address = tuple(await self.protocol.connect())
        return self.relayed_address

    async def permit(self, ips: list[str]) -> None:
        """Install permissions (RFC 8656 §9) for the peer's IP addresses, one request each."""
        stun = self.stun
        for ip in ips:
            if ip in self._permitted:
                continue
            request = stun.Message(stun.Method.CREATE_PERMISSION, stun.Class.REQUEST)
            request.attributes["XOR-PEER-ADDRESS"] = (ip, 0)
            await self.protocol.request_with_retry(request)
            self._permitted.add(ip)

    def route(self, peer: Address) -> None:
        """Send everything for ``peer`` through the relay from now on."""
        peer = tuple(peer)
        self.endpoint.set_route(peer, self._send)

    def routes_to(self, peer: Address) -> bool:
        """True if datagrams for ``peer`` go through this relay."""
        return self.endpoint.route_of(tuple(peer)) == self._send

    # ------------------------------------------------------------------ sending

    def _send(self, data: bytes, peer: Address) -> None:
        if self._closed:
            return
        channel = self._channels.get(peer)
        if channel is not None:
            self.endpoint.send_direct(_CHANNEL_HEADER.pack(channel, len(data)) + data, self.server)
            return
        stun = self.stun
        indication = stun.Message(stun.Method.SEND, stun.Class.INDICATION)
        indication.attributes["XOR-PEER-ADDRESS"] = (peer[0], peer[1])
        indication.attributes["DATA"] = data
        self.endpoint.send_direct(bytes(indication), self.server)
        if peer not in self._binding and self._next_channel <= LAST_CHANNEL:
            channel = self._next_channel
            self._next_channel += 1
            self._binding[peer] = asyncio.ensure_future(self._bind(channel, peer))

    async def _bind(self, channel: int, peer: Address) -> None:
        try:
            while not self._closed:
                await self.protocol.channel_bind(channel, (peer[0], peer[1]))
                self._channels[peer] = channel
                self._by_channel[channel] = peer
                await asyncio.sleep(CHANNEL_REFRESH)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Send indications carry on without a channel
            logger.debug("udptcp: TURN channel bind for %r failed: %r", peer, exc)

    # ------------------------------------------------------------------ receiving

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        if len(data) >= 4 and 0x40 <= data[0] <= 0x4F:
            # ChannelData (RFC 8656 §12.4): channel number, length, data.
            channel, length = _CHANNEL_HEADER.unpack_from(data)
            peer = self._by_channel.get(channel)
            if peer is None or length > len(data) - 4:
                self.endpoint.stats["turn_dropped"] += 1
                return
            self._from_peer(data[4 : 4 + length], peer)
            return
        if not is_stun(data):
            self.endpoint.stats["turn_dropped"] += 1
            return
        stun = self.stun
        try:
            message = stun.parse_message(data)
        except Exception:  # hostile: ValueError, struct.error, UnicodeDecodeError ...
            self.endpoint.stats["turn_dropped"] += 1
            return
        if message.message_method == stun.Method.DATA and (
            message.message_class == stun.Class.INDICATION
        ):
            peer = message.attributes.get("XOR-PEER-ADDRESS")
            payload = message.attributes.get("DATA")
            if peer is None or payload is None or peer[0] not in self._permitted:
                self.endpoint.stats["turn_dropped"] += 1
                return
            self._from_peer(payload, tuple(peer))
            return
        if message.transaction_id in self.protocol.transactions:
            self.protocol.datagram_received(data, addr)
        elif not self.endpoint._offer(data, addr):  # a binding keepalive's answer
            self.endpoint.stats["turn_dropped"] += 1

    def _from_peer(self, payload: bytes, peer: Address) -> None:
        if peer not in self.peers_seen:
            if len(self.peers_seen) >= MAX_PEERS:
                self.endpoint.stats["turn_dropped"] += 1
                return
            self.peers_seen.add(peer)
            if self.endpoint.route_of(peer) is None:
                self.route(peer)
            if self.on_peer is not None:
                self.on_peer(peer)
        self.endpoint.inject(payload, peer)

    # ------------------------------------------------------------------ the end

    def abandon(self) -> None:
        """Stop relaying at once, without deleting the allocation (it expires by itself
        after its lifetime): for when there is no time to wait for the server."""
        if self._closed:
            return
        self._closed = True
        for task in self._binding.values():
            task.cancel()
        if self.protocol.refresh_task is not None:
            self.protocol.refresh_task.cancel()
        for peer in list(self.peers_seen) + list(self._channels):
            if self.endpoint.route_of(peer) == self._send:
                self.endpoint.set_route(peer, None)
        self._shim.close()
        self._release()

    async def close(self) -> None:
        """Delete the allocation and stop relaying."""
        if self._closed:
            return
        self._closed = True
        for task in self._binding.values():
            task.cancel()
        for peer in list(self._channels) + list(self.peers_seen):
            if self.endpoint.route_of(peer) == self._send:
                self.endpoint.set_route(peer, None)
        try:
            if self.relayed_address is not None and not self.endpoint.is_closed:
                await asyncio.wait_for(self.protocol.delete(), 2.0)
        except (asyncio.TimeoutError, Exception) as exc:
            logger.debug("udptcp: TURN allocation delete: %r", exc)
        finally:
            if self.protocol.refresh_task is not None:
                self.protocol.refresh_task.cancel()
            self._shim.close()
            self._release()
