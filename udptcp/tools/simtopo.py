"""Topologies for the simulated network, and the figures used to judge a run.

:func:`single_path` is one sender and one receiver across a bottleneck; :func:`shared_bottleneck`
is the classic dumbbell: N senders, each behind its own access link, meet at a router whose
one outgoing link (a single :class:`~udptcp.tools.simnet.Link`, hence a single drop-tail
queue) carries every flow to the receiving side. Each flow is its own connection, and each
connection's :class:`~udptcp.tools.simnet.FlowLog` gives the delivered-bytes time series from
which goodput over a window and Jain's fairness index are computed.

The router is not a host: a route is a sequence of links, and the bottleneck link sits on
every forward route.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from udptcp.core.config import Config
from udptcp.core.connection import Connection
from udptcp.core.segment import Segment
from udptcp.tools.simnet import BulkSource, FlowLog, GilbertElliott, Link, SimHost, SimNet, mbit

#: IPv4 + UDP header bytes a datagram costs on a real link beyond its UDP payload.
IPV4_UDP_OVERHEAD = 28


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index: 1 when all shares are equal, 1/n when one flow has it all."""
    if not values:
        raise ValueError("no values")
    total = sum(values)
    squares = sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else 1.0


def mathis_rate(mss: int, rtt: float, loss: float) -> float:
    """Mathis et al. steady-state TCP throughput, bytes per second: MSS/RTT × 1.22/√p."""
    if loss <= 0:
        return math.inf
    return mss / rtt * 1.22 / math.sqrt(loss)


def bdp(rate: float, rtt: float) -> int:
    """Bandwidth-delay product in bytes (``rate`` in bytes per second)."""
    return int(rate * rtt)


def bottleneck_link(
    rate_mbit: float,
    delay: float,
    *,
    queue: int | None = None,
    loss: float = 0.0,
    bursty: GilbertElliott | None = None,
    **impairments: object,
) -> Link:
    """A rate-limited link with a drop-tail queue of ``queue`` bytes (None: one BDP of the
    path whose one-way delay is ``delay``, so RTT = 2 × delay; at least 8 datagrams)."""
    rate = mbit(rate_mbit)
    if queue is None:
        queue = max(bdp(rate, 2 * delay), 8 * 1500)
    return Link(
        rate=rate,
        delay=delay,
        loss=loss,
        burst=bursty,
        queue_limit=1 << 30,
        queue_bytes=queue,
        overhead=IPV4_UDP_OVERHEAD,
        **impairments,  # type: ignore[arg-type]
    )


class DropFirstCopy:
    """A scripted loss for :attr:`Link.drop`: drops the first transmission of each data
    segment holding one of the stream ``offsets`` of one connection, and nothing else.

    Call :meth:`track` with the sending connection before its data flows (right after
    ``connect``), so sequence numbers can be turned into stream offsets.
    """

    def __init__(self, offsets: Iterable[int]) -> None:
        self.pending = set(offsets)
        self.dropped: list[tuple[int, int]] = []  # (start, end) stream offsets dropped
        self._base: int | None = None
        self._port: int | None = None

    def track(self, conn: Connection) -> DropFirstCopy:
        self._base = (conn.iss + 1) & 0xFFFFFFFF
        self._port = conn.local_port
        return self

    def __call__(self, seg: Segment) -> bool:
        if self._base is None or not seg.payload or seg.src_port != self._port:
            return False
        start = (seg.seq - self._base) & 0xFFFFFFFF
        end = start + len(seg.payload)
        hit = {o for o in self.pending if start <= o < end}
        if not hit:
            return False
        self.pending -= hit
        self.dropped.append((start, end))
        return True


@dataclass
class Flow:
    """One bulk transfer: ``sender``'s connection ``client`` to ``receiver``."""

    sender: SimHost
    receiver: SimHost
    client: Connection
    source: BulkSource
    started: float
    _server: Connection | None = field(default=None, repr=False)

    @property
    def server(self) -> Connection | None:
        """The receiver's side of the connection, once accepted."""
        if self._server is None:
            self._server = self.receiver.conns.get(
                (self.sender.name, self.client.remote_port, self.client.local_port)
            )
        return self._server

    @property
    def sent_log(self) -> FlowLog:
        return self.sender.flows[self.client]

    @property
    def received_log(self) -> FlowLog | None:
        server = self.server
        return self.receiver.flows[server] if server is not None else None

    @property
    def delivered(self) -> int:
        log = self.received_log
        return log.bytes_delivered if log is not None else 0

    @property
    def complete(self) -> bool:
        """Every byte arrived and the receiver saw the end of the stream."""
        server = self.server
        return (
            server is not None
            and self.source.produced == self.source.total
            and self.receiver.delivered(server) == self.source.total
            and self.receiver.got_eof(server)
        )

    @property
    def intact(self) -> bool:
        """The receiver's SHA-256 of what it got equals the source's of what it sent."""
        log = self.received_log
        return log is not None and log.sha256.digest() == self.source.sha256.digest()


