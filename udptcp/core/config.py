"""Every tunable of a udptcp connection, with its default and why."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from udptcp.core.keys import Identity, check_key

#: UDP payload budget for a 1500-byte MTU path: 1500 - 20 (IPv4) - 8 (UDP).
PAYLOAD_BUDGET_IPV4 = 1472
#: 1500 - 40 (IPv6) - 8 (UDP).
PAYLOAD_BUDGET_IPV6 = 1452
TCP_HEADER_LEN = 20


# Fields checked by Config.__post_init__, by the rule they must meet.
_POSITIVE = (
    "msl",
    "rto_initial",
    "rto_min",
    "rto_max",
    "user_timeout",
    "fin_wait2_timeout",
    "keepalive_idle",
    "keepalive_interval",
    "keepalive_count",
    "initial_window",
)
_NOT_NEGATIVE = ("delayed_ack", "exit_linger", "syn_retries", "synack_retries")
_AT_LEAST_ONE = ("max_connections", "max_connections_per_address", "max_half_open_per_address")


@dataclass
class Config:
    """Connection and endpoint settings. Times are in seconds, sizes in bytes.

    One ``Config`` may be shared by many connections; it is never mutated by the stack.
    """

    #: Largest UDP payload this side sends and accepts; ``None`` picks 1472 (IPv4) or
    #: 1452 (IPv6) from the socket family. The MSS advertised is this minus 20.
    max_datagram: int | None = None
    #: Receive buffer: the most in-order data held for a paused reader plus out-of-order
    #: data held for reassembly, and so the largest window advertised. The window starts
    #: at 128 KiB and auto-tunes towards this limit as the application shows it reads more
    #: per round trip. Above 65535 bytes it needs window scaling (RFC 7323), which both
    #: sides must offer. 1 MiB fills a 100 Mbit/s path with an 80 ms RTT; more mostly
    #: fills socket buffers on fast local paths (4 MiB halved loopback throughput). Over
    #: asyncio the window also stays within half the UDP socket's receive buffer (udptcp
    #: asks for 2 MiB; Linux grants at most ``net.core.rmem_max``, 208 KiB unless raised,
    #: doubled), so a window of datagrams is never dropped there: raise rmem_max for more.
    #: (It is never clamped below 64 KiB, though: a smaller socket buffer may drop some.)
    receive_buffer: int = 1024 * 1024
    #: Most out-of-order pieces held for reassembly per connection. Each held piece is also
    #: charged its bytes plus 256 bytes of bookkeeping against ``receive_buffer`` (as Linux
    #: charges ``truesize``), so a peer that leaves a hole after every byte cannot make the
    #: queue cost many times its window; an arrival that does not fit is dropped and
    #: counted (``reassembly_dropped``), for the sender to retransmit. 4096 is where the
    #: default 1 MiB buffer runs out on 1-byte pieces anyway; adjacent arrivals join one
    #: piece, so an ordinary transfer, even through heavy loss, holds far fewer.
    max_reassembly_pieces: int = 4096
    #: Path MTU probing (RFC 8899 datagram PLPMTUD, in RFC 4821's way for a byte stream):
    #: the largest UDP payload to search up to, or ``None`` to send ``max_datagram``-sized
    #: datagrams only. Probes are real data segments; a lost probe is resent at the proven
    #: size and is not taken as congestion; a retransmission timeout while above the base
    #: size falls back to it (a black hole: the path MTU shrank) and searches again.
    pmtu_max: int | None = None
    #: Linux UDP segmentation offloads: GSO sends a run of equal-sized segments in one
    #: system call, GRO receives a train of them in one. Detected when udptcp first opens
    #: an endpoint on a socket (so the config of the first connection or server there
    #: decides) and dropped cleanly where the kernel refuses; the environment variable
    #: ``UDPTCP_OFFLOAD=0`` turns it off everywhere. Segments on the wire are the same.
    udp_offload: bool = True
    #: Smallest MSS taken from a peer's SYN; a smaller one (or 0) is raised to this, and
    #: counted (``peer_mss_clamped``). Every segment costs the same per-segment work
    #: whatever it carries, so a peer announcing MSS 1 or 13 would make us do that work
    #: for every byte (the "low MSS" resource attack of CVE-2019-11479). 216 is FreeBSD's
    #: floor (Linux's is 48): below it, the 20-byte TCP header, 28 bytes of UDP/IP and 12
    #: of timestamps outweigh a quarter of each datagram, and no path udptcp runs on needs
    #: less (IPv4 hosts must accept 576-byte datagrams, IPv6 links carry 1280).
    min_mss: int = 216
    #: Offer RFC 7323 window scaling in the SYN.
    window_scaling: bool = True
    #: Offer RFC 7323 timestamps (RTT measurement on every ACK, PAWS). They cost 12 bytes
    #: of every segment.
    timestamps: bool = True
    #: Offer selective acknowledgments (RFC 2018, with D-SACK, RFC 2883), so loss
    #: recovery (RFC 6675) repairs several holes per round trip.
    sack: bool = True
    #: Maximum segment lifetime; TIME-WAIT lasts ``2 * msl`` (RFC 9293 §3.4.1).
    msl: float = 30.0
    #: Nagle's algorithm (RFC 896). Off by default: asyncio sets TCP_NODELAY on its
    #: TCP transports, and latency-sensitive users expect it. Without it the asyncio
    #: transport still corks a write's last, short segment while earlier data is in
    #: flight, until the event loop's next turn or the next write fills it (as Linux's
    #: autocorking does for a TCP_NODELAY socket), so back-to-back writes do not each end
    #: in a small segment; a write with nothing in flight goes out at once.
    nagle: bool = False
    #: Longest an ACK for in-order data may be delayed (RFC 1122 §4.2.3.2 allows 0.5 s;
    #: Linux uses 40 ms). An ACK is sent at least for every second full-sized segment.
    #: 0 disables delayed ACKs.
    delayed_ack: float = 0.04
    #: Initial retransmission timeout (RFC 6298 §2.1 says 1 s).
    rto_initial: float = 1.0
    #: Floor of the retransmission timeout (Linux practice: 200 ms).
    rto_min: float = 0.2
    #: Ceiling of the backed-off retransmission timeout.
    rto_max: float = 60.0
    #: SYN retransmissions before ``connect`` fails with ``TimeoutError``.
    syn_retries: int = 5
    #: SYN-ACK retransmissions before a half-open passive connection is dropped.
    synack_retries: int = 5
    #: Give up (``TimeoutError``) when data stays unacknowledged this long, or window
    #: probes behind a shut window go unanswered this long (RFC 9293 §3.8.3 "user
    #: timeout"; RFC 5482).
    user_timeout: float = 120.0
    #: Keepalive probes on an idle connection (RFC 1122 §4.2.3.6): after
    #: ``keepalive_idle`` seconds with nothing received (any segment, the peer's own probe
    #: included, restarts the clock), an empty probe every ``keepalive_interval`` seconds;
    #: ``keepalive_count`` unanswered ones fail the connection with ``TimeoutError``. On by
    #: default, unlike kernel TCP, to find a dead peer within minutes rather than hours;
    #: keeping a NAT binding open is ``path_keepalive``'s job, not this one's. Each
    #: connection's first probe waits up to ``keepalive_idle / 16`` longer, a share fixed by
    #: its ISS, rounded up to a grid of ``keepalive_idle / 1024`` (connections due in one
    #: step share a wake-up), so connections opened together do not all probe in one
    #: burst. A dead peer is reported after ``keepalive_idle`` (plus that share) +
    #: ``keepalive_count * keepalive_interval`` seconds of silence: 5 min 20 s to 5 min
    #: 39 s by default.
    #: ``SO_KEEPALIVE`` (and ``TCP_KEEPIDLE``/``TCP_KEEPINTVL``/``TCP_KEEPCNT``) on the
    #: transport's socket object change it per connection.
    keepalive: bool = True
    #: Idle time before the first probe (``TCP_KEEPIDLE``). 5 minutes: one probe and one
    #: ACK per connection per period go through the whole stack on both sides, and at
    #: 25 s that cost 10,000 idle connections about 3% of a core per side; at 5 minutes,
    #: with ``path_keepalive``, about 0.2% (``python -m benchmarks.clientsock``).
    keepalive_idle: float = 300.0
    #: Time between unanswered probes.
    keepalive_interval: float = 5.0
    #: Unanswered probes before the connection fails with ``TimeoutError``.
    keepalive_count: int = 4
    #: NAT binding keepalive for connections this side opens: every this many seconds,
    #: one 20-byte STUN Binding request (RFC 8489) per (UDP socket, remote address),
    #: shared by every connection multiplexed over that pair, for as long as any of them
    #: is open. UDP bindings in NATs expire after tens of seconds of silence (RFC 4787
    #: asks for 2 minutes; many keep 30 s), after which neither side can reach the other,
    #: and outbound traffic from the side behind the NAT is what refreshes one (RFC 4787
    #: §4.3), so only the opening side sends: a server sends none and keeps no timer per
    #: client, and counts the requests as ``stun_unhandled``. The requests go whatever the
    #: connections are doing and say nothing about whether the peer is alive (that is
    #: ``keepalive``). ``None`` sends none. Ignored when ``nat_keepalive`` is set, which
    #: keeps bindings from both sides.
    path_keepalive: float | None = 25.0
    #: NAT binding maintenance, separate from TCP keepalive: every this many seconds the
    #: endpoint sends a 20-byte STUN Binding request (RFC 8489) to the connection's remote
    #: address, from both sides, whatever the connection is doing, so a NAT or firewall
    #: binding with a shorter timeout never expires. ``None`` (the default for ordinary
    #: connections) sends none; peer connections use 5 s, below the 10-30 s some home NATs
    #: keep an idle UDP binding. A peer that runs binding maintenance too answers, and a
    #: changed mapped address in its answer is reported (``nat_mapping_changed``). A plain
    #: udptcp peer drops the request as a malformed segment: it never reaches its core.
    nat_keepalive: float | None = None
    #: How long a connection closed with ``close()`` waits in FIN-WAIT-2 for the peer's FIN.
    fin_wait2_timeout: float = 60.0
    #: How long shutting down the event loop (``asyncio.run`` returning, a ``Runner``
    #: closing) waits for connections the application already closed to deliver what they
    #: still hold: their data and FIN acknowledged, as the kernel finishes a closed
    #: socket's connection after the program has gone. Connections still open are reset
    #: at once, as are these when the time is up. 0 resets them all at once.
    exit_linger: float = 10.0
    #: Congestion control algorithm name (see ``udptcp.core.congestion``): "cubic"
    #: (RFC 9438, as Linux) or "newreno" (RFC 5681/6582), or one you registered.
    congestion_control: str = "cubic"
    #: Initial congestion window in segments (RFC 6928).
    initial_window: int = 10
    #: Pace data at a multiple of cwnd / SRTT (2x in slow start, 1.2x after, as Linux
    #: does) instead of sending a whole window back to back, so a large window does not
    #: overflow a bottleneck queue at once. Bursts of up to a millisecond's worth (and
    #: at least two segments) go out together. Off by default, like CUBIC on Linux
    #: without the fq qdisc: in the simulator matrix it did not lower slow-start losses
    #: at drop-tail bottlenecks and cost goodput under reordering and bursty loss.
    pacing: bool = False
    #: Secure mode: a Noise handshake rides in the SYN and SYN-ACK, then every datagram is
    #: encrypted and authenticated (``udptcp.core.secure`` describes the protocol). A
    #: server is secure when it has an ``identity`` or a ``psk``, a client when it has a
    #: ``peer_key`` or a ``psk``. This side's static key pair: a server's is what its
    #: clients pin; a client's (used only with ``peer_key``) lets the server learn who
    #: connected (Noise IK instead of NK).
    identity: Identity | None = None
    #: The server's public key (32 bytes) a client pins: the handshake fails with
    #: ``SecureHandshakeError`` unless the server holds its private key.
    peer_key: bytes | None = None
    #: A 32-byte pre-shared key mixed into the handshake (Noise ``psk`` patterns); both
    #: sides must hold it. On its own (no keys) it authenticates both sides.
    psk: bytes | None = field(default=None, repr=False)
    #: A secure client falls back to a plain connection when the server does not speak
    #: secure mode, and a server with an identity or PSK accepts plain clients too.
    #: Off by default: the peer's lack of secure mode is an error.
    allow_plain: bool = False
    #: Write every segment this connection sends and receives, and each of its state
    #: changes, to this file as JSON lines (appended; connections may share a file). The
    #: schema is in ``udptcp.aio.tracing``; ``python -m udptcp trace FILE`` draws it as a
    #: ladder or turns it into a pcap for Wireshark. Data is not written, only its length.
    #: ``None`` (the default) traces nothing and costs nothing.
    trace: str | None = None

    # Limits against hostile peers. They apply to the connections an endpoint accepts
    # (passive opens); connections the application opens itself are its own business, except
    # that TIME-WAIT is bounded for every connection on the endpoint. "Address" means the
    # remote IP address, whatever its UDP port: a host picks its source ports freely, so a
    # per-(IP, port) limit would bound nothing. Every limit hit is counted in the endpoint's
    # ``stats`` (see ``udptcp.aio.endpoint.Endpoint``). A server's ``Config`` decides the
    # limits for the SYNs its listeners take.

    #: SYN cookies (RFC 4987 §3.6, as Linux with ``tcp_syncookies=1``): when a listener's
    #: half-open table (``create_server``'s ``backlog``) is full, or one address already has
    #: ``max_half_open_per_address`` handshakes in it, a SYN is answered with a SYN-ACK
    #: whose sequence number is a keyed MAC of the handshake, and nothing is kept until the
    #: final ACK proves the address. Such a connection's peer MSS is rounded down to one of
    #: eight common values, and it has window scaling and SACK only when timestamps are in
    #: use (they carry those choices). Off: those SYNs are dropped and counted, and clients
    #: wait for their SYN retransmission.
    syn_cookies: bool = True
    #: Connections one endpoint accepts and keeps at once, half-open ones included,
    #: TIME-WAIT not; a SYN beyond it is answered with RST. An idle connection costs about
    #: 12 KB, so 4096 of them cost ~50 MB, while one that fills its windows can hold a
    #: receive buffer and a send buffer each: the limit is what bounds that worst case. It
    #: is in the range of Linux's accept-queue ceiling (``somaxconn`` 4096) and above the
    #: ~1000 connections a default ``ulimit -n`` lets an asyncio TCP server keep.
    max_connections: int = 4096
    #: Connections accepted from one remote IP address at once (half-open included,
    #: TIME-WAIT not); a SYN beyond it is answered with RST. One host rarely needs more
    #: than a few dozen connections to one server; 256 leaves room for many hosts behind
    #: one NAT address while one address cannot take more than 1/16 of ``max_connections``.
    max_connections_per_address: int = 256
    #: Handshakes from one remote IP address held in a listener's half-open table at once.
    #: Beyond it the address's SYNs get SYN cookies (or are dropped without them), so one
    #: address cannot fill the table that every other client needs; a browser opens about
    #: six connections at once, so 32 is ample for a few hosts behind one NAT address.
    max_half_open_per_address: int = 32
    #: Connections of one endpoint kept in TIME-WAIT at once (all of them, accepted or
    #: not). A connection that would go beyond it is forgotten at once instead, as Linux
    #: does past ``tcp_max_tw_buckets``: its 4-tuple merely loses the protection against
    #: old duplicates that TIME-WAIT gives. TIME-WAIT lasts ``2 * msl`` (60 s), so 8192
    #: allows ~135 active closes per second, sustained, for ~100 MB at worst. 0 keeps none.
    max_time_wait: int = 8192

    def __post_init__(self) -> None:
        # Every create_connection may build a Config: the checks run as plain loops over
        # module-level name tuples (no closure, no call per field).
        if self.max_datagram is not None and not 20 + 64 <= self.max_datagram <= 65507:
            raise ValueError(f"Config.max_datagram must be in 84..65507, got {self.max_datagram!r}")
        if self.pmtu_max is not None and not 20 + 64 <= self.pmtu_max <= 65507:
            raise ValueError(f"Config.pmtu_max must be in 84..65507, got {self.pmtu_max!r}")
        if not 64 <= self.min_mss <= 65495:
            raise ValueError(f"Config.min_mss must be in 64..65495, got {self.min_mss!r}")
        if self.receive_buffer < 1:
            raise ValueError(f"Config.receive_buffer must be >= 1, got {self.receive_buffer!r}")
        if not isinstance(self.max_reassembly_pieces, int) or self.max_reassembly_pieces < 1:
            raise ValueError(
                f"Config.max_reassembly_pieces must be an int >= 1, got "
                f"{self.max_reassembly_pieces!r}"
            )
        # Each group is first checked at once (min() of valid values is valid); only a
        # config failing that looks field by field for the one to name.
        if not (
            min(
                self.msl,
                self.rto_initial,
                self.rto_min,
                self.rto_max,
                self.user_timeout,
                self.fin_wait2_timeout,
                self.keepalive_idle,
                self.keepalive_interval,
                self.keepalive_count,
                self.initial_window,
            )
            > 0
        ):
            for name in _POSITIVE:
                value = getattr(self, name)
                if value < 0 or value == 0:
                    raise ValueError(f"Config.{name} must be > 0, got {value!r}")
        if self.nat_keepalive is not None and (self.nat_keepalive < 0 or self.nat_keepalive == 0):
            raise ValueError(f"Config.nat_keepalive must be > 0, got {self.nat_keepalive!r}")
        if self.path_keepalive is not None and (
            self.path_keepalive < 0 or self.path_keepalive == 0
        ):
            raise ValueError(f"Config.path_keepalive must be > 0, got {self.path_keepalive!r}")
        if not min(self.delayed_ack, self.exit_linger, self.syn_retries, self.synack_retries) >= 0:
            for name in _NOT_NEGATIVE:
                value = getattr(self, name)
                if value < 0:
                    raise ValueError(f"Config.{name} must be >= 0, got {value!r}")
        limits = (
            self.max_connections,
            self.max_connections_per_address,
            self.max_half_open_per_address,
        )
        if not (all(type(value) is int for value in limits) and min(limits) >= 1):
            for name in _AT_LEAST_ONE:
                value = getattr(self, name)
                if not isinstance(value, int) or value < 1:
                    raise ValueError(f"Config.{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.max_time_wait, int) or self.max_time_wait < 0:
            raise ValueError(
                f"Config.max_time_wait must be an integer >= 0, got {self.max_time_wait!r}"
            )
        if self.rto_min > self.rto_max:
            raise ValueError("Config.rto_min must not exceed Config.rto_max")
        if self.identity is not None and not isinstance(self.identity, Identity):
            raise TypeError(
                f"Config.identity must be a udptcp.Identity, got {type(self.identity).__name__}"
            )
        if self.peer_key is not None:
            self.peer_key = check_key("Config.peer_key", self.peer_key)
        if self.psk is not None:
            self.psk = check_key("Config.psk", self.psk)

    def replace(self, **changes: object) -> Config:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def mss_for(self, family_budget: int) -> int:
        """Data bytes per segment that fit the payload budget after the 20-byte header."""
        budget = self.max_datagram if self.max_datagram is not None else family_budget
        return budget - TCP_HEADER_LEN
