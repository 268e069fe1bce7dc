"""udptcp: real TCP semantics carried one segment per UDP datagram, for asyncio programs.

Every segment is a byte-exact RFC 9293 TCP segment (virtual ports, sequence numbers, the
three-way handshake, FIN release, TIME-WAIT, retransmission, flow and congestion control)
inside one UDP datagram, so it works without root, kernel modules or raw sockets and crosses
NATs like any UDP flow. Applications get the asyncio contract they already use::

    import udptcp

    transport, protocol = await udptcp.create_connection(MyProtocol, "example.org", 4433)
    server = await udptcp.create_server(MyProtocol, "0.0.0.0", 4433)
    reader, writer = await udptcp.open_connection("example.org", 4433)
    server = await udptcp.start_server(handle_client, "0.0.0.0", 4433)

or, without changing a line of an asyncio program written for TCP, run it on the drop-in
loop (``loop.create_connection``, ``loop.create_server``, ``asyncio.open_connection`` and
``asyncio.start_server`` then go over udptcp)::

    asyncio.run(main(), loop_factory=udptcp.loop_factory())  # Python 3.12+
    udptcp.install(); asyncio.run(main())  # any version, via an event loop policy

``ssl=`` runs asyncio's own TLS over a udptcp connection. Secure mode encrypts and
authenticates every datagram, TCP header included, after a Noise handshake in the SYN and
SYN-ACK::

    identity = udptcp.Identity.generate()          # the server's key pair
    server = await udptcp.create_server(MyProtocol, "0.0.0.0", 4433, identity=identity)
    transport, protocol = await udptcp.create_connection(
        MyProtocol, "example.org", 4433, peer_key=identity.public_key)

Two peers behind NATs connect with one call each (STUN, a rendezvous, punching, TURN
fallback; the ``nat`` extra)::

    reader, writer = await udptcp.open_peer_connection("session", "rendezvous.example:3478")

``pip install`` builds two compiled twins where a C compiler is present, and both are
optional: ``udptcp.__speedups__`` is True when the C codec (encode, decode, checksum) is in
use, ``udptcp.__compiled__`` when the mypyc-compiled connection engine is.
``UDPTCP_PURE=1`` in the environment turns both off.

Tunables live in :class:`Config`; ``udptcp.core`` is the sans-I/O protocol engine and
``udptcp.aio`` the asyncio adapter built on it.
"""

from __future__ import annotations

from udptcp.aio.api import create_connection, create_server, open_connection, start_server
from udptcp.aio.loop import EventLoopPolicy, install, loop_factory, uvloop_factory
from udptcp.aio.server import Server
from udptcp.aio.tls import start_tls
from udptcp.aio.transport import Transport
from udptcp.core import COMPILED as __compiled__
from udptcp.core.config import Config
from udptcp.core.connection import State
from udptcp.core.keys import Identity
from udptcp.core.secure import SecureHandshakeError
from udptcp.core.segment import SPEEDUPS as __speedups__
from udptcp.core.stats import ConnectionStats
from udptcp.nat.errors import NATTraversalError
from udptcp.nat.peer import create_peer_connection, open_peer_connection

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConnectionStats",
    "EventLoopPolicy",
    "NATTraversalError",
    "Identity",
    "SecureHandshakeError",
    "Server",
    "State",
    "Transport",
    "__compiled__",
    "__speedups__",
    "__version__",
    "create_connection",
    "create_peer_connection",
    "create_server",
    "install",
    "loop_factory",
    "open_connection",
    "open_peer_connection",
    "start_server",
    "start_tls",
    "uvloop_factory",
]
