"""Send buffer and out-of-order reassembly queue.

Both work in *stream offsets* (Python ints counting bytes from the start of the stream), so
they never see sequence-number wrap-around; the connection translates at the edge.
"""

from __future__ import annotations

from bisect import bisect_right

from .sack import Scoreboard
from .sortedmap import SortedMap

# Writes shorter than this are copied into an open bytearray at the end of the buffer
# (many small writes make one chunk); longer ones are kept as the bytes objects they are.
_SMALL_WRITE = 4096
# The open bytearray is closed at this size, so it is never grown (and copied) beyond it.
_OPEN_MAX = 1 << 16
# Longer writes are stored as pieces of this size (one copy), so that an acknowledged
# part of a huge write is freed long before its end is acknowledged.
_CHUNK_MAX = 1 << 18
# Drop the references to acknowledged chunks from the lists in bulk, this many at a time.
_COMPACT_AT = 32
# Segments from this size up are cut from a bytearray chunk through a memoryview (one
# copy); below it a plain slice is cheaper than making the view.
_VIEW_AT = 4096


class SendBuffer:
    """Bytes the application wrote that the peer has not acknowledged yet.

    Held as a list of chunks: a written ``bytes`` object is kept as it is (no copy; a
    segment that is one whole chunk is sent as that very object), small writes are gathered
    into an open ``bytearray``. A segment spanning chunks is joined from views (one copy).
    Chunks leave the front as they are acknowledged, so nothing is ever moved to make room
    (a single ``bytearray`` with a window in flight was copied whole each time it grew).
    Memory beyond the unacknowledged bytes: less than one chunk (at most 256 KiB) at the
    front, and about 100 bytes of bookkeeping per chunk (at least 4 KiB each, or the open
    one).
    """

    __slots__ = ("_chunks", "_starts", "_first", "_open", "start", "end")

    def __init__(self) -> None:
        self._chunks: list[bytes | bytearray] = []
        self._starts: list[int] = []  # stream offset of each chunk's first byte
        self._first = 0  # index of the first chunk still holding unacknowledged bytes
        self._open = False  # the last chunk is a bytearray small writes go into
        self.start = 0  # stream offset of the first unacknowledged byte
        #: Stream offset just past the last byte written.
        self.end = 0

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is memoryview and (data.itemsize != 1 or data.ndim != 1):
            # len() of such a view counts items (of an array("I"), say), not bytes.
            data = data.cast("B")
        n = len(data)
        if not n:
            return
        if n < _SMALL_WRITE:
            if self._open:
                tail: bytearray = self._chunks[-1]  # type: ignore[assignment]  # (open)
                tail += data
                if len(tail) >= _OPEN_MAX:
                    self._open = False
            else:
                self._chunks.append(bytearray(data))
                self._starts.append(self.end)
                self._open = True
            self.end += n
            return
        self._open = False
        if n <= _CHUNK_MAX:
            self._chunks.append(data if type(data) is bytes else bytes(data))
            self._starts.append(self.end)
        else:
            with memoryview(data) as view:
                for i in range(0, n, _CHUNK_MAX):
                    self._chunks.append(bytes(view[i : i + _CHUNK_MAX]))
                    self._starts.append(self.end + i)
        self.end += n

    def get(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from stream offset ``offset`` (which must be buffered)."""
        if offset >= self.end:
            return b""
        starts = self._starts
        k = bisect_right(starts, offset, self._first) - 1
        chunk = self._chunks[k]
        i = offset - starts[k]
        j = i + size
        n = len(chunk)
        if j <= n or k == len(starts) - 1:
            if type(chunk) is bytes:
                # A whole chunk is returned as itself (bytes are immutable).
                return chunk if i == 0 and j >= n else chunk[i:j]
            if size < _VIEW_AT:
                return bytes(chunk[i:j])
            with memoryview(chunk) as view:  # released at once: the bytearray may grow
                return bytes(view[i:j])
        # Spanning chunks: joined from views of them, one copy. The views are released
        # before returning (a bytearray with a live view cannot grow).
        pieces: list[memoryview] = []
        try:
            while size > 0 and k < len(starts):
                piece = memoryview(self._chunks[k])[i : i + size]
                pieces.append(piece)
                size -= len(piece)
                i = 0
                k += 1
            return b"".join(pieces)
        finally:
            for piece in pieces:
                piece.release()

    def acknowledge(self, upto: int) -> None:
        """Drop every byte before stream offset ``upto``."""
        if upto <= self.start:
            return
        if upto >= self.end:
            upto = self.end
            if self._open:
                # Keep the open bytearray (emptied) for the next small write: a
                # request/response exchange then allocates nothing per message.
                emptied: bytearray = self._chunks[-1]  # type: ignore[assignment]  # (open)
                del emptied[:]
                self._chunks = [emptied]
                self._starts = [upto]
            else:
                self._chunks = []
                self._starts = []
            self._first = 0
            self.start = upto
            return
        self.start = upto
        chunks, starts = self._chunks, self._starts
        first = self._first
        while starts[first] + len(chunks[first]) <= upto:
            chunks[first] = b""  # free it now; the list slot goes at the next compaction
            first += 1
        if first >= _COMPACT_AT:
            del chunks[:first]
            del starts[:first]
            first = 0
        self._first = first


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
