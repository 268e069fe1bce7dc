"""The sender's SACK scoreboard (RFC 2018, RFC 6675).

Ranges are kept in stream offsets (Python ints: no sequence wrap) as a sorted list of
disjoint, non-adjacent ``[start, end)`` pairs: what the peer has reported holding above the
cumulative acknowledgment. Which bytes are lost and how much is in flight is decided per
segment by the RACK log (``rack.py``); the receiver reuses this class for its own runs.
"""

from __future__ import annotations

import bisect

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
