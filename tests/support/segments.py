"""Keyword segment builders: a test writes the fields the seed notes name, nothing else.

``seg(SYN, seq=x)`` is the peer's SYN, ``seg(ACK, seq=x + 1, ack=y + 1)`` its ACK. Unless a
test says otherwise the segment travels from the peer's virtual port :data:`REMOTE` to the
connection under test on :data:`LOCAL`, with a 65535-byte window and no options.
"""

from __future__ import annotations

from udptcp.core.segment import Options, Segment

#: Virtual ports of a scripted exchange: the connection under test and the peer the test plays.
LOCAL, REMOTE = 4000, 80
#: The MSS both sides of a scripted exchange offer (1472-byte UDP payload minus 20).
MSS = 1452


def seg(
    flags: int,
    *,
    seq: int = 0,
    ack: int = 0,
    window: int = 65535,
    mss: int | None = None,
    options: Options | None = None,
    payload: bytes = b"",
    src: int = REMOTE,
    dst: int = LOCAL,
) -> Segment:
    """A segment from the peer (``src``) to the connection under test (``dst``).

    ``mss`` is shorthand for ``options=Options(mss=mss)``; give one or the other.
    """
    if mss is not None:
        if options is not None:
            raise TypeError("give mss= or options=, not both")
        options = Options(mss=mss)
    return Segment(src, dst, seq, ack, flags, window, options, payload)


def reply_to(to: Segment, flags: int, **fields: object) -> Segment:
    """A segment answering ``to``: its ports swapped, the other fields as for :func:`seg`."""
    return seg(flags, src=to.dst_port, dst=to.src_port, **fields)  # type: ignore[arg-type]
