"""A user-space NAT emulator on real UDP sockets in 127.0.0.0/8, runnable without root.

Each :class:`EmulatedNat` stands in front of udptcp endpoints ("hosts" behind it). A host's
endpoint sends through the NAT (``Endpoint.egress``): the NAT finds or makes a *mapping*
for (host address, destination) and sends the datagram from that mapping's own UDP socket,
bound to the NAT's public address (``127.0.<n>.1``), so whoever receives it - a rendezvous,
a STUN/TURN server, another NAT's mapping - sees the NAT's public address and port, as on
the Internet. A datagram arriving at a mapping socket passes the NAT's *filter* and is
handed to the host's endpoint (``Endpoint.deliver``) with its real source address.

Behaviours (RFC 4787 terms):

* ``mapping``: "endpoint-independent" (one mapping per host address, for every
  destination), "address-dependent" (one per destination IP) or
  "address-and-port-dependent" (one per destination address: a "symmetric" NAT);
* ``filtering``: the same three words: what may come in through a mapping - anyone, the IPs
  it sent to, or only the exact addresses it sent to;
* ``port``: "preserve" (the host's port when it is free, else the next free one) or
  "random";
* ``timeout``: seconds a mapping lives without traffic (refreshed by outbound traffic, and
  by inbound when ``inbound_refresh``); an expired mapping's socket is closed, and a new
  one gets a new port.

Datagrams to another NAT's private addresses are dropped (different LANs), as is everything
inbound that no mapping accepts (counted in ``stats``). The :data:`CONE` and
:data:`SYMMETRIC` presets match the kernel lab's nftables NATs (``udptcp.tools.natlab``):
endpoint-independent mapping with port preservation, or a random port per destination, both
with address-and-port-dependent filtering.
"""

from __future__ import annotations

import asyncio
import collections
import random
import socket
from dataclasses import dataclass
from typing import Any

from udptcp.aio.endpoint import Address, Endpoint

__all__ = ["CONE", "SYMMETRIC", "Behaviour", "EmulatedNat", "NatNetwork"]

MAPPINGS = ("endpoint-independent", "address-dependent", "address-and-port-dependent")


@dataclass(frozen=True)
class Behaviour:
    """How one emulated NAT maps and filters (see the module docstring)."""

    mapping: str = "endpoint-independent"
    filtering: str = "address-and-port-dependent"
    port: str = "preserve"
    timeout: float = 120.0
    inbound_refresh: bool = False

    def __post_init__(self) -> None:
        if self.mapping not in MAPPINGS or self.filtering not in MAPPINGS:
            raise ValueError(f"mapping and filtering must be one of {MAPPINGS}")
        if self.port not in ("preserve", "random"):
            raise ValueError("port must be 'preserve' or 'random'")


#: The kernel lab's "cone" NAT: Linux masquerade (port kept, conntrack filtering).
CONE = Behaviour()
#: The kernel lab's "symmetric" NAT: masquerade random.
SYMMETRIC = Behaviour(mapping="address-and-port-dependent", port="random")


def _key(behaviour: Behaviour, dst: Address) -> tuple[Any, ...]:
    if behaviour.mapping == "endpoint-independent":
        return ()
    if behaviour.mapping == "address-dependent":
        return (dst[0],)
    return (dst[0], dst[1])


