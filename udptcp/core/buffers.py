"""Send buffer and out-of-order reassembly queue.

Both work in *stream offsets* (Python ints counting bytes from the start of the stream), so
they never see sequence-number wrap-around; the connection translates at the edge.
"""

from __future__ import annotations

import bisect

from .sack import Scoreboard

# Compact the send buffer once this many acknowledged bytes sit at its front.
_COMPACT_AT = 1 << 16


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
        return self.start + len(self)

    def append(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def get(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from stream offset ``offset`` (which must be buffered)."""
        i = self._head + (offset - self.start)
        return bytes(self._buf[i : i + size])

    def acknowledge(self, upto: int) -> None:
        """Drop every byte before stream offset ``upto``."""
        n = min(upto - self.start, len(self))
        if n <= 0:
            return
        self._head += n
        self.start += n
        if self._head >= _COMPACT_AT or self._head == len(self._buf):
            del self._buf[: self._head]
            self._head = 0


class ReassemblyQueue:
    """Out-of-order data waiting for the gap before it to fill.

    Holds non-overlapping ``(start_offset, bytes)`` runs sorted by offset; overlapping and
    duplicate arrivals are trimmed so no byte is stored twice.
    """

    __slots__ = ("_starts", "_data", "size", "_ranges")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._data: list[bytes] = []
        self.size = 0  # bytes held
        self._ranges = Scoreboard()  # the same data as merged ranges, for SACK blocks

    def __len__(self) -> int:
        return len(self._starts)

    def add(self, start: int, data: bytes) -> int:
        """Store ``data`` at stream offset ``start``; return how many new bytes were kept."""
        end = start + len(data)
        kept = 0
        self._ranges.add(start, end)
        i = bisect.bisect_right(self._starts, start)
        # Trim against the run that begins before us.
        if i > 0:
            prev_end = self._starts[i - 1] + len(self._data[i - 1])
            if prev_end >= end:
                return 0
            if prev_end > start:
                data = data[prev_end - start :]
                start = prev_end
        # Insert the pieces that fall in gaps between the following runs.
        while data:
            if i < len(self._starts) and self._starts[i] < end:
                gap = self._starts[i] - start
                if gap > 0:
                    self._insert(i, start, data[:gap])
                    kept += gap
                    i += 1
                nxt_end = self._starts[i] + len(self._data[i])
                if nxt_end >= end:
                    break
                data = data[nxt_end - start :]
                start = nxt_end
                i += 1
            else:
                self._insert(i, start, data)
                kept += len(data)
                break
        return kept

    def _insert(self, i: int, start: int, data: bytes) -> None:
        self._starts.insert(i, start)
        self._data.insert(i, data)
        self.size += len(data)

    def runs(self) -> list[tuple[int, int]]:
        """The held data as merged ``(start, end)`` offset ranges, lowest first."""
        return self._ranges.ranges()

    @property
    def run_count(self) -> int:
        return len(self._ranges)

    def pop_from(self, offset: int) -> bytes:
        """Remove and return the contiguous bytes starting at ``offset`` (may be empty).

        Runs that end at or before ``offset`` are stale and discarded.
        """
        pieces: list[bytes] = []
        while self._starts and self._starts[0] <= offset:
            start = self._starts.pop(0)
            data = self._data.pop(0)
            self.size -= len(data)
            end = start + len(data)
            if end > offset:
                pieces.append(data[offset - start :])
                offset = end
        self._ranges.prune(offset)
        return b"".join(pieces)
