"""Send buffer and out-of-order reassembly queue.

Both work in *stream offsets* (Python ints counting bytes from the start of the stream), so
they never see sequence-number wrap-around; the connection translates at the edge.
"""

from __future__ import annotations

from .sack import Scoreboard
from .sortedmap import SortedMap

# Compact the send buffer once this many acknowledged bytes sit at its front.
_COMPACT_AT = 1 << 16
# Segments from this size up are cut from the send buffer through a memoryview (one copy);
# below it a plain slice is cheaper than making the view.
_VIEW_AT = 4096


class SendBuffer:
    """Bytes the application wrote that the peer has not acknowledged yet.

    Acknowledged bytes are dropped from the front by advancing an index and compacting in
    bulk, so a large write acknowledged segment by segment costs O(total), not O(total²).
    """

    __slots__ = ("_buf", "_head", "start")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._head = 0  # index in _buf of the first unacknowledged byte
        self.start = 0  # stream offset of that byte

    def __len__(self) -> int:
        return len(self._buf) - self._head

    @property
    def end(self) -> int:
        """Stream offset just past the last byte written."""
        return self.start + len(self._buf) - self._head  # len(self), without the call

    def append(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def get(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from stream offset ``offset`` (which must be buffered)."""
        i = self._head + (offset - self.start)
        if size < _VIEW_AT:
            return bytes(self._buf[i : i + size])
        # One copy instead of two (a bytearray slice, then bytes of it): for a large
        # segment (path MTU probing's 64 KB) the copies are most of the sending work. The
        # view is released at once: a bytearray with a live export cannot grow.
        with memoryview(self._buf) as view:
            return bytes(view[i : i + size])

    def acknowledge(self, upto: int) -> None:
        """Drop every byte before stream offset ``upto``."""
        n = upto - self.start
        held = len(self._buf) - self._head
        if n > held:
            n = held
        if n <= 0:
            return
        self._head += n
        self.start += n
        if self._head >= _COMPACT_AT or self._head == len(self._buf):
            del self._buf[: self._head]
            self._head = 0


#: What one held out-of-order piece costs beyond its data bytes, charged against the
#: receive buffer the way Linux charges an skb's ``truesize``. Measured with tracemalloc on
#: CPython 3.11 (``python -m benchmarks.holes core`` prints it): 135 bytes per held 2-byte
#: piece beyond its data, about 95 for the piece map and the run it forms for SACK (ints,
#: list slots, block lists) and 40 for the bytes object's header. 256 leaves room for the
#: allocator's rounding and for lists between resizes, and is a round number to document.
PIECE_OVERHEAD = 256

#: Returned by :meth:`ReassemblyQueue.add` when the piece did not fit and was dropped.
DROPPED = -1

# The piece that begins where an arrival ends is copied onto it (one piece instead of two)
# when it is no longer than the arrival or this limit, so that copying costs an arrival at
# most its own length plus this.
_COALESCE_COPY_LIMIT = 4096


class ReassemblyQueue:
    """Out-of-order data waiting for the gap before it to fill.

    Holds non-overlapping *pieces* (a start offset and its bytes) in a
    :class:`~udptcp.core.sortedmap.SortedMap`, and the same data as merged *runs* (a
    :class:`~udptcp.core.sack.Scoreboard`) for SACK blocks. Overlapping and duplicate
    arrivals are trimmed so no byte is stored twice, and an arrival that covers whole
    pieces replaces them (as Linux's out-of-order queue does). Data that continues a piece
    is appended to it, so in-order data that merely arrived early (after one hole) is one
    piece however many segments brought it.

    Memory is charged per piece: its bytes plus :data:`PIECE_OVERHEAD`. A piece that would
    take the charge past the caller's budget, or the piece count past the caller's cap, is
    refused (:data:`DROPPED`); the sender will retransmit it. (A piece grown by appending
    is a ``bytearray``, which CPython over-allocates by up to an eighth; that slack is not
    charged, so the window's promise to an honest sender stays whole.)

    Costs per arrival: O(log n) to find its place and to insert; amortised O(1) for the
    pieces it replaces and for those :meth:`pop_from` delivers, each leaving once.
    """

    __slots__ = ("_pieces", "size", "charge", "_ranges")

    def __init__(self) -> None:
        self._pieces: SortedMap[bytes | bytearray] = SortedMap()  # start -> data
        self.size = 0  # data bytes held
        self.charge = 0  # bytes charged: size plus PIECE_OVERHEAD per piece
        self._ranges = Scoreboard()  # the same data as merged ranges, for SACK blocks

    def __len__(self) -> int:
        """Pieces held."""
        return len(self._pieces)

    def __bool__(self) -> bool:
        return self.size > 0  # every piece holds data (header prediction asks this)

    def add(self, start: int, data: bytes, budget: int, max_pieces: int) -> int:
        """Store ``data`` at stream offset ``start``; return how many new bytes were kept
        (0: all of it was held already), or :data:`DROPPED` when keeping it would take
        :attr:`charge` past ``budget`` or the piece count past ``max_pieces``."""
        end = start + len(data)
        pieces = self._pieces
        left = pieces.floor(start)
        left_end = -1
        if left is not None:
            left_end = left[0] + len(left[1])
            if left_end >= end:
                return 0  # wholly held already
            if left_end > start:
                data = data[left_end - start :]
                start = left_end
        # Pieces lying inside [start, end) will be replaced; one reaching past end trims
        # our tail instead. The walk is bounded by the arrival's length, and amortised
        # O(1) when the arrival is kept (each piece it passes is removed).
        covered = 0
        inside: list[int] = []
        right = pieces.higher(start)
        while right is not None and right[0] < end:
            right_end = right[0] + len(right[1])
            if right_end > end:
                data = data[: right[0] - start]
                end = right[0]
                break
            covered += right_end - right[0]
            inside.append(right[0])
            right = pieces.higher(right[0])
        added = len(data) - covered
        if added <= 0:
            return 0
        join_left = left is not None and left_end == start
        join_right = (
            right is not None
            and right[0] == end
            and len(right[1]) <= max(len(data), _COALESCE_COPY_LIMIT)
        )
        count = (0 if join_left else 1) - len(inside) - join_right
        cost = added + count * PIECE_OVERHEAD
        if (cost > 0 and self.charge + cost > budget) or (
            count > 0 and len(pieces) + count > max_pieces
        ):
            return DROPPED
        for key in inside:
            del pieces[key]
        if left is not None and join_left:
            buf = left[1]
            if type(buf) is bytes:
                buf = pieces[left[0]] = bytearray(buf)  # appends are amortised O(1) now
            buf += data
            if right is not None and join_right:
                buf += right[1]
                del pieces[right[0]]
        else:
            if right is not None and join_right:
                data = data + right[1]
                del pieces[right[0]]
            pieces[start] = data
        self.size += added
        self.charge += cost
        self._ranges.add(start, end)
        return added

    def runs(self) -> list[tuple[int, int]]:
        """The held data as merged ``(start, end)`` offset ranges, lowest first (O(n))."""
        return self._ranges.ranges()

    @property
    def run_count(self) -> int:
        return len(self._ranges)

    def run_at(self, offset: int) -> tuple[int, int] | None:
        """The run holding stream offset ``offset``, or None."""
        return self._ranges.find(offset)

    def highest_runs(self, count: int) -> list[tuple[int, int]]:
        """Up to ``count`` runs, highest first."""
        return self._ranges.highest(count)

    def truncate(self, offset: int) -> int:
        """Discard every held byte at or after stream offset ``offset``; return how many.

        The peer's FIN ends its stream there (RFC 9293 §3.10.7.4 eighth step): what a
        hostile or confused peer sent beyond it is no part of the stream."""
        pieces = self._pieces
        dropped = 0
        while pieces:  # amortised: each piece leaves once
            start, buf = pieces.last(1)[0]
            end = start + len(buf)
            if end <= offset:
                break
            pieces.pop_last()
            if start < offset:
                keep = offset - start
                pieces[start] = bytes(buf[:keep])
                dropped += end - offset
                self.size -= end - offset
                self.charge -= end - offset
                break
            dropped += len(buf)
            self.size -= len(buf)
            self.charge -= len(buf) + PIECE_OVERHEAD
        self._ranges.truncate(offset)
        return dropped

    def prune_to(self, budget: int) -> int:
        """Drop the highest pieces until :attr:`charge` is within ``budget``; return the
        bytes dropped. In-order data the window promised comes first: this is reneging
        on what was SACKed (RFC 2018 §8 allows it; the sender keeps every byte until it is
        cumulatively acknowledged), as Linux's out-of-order queue pruning does."""
        pieces = self._pieces
        dropped = 0
        while pieces and self.charge > budget:
            start, buf = pieces.pop_last()
            dropped += len(buf)
            self.size -= len(buf)
            self.charge -= len(buf) + PIECE_OVERHEAD
            self._ranges.truncate(start)
        return dropped

    def pop_from(self, offset: int) -> bytes:
        """Remove and return the contiguous bytes starting at ``offset`` (may be empty).

        Pieces that end at or before ``offset`` are stale and discarded.
        """
        pieces = self._pieces
        out: list[bytes | bytearray] = []
        while True:  # amortised: each piece leaves once
            first = pieces.first()
            if first is None or first[0] > offset:
                break
            pieces.pop_first()
            start, buf = first
            self.size -= len(buf)
            self.charge -= len(buf) + PIECE_OVERHEAD
            end = start + len(buf)
            if end > offset:
                out.append(buf if start == offset else buf[offset - start :])
                offset = end
        self._ranges.prune(offset)
        if len(out) == 1 and type(out[0]) is bytes:
            return out[0]
        return b"".join(out)
