"""Anti-amplification: what a listener may send an address that has not proved it is there.

A SYN's source address is not verified until the handshake completes, so anything sent
before that may land on a victim whose address was forged. As QUIC does (RFC 9000 §8.1),
udptcp sends such an address at most :data:`AMPLIFICATION_FACTOR` times the bytes it
received from it: a half-open connection keeps an :class:`AmplificationBudget`, and a
stateless reply (a RST for a stray segment, a SYN cookie's SYN-ACK) must itself fit within
that factor of the datagram that caused it. Sizes are UDP payload bytes (the TCP segment).
"""

from __future__ import annotations

from .segment import HEADER_LEN, Options, Segment, options_length

__all__ = ["AMPLIFICATION_FACTOR", "AmplificationBudget", "received_size", "sent_size"]

#: RFC 9000 §8.1: at most three times the bytes received from an unvalidated address.
AMPLIFICATION_FACTOR = 3


def sent_size(seg: Segment) -> int:
    """Bytes ``encode(seg)`` puts on the wire."""
    return HEADER_LEN + options_length(seg.options) + len(seg.payload)


def received_size(seg: Segment) -> int:
    """A lower bound of the datagram ``seg`` was decoded from: its options packed without
    alignment NOPs. Any encoding of the same options is at least this long, so a budget
    credited with it never lets more out than the factor allows."""
    opts = seg.options
    return HEADER_LEN + (_packed_options(opts) if opts is not None else 0) + len(seg.payload)


def _packed_options(opts: Options) -> int:
    n = 0
    if opts.mss is not None:
        n += 4
    if opts.wscale is not None:
        n += 3
    if opts.sack_permitted:
        n += 2
    if opts.timestamps is not None:
        n += 10
    if opts.sack_blocks:
        n += 2 + 8 * len(opts.sack_blocks)
    for _kind, data in opts.unknown:
        n += 2 + len(data)
    return (n + 3) & ~3


class AmplificationBudget:
    """Bytes received from and sent to one unvalidated address, for one half-open
    connection; :meth:`spend` says whether a segment of ``size`` bytes may go out."""

    __slots__ = ("received", "sent")

    def __init__(self, received: int) -> None:
        self.received = received
        self.sent = 0

    def credit(self, size: int) -> None:
        """``size`` more bytes arrived from the address."""
        self.received += size

    def spend(self, size: int) -> bool:
        """Take ``size`` bytes from the budget; False (and nothing taken) when it would
        exceed :data:`AMPLIFICATION_FACTOR` times what was received."""
        if self.sent + size > AMPLIFICATION_FACTOR * self.received:
            return False
        self.sent += size
        return True