class _Mapping(asyncio.DatagramProtocol):
    """One public address:port of the NAT, for one host address (and destination key)."""

    def __init__(self, nat: EmulatedNat, host: Address, key: tuple[Any, ...]) -> None:
        self.nat = nat
        self.host = host
        self.key = key
        self.transport: asyncio.DatagramTransport | None = None
        self.public: Address = ("", 0)
        self.sent_to: set[Address] = set()
        self.last = 0.0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.nat._inbound(self, data, (addr[0], addr[1]))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class EmulatedNat:
    """One NAT (see the module docstring); made by :meth:`NatNetwork.nat`."""

    def __init__(self, network: NatNetwork, public_ip: str, behaviour: Behaviour) -> None:
        self.network = network
        self.public_ip = public_ip
        self.behaviour = behaviour
        self.stats: collections.Counter[str] = collections.Counter()
        self._hosts: dict[Address, Endpoint] = {}
        self._mappings: dict[tuple[Address, tuple[Any, ...]], _Mapping] = {}
        self._random = random.Random(network.seed * 7919 + len(network.nats))
        self._sweeper: asyncio.TimerHandle | None = None
        self._opening: set[asyncio.Future[None]] = set()

    # ------------------------------------------------------------------ hosts

    def attach(self, endpoint: Endpoint) -> None:
        """Put ``endpoint`` behind this NAT: all it sends goes through the NAT."""
        host = tuple(endpoint.sockname[:2])
        self._hosts[host] = endpoint
        self.network._private[host] = self
        endpoint.egress = lambda data, addr: self._outbound(host, data, (addr[0], addr[1]))

    def mappings(self) -> list[tuple[Address, Address]]:
        """``(host address, public address)`` of every live mapping."""
        return [(m.host, m.public) for m in self._mappings.values()]

    # ------------------------------------------------------------------ outbound

    def _outbound(self, host: Address, data: bytes, dst: Address) -> None:
        self.stats["out"] += 1
        owner = self.network._private.get(dst)
        if owner is not None and owner is not self:
            self.stats["dropped_private_destination"] += 1
            return
        if owner is self:
            # Same LAN: straight to the host (no NAT in between).
            self._hosts[dst].deliver(data, host)
            return
        if self._ready(host, dst):
            self._send_now(host, data, dst)
        else:
            task = asyncio.ensure_future(self._send(host, data, dst))
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)

    def _ready(self, host: Address, dst: Address) -> bool:
        mapping = self._mappings.get((host, _key(self.behaviour, dst)))
        return mapping is not None and mapping.transport is not None

    def _send_now(self, host: Address, data: bytes, dst: Address) -> None:
        mapping = self._mappings[(host, _key(self.behaviour, dst))]
        mapping.sent_to.add(dst)
        mapping.last = self.network.loop.time()
        assert mapping.transport is not None
        mapping.transport.sendto(data, dst)

    async def _send(self, host: Address, data: bytes, dst: Address) -> None:
        key = (host, _key(self.behaviour, dst))
        mapping = self._mappings.get(key)
        if mapping is None:
            mapping = self._mappings[key] = _Mapping(self, host, key[1])
            await self._open(mapping)
            self.stats["mappings"] += 1
        while mapping.transport is None:  # another datagram is opening it
            await asyncio.sleep(0)
        if self._mappings.get(key) is mapping:
            self._send_now(host, data, dst)

    async def _open(self, mapping: _Mapping) -> None:
        loop = self.network.loop
        ports: list[int] = []
        if self.behaviour.port == "preserve":
            ports = [mapping.host[1] + i for i in range(16) if mapping.host[1] + i < 65536]
        else:
            ports = [self._random.randint(20000, 60999) for _ in range(16)]
        last_error: OSError | None = None
        for port in ports + [0]:
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: mapping, local_addr=(self.public_ip, port)
                )
            except OSError as exc:
                last_error = exc
                continue
            mapping.transport = transport  # type: ignore[assignment]
            mapping.public = transport.get_extra_info("sockname")[:2]
            mapping.last = loop.time()
            self._arm_sweeper()
            return
        raise OSError(f"no public port free on {self.public_ip}: {last_error}")

    # ------------------------------------------------------------------ inbound

    def _inbound(self, mapping: _Mapping, data: bytes, src: Address) -> None:
        if self._mappings.get((mapping.host, mapping.key)) is not mapping:
            return
        filtering = self.behaviour.filtering
        if filtering == "address-and-port-dependent":
            allowed = src in mapping.sent_to
        elif filtering == "address-dependent":
            allowed = any(dst[0] == src[0] for dst in mapping.sent_to)
        else:
            allowed = True
        if not allowed:
            self.stats["filtered"] += 1
            return
        self.stats["in"] += 1
        if self.behaviour.inbound_refresh:
            mapping.last = self.network.loop.time()
        endpoint = self._hosts.get(mapping.host)
        if endpoint is not None:
            endpoint.deliver(data, src)

    # ------------------------------------------------------------------ timeouts

    def _arm_sweeper(self) -> None:
        if self._sweeper is None:
            interval = min(self.behaviour.timeout / 4, 1.0)
            self._sweeper = self.network.loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.network.loop.time()
        for key, mapping in list(self._mappings.items()):
            if mapping.transport is not None and now - mapping.last >= self.behaviour.timeout:
                del self._mappings[key]
                mapping.close()
                self.stats["expired"] += 1
        if self._mappings:
            self._arm_sweeper()

    def close(self) -> None:
        """Drop every mapping and detach the hosts."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in self._opening:
            task.cancel()
        for mapping in self._mappings.values():
            mapping.close()
        self._mappings.clear()
        for host, endpoint in self._hosts.items():
            endpoint.egress = None
            self.network._private.pop(host, None)
        self._hosts.clear()


class NatNetwork:
    """NATs that know each other's private addresses (so one LAN cannot reach another)."""

    def __init__(self, seed: int = 0) -> None:
        self.loop = asyncio.get_running_loop()
        self.seed = seed
        self.nats: list[EmulatedNat] = []
        self._private: dict[Address, EmulatedNat] = {}

    def nat(self, behaviour: Behaviour = CONE) -> EmulatedNat:
        """A new NAT, public address ``127.0.<n>.1``."""
        nat = EmulatedNat(self, f"127.0.{len(self.nats) + 1}.1", behaviour)
        self.nats.append(nat)
        return nat

    def host_socket(self) -> socket.socket:
        """A socket for a host behind a NAT (a private address: 127.0.0.1, any port)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        return sock

    def close(self) -> None:
        """Close every NAT."""
        for nat in self.nats:
            nat.close()