@dataclass
class Topology:
    """Hosts and links of a built topology, and the flows started on it."""

    net: SimNet
    senders: list[SimHost]
    receivers: list[SimHost]
    forward: list[Link]  # the bottleneck (shared) link(s) on the data path
    reverse: list[Link]
    flows: list[Flow] = field(default_factory=list)

    def start_flow(
        self, i: int, size: int, *, seed: int | None = None, low_water: int = 1 << 20
    ) -> Flow:
        """Open a connection from sender ``i`` and stream ``size`` bytes, then close."""
        sender = self.senders[i]
        receiver = self.receivers[i % len(self.receivers)]
        client = sender.connect(receiver, 80)
        source = BulkSource(size, seed=self.net.seed * 1000 + i if seed is None else seed)
        sender.stream(client, source, low_water=low_water, then="close")
        flow = Flow(sender, receiver, client, source, self.net.now)
        self.flows.append(flow)
        return flow


def single_path(
    net: SimNet,
    forward: Link,
    reverse: Link | None = None,
    *,
    config: Config | None = None,
    receiver_config: Config | None = None,
) -> Topology:
    """Sender ``s`` and receiver ``r`` joined directly by ``forward`` (data) and ``reverse``
    (ACKs: by default unimpaired with the same delay)."""
    s = net.host("s", config=config, retain=False)
    r = net.host("r", listening=True, config=receiver_config or config, retain=False)
    reverse = reverse or Link(delay=forward.delay)
    net.connect_hosts(s, r, forward, reverse)
    return Topology(net, [s], [r], [forward], [reverse])


def shared_bottleneck(
    net: SimNet,
    n: int,
    bottleneck: Link,
    *,
    access_delays: Sequence[float] | None = None,
    reverse_delay: float | None = None,
    configs: Sequence[Config] | Config | None = None,
    receiver_config: Config | None = None,
    receiver_per_flow: bool = False,
) -> Topology:
    """The dumbbell: senders ``s0..s{n-1}`` → router → ``bottleneck`` → receiver ``r``
    (or ``r0..r{n-1}`` with ``receiver_per_flow``).

    Sender i's access link adds ``access_delays[i]`` (default 0) each way, so flow i's RTT is
    ``2 × (access_delays[i] + bottleneck.delay)``. ACKs return over one shared unimpaired
    link with ``reverse_delay`` (default ``bottleneck.delay``).
    """
    delays = list(access_delays) if access_delays is not None else [0.0] * n
    if len(delays) != n:
        raise ValueError(f"need {n} access delays, got {len(delays)}")
    if configs is None or isinstance(configs, Config):
        per_flow = [configs or Config()] * n
    else:
        per_flow = list(configs)
        if len(per_flow) != n:
            raise ValueError(f"need {n} configs, got {len(per_flow)}")
    senders = [net.host(f"s{i}", config=per_flow[i], retain=False) for i in range(n)]
    rcfg = receiver_config or Config()
    if receiver_per_flow:
        receivers = [net.host(f"r{i}", listening=True, config=rcfg, retain=False) for i in range(n)]
    else:
        receivers = [net.host("r", listening=True, config=rcfg, retain=False)]
    if not bottleneck.name:
        bottleneck.name = "bottleneck"
    back = Link(delay=bottleneck.delay if reverse_delay is None else reverse_delay, name="return")
    for i, s in enumerate(senders):
        r = receivers[i % len(receivers)]
        up = Link(delay=delays[i], name=f"{s.name}>router")
        down = Link(delay=delays[i], name=f"router>{s.name}")
        net.add_route(s, r, [up, bottleneck])
        net.add_route(r, s, [back, down])
    return Topology(net, senders, receivers, [bottleneck], [back])
