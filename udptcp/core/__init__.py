"""The sans-I/O TCP engine: everything udptcp knows about TCP, and nothing about sockets,
asyncio or the clock (every call that needs the time takes ``now``).

This is the core's public face, what the asyncio adapter, the tools and tests build on::

    conn = Connection.connect(Config(), local_port=4000, remote_port=80, iss=iss,
                              mss=1452, now=now)
    for seg in conn.take_segments(): ...          # to the wire: encode(seg)
    conn.receive(decode(datagram), now)           # from the wire
    for event in conn.take_events(): ...          # Connected, DataReceived, ...
    conn.handle_timer(now) when now >= conn.get_timer()

The modules behind it, one idea each: ``segment`` (the RFC 9293 §3.1 codec), ``seq``
(sequence arithmetic modulo 2**32), ``connection`` (the state machine), ``rtt`` (RFC 6298),
``buffers``, ``sack``, ``rack``, ``congestion`` and ``hystart`` (loss recovery and congestion
control), ``isn`` and ``cookies`` (RFC 6528 ISNs, SYN cookies), ``amplification``, ``events``,
``errors``, ``config``, and secure mode (``noise``, ``keys``, ``secure``, ``secure_wire``).
Nothing here imports ``udptcp.aio`` or ``udptcp.tools`` (``tests/test_imports.py`` checks).
"""

from __future__ import annotations

import sys as _sys

# First, before any other module of the package: with UDPTCP_PURE=1, or when the compiled
# build (setup.py) is older than its sources, it makes the sources what the imports below load.
from udptcp.core import _pure  # noqa: F401  # isort: split
from udptcp.core.config import Config
from udptcp.core.connection import Connection, LocalProtocolError, State, rst_for
from udptcp.core.events import (
    Connected,
    ConnectionClosed,
    DataReceived,
    EofReceived,
    Event,
)
from udptcp.core.segment import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    MalformedSegment,
    Options,
    Segment,
    decode,
    encode,
)
from udptcp.core.seq import seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt

__all__ = [
    "ACK",
    "COMPILED",
    "CWR",
    "ECE",
    "FIN",
    "PSH",
    "RST",
    "SYN",
    "URG",
    "Config",
    "Connected",
    "Connection",
    "ConnectionClosed",
    "DataReceived",
    "EofReceived",
    "Event",
    "LocalProtocolError",
    "MalformedSegment",
    "Options",
    "Segment",
    "State",
    "decode",
    "encode",
    "rst_for",
    "seq_add",
    "seq_diff",
    "seq_ge",
    "seq_gt",
    "seq_le",
    "seq_lt",
]

#: True when the connection engine runs compiled (built by ``pip install`` where a C
#: compiler is present, not turned off by ``UDPTCP_PURE=1`` nor stale), False when it runs
#: as Python source. Also ``udptcp.__compiled__``.
COMPILED: bool = not str(getattr(_sys.modules[Connection.__module__], "__file__", "")).endswith(
    ".py"
)
