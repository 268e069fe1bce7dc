"""Peer connections through NATs: STUN discovery, a rendezvous, punching by simultaneous
open, TURN fallback (the ``nat`` extra: ``pip install 'udptcp[nat]'``).

``open_peer_connection`` / ``create_peer_connection`` (in :mod:`udptcp.nat.peer`) are the
API; the rest are its parts: :mod:`.stun` (STUN transactions and RFC 5780 behaviour tests
on a connection's own socket), :mod:`.turn` (a TURN allocation on that same socket),
:mod:`.rendezvous` (the pairing service and its client) and :mod:`.punch` (the simultaneous
open to every candidate at once). STUN and TURN messages are aioice's, imported only when
used. With keys, a peer connection runs secure mode (:mod:`udptcp.core.secure_peer`).
"""

from __future__ import annotations

from .errors import NATTraversalError

__all__ = ["NATTraversalError"]
