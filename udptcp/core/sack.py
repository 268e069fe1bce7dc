"""The sender's SACK scoreboard (RFC 2018, RFC 6675).

Ranges are kept in stream offsets (Python ints: no sequence wrap) as a sorted list of
disjoint, non-adjacent ``[start, end)`` pairs. The scoreboard answers the questions RFC 6675
recovery asks: which unacknowledged bytes are deemed lost, how much data is still in the
network (``pipe``), and what to send next.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

#: RFC 6675 DupThresh.
DUP_THRESH = 3


class Scoreboard:
    """SACKed ranges above the cumulative acknowledgment."""

    __slots__ = ("_starts", "_ends")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __len__(self) -> int:
        return len(self._starts)

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends))

    @property
    def highest(self) -> int | None:
        """End of the highest SACKed range."""
        return self._ends[-1] if self._ends else None

    def sacked_bytes(self) -> int:
        return sum(e - s for s, e in zip(self._starts, self._ends))

    def add(self, start: int, end: int) -> int:
        """Record ``[start, end)`` as SACKed; return how many bytes were new."""
        if end <= start:
            return 0
        before = self.sacked_bytes()
        i = bisect.bisect_left(self._ends, start)  # first range that ends at/after start
        j = i
        while j < len(self._starts) and self._starts[j] <= end:
            start = min(start, self._starts[j])
            end = max(end, self._ends[j])
            j += 1
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]
        return self.sacked_bytes() - before

    def prune(self, below: int) -> None:
        """Forget everything before ``below`` (the cumulative ACK moved there)."""
        while self._starts and self._ends[0] <= below:
            del self._starts[0], self._ends[0]
        if self._starts and self._starts[0] < below:
            self._starts[0] = below

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()

    def covers(self, start: int, end: int) -> bool:
        """True when all of ``[start, end)`` is SACKed."""
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def skip_sacked(self, off: int) -> int:
        """The first offset at or after ``off`` that is not SACKed."""
        i = bisect.bisect_right(self._starts, off) - 1
        if i >= 0 and self._ends[i] > off:
            return self._ends[i]
        return off

    def next_sacked(self, off: int) -> int | None:
        """Start of the first SACKed range beginning after ``off``."""
        i = bisect.bisect_right(self._starts, off)
        return self._starts[i] if i < len(self._starts) else None

    def lost_below(self, smss: int) -> int:
        """The offset below which every unSACKed byte is deemed lost (RFC 6675 IsLost).

        A byte is lost once ``DUP_THRESH`` discontiguous SACKed ranges, or more than
        ``(DUP_THRESH - 1) * SMSS`` SACKed bytes, lie above it. Both counts only grow as
        the byte gets lower, so the lost bytes are exactly those below one boundary.
        Returns the lowest possible offset (nothing lost) when no boundary exists.
        """
        sacked = 0
        for k in range(len(self._starts) - 1, -1, -1):
            sacked += self._ends[k] - self._starts[k]
            ranges_above = len(self._starts) - k
            if ranges_above >= DUP_THRESH or sacked > (DUP_THRESH - 1) * smss:
                return self._starts[k]
        return -1

    def holes(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """The unSACKed pieces of ``[start, end)``, in order."""
        pos = start
        i = bisect.bisect_right(self._ends, start)
        while pos < end:
            if i < len(self._starts) and self._starts[i] < end:
                if self._starts[i] > pos:
                    yield pos, self._starts[i]
                pos = max(pos, self._ends[i])
                i += 1
            else:
                yield pos, end
                return

    def pipe(self, una: int, sent: int, high_rxt: int, smss: int) -> int:
        """RFC 6675 §4 "pipe": bytes of ``[una, sent)`` thought to be in the network.

        An unSACKed byte counts once unless it is deemed lost, and once more if it was
        retransmitted in this recovery (below ``high_rxt``).
        """
        lost = self.lost_below(smss)
        pipe = 0
        for hs, he in self.holes(una, sent):
            pipe += he - max(hs, min(lost, he))  # not lost: still out there
            pipe += max(0, min(he, high_rxt) - hs)  # retransmitted: that copy is out too
        return pipe
