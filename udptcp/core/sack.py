"""The sender's SACK scoreboard (RFC 2018, RFC 6675).

Ranges are kept in stream offsets (Python ints: no sequence wrap) as disjoint, non-adjacent
``[start, end)`` pairs in a :class:`~udptcp.core.sortedmap.SortedMap`: what the peer has
reported holding above the cumulative acknowledgment. Which bytes are lost and how much is
in flight is decided per segment by the RACK log (``rack.py``); the receiver reuses this
class for its own runs.

Every operation costs O(log n), or amortised O(1) per range it removes, so a peer cannot
make one segment dearer by having sent many before it: the byte count is kept up to date as
ranges change rather than summed, and the lookups bisect.
"""

from __future__ import annotations

from .sortedmap import SortedMap

#: RFC 6675 DupThresh.
DUP_THRESH = 3


class Scoreboard:
    """SACKed ranges above the cumulative acknowledgment."""

    __slots__ = ("_map", "_bytes")

    def __init__(self) -> None:
        self._map: SortedMap[int] = SortedMap()  # start -> end
        self._bytes = 0  # total length of the ranges

    def __bool__(self) -> bool:
        # Every range holds at least one byte (add, prune and truncate keep it so), so
        # this is "any range", without a second call into the map: it is asked several
        # times a segment.
        return self._bytes > 0

    def __len__(self) -> int:
        return len(self._map)

    def ranges(self) -> list[tuple[int, int]]:
        """Every range, lowest first (O(n): for tests and tracing, not per segment)."""
        return list(self._map)

    def sacked_bytes(self) -> int:
        return self._bytes

    def add(
        self,
        start: int,
        end: int,
        new: list[tuple[int, int]] | None = None,
        max_ranges: int | None = None,
    ) -> int:
        """Record ``[start, end)`` as SACKed; return how many bytes were new.

        ``new``, when given, receives the sub-ranges that were not SACKed before, lowest
        first. With ``max_ranges``, a block that would add a range to a scoreboard already
        holding that many is ignored (0 is returned); blocks that touch existing ranges are
        always taken, since they never add one.
        """
        if end <= start:
            return 0
        m = self._map
        cur = m.floor(start)
        if cur is None or cur[1] < start:
            cur = m.higher(start)
            if cur is None or cur[0] > end:
                # Touches nothing: a range of its own.
                if max_ranges is not None and len(m) >= max_ranges:
                    return 0
                m[start] = end
                self._bytes += end - start
                if new is not None:
                    new.append((start, end))
                return end - start
        elif cur[1] >= end:
            return 0  # wholly SACKed already
        # Merge with every range it overlaps or touches; the gaps between them are new.
        # Each range after the first disappears, so the walk is amortised O(1).
        first_key = cur[0]
        lo, hi, pos, added = min(start, first_key), end, start, 0
        while cur is not None and cur[0] <= end:
            s, e = cur
            if s > pos:
                added += s - pos
                if new is not None:
                    new.append((pos, s))
            if e > pos:
                pos = e
            if e > hi:
                hi = e
            if s != first_key:
                del m[s]
            cur = m.higher(s)
        if pos < end:
            added += end - pos
            if new is not None:
                new.append((pos, end))
        if lo != first_key:
            del m[first_key]
        m[lo] = hi
        self._bytes += added
        return added

    def prune(self, below: int) -> None:
        """Forget everything before ``below`` (the cumulative ACK moved there)."""
        m = self._map
        while True:  # amortised: each range is dropped once
            first = m.first()
            if first is None or first[0] >= below:
                return
            start, end = first
            m.pop_first()
            if end > below:
                m[below] = end
                self._bytes -= below - start
                return
            self._bytes -= end - start

    def truncate(self, above: int) -> None:
        """Forget everything at or after ``above`` (held data beyond it was discarded)."""
        m = self._map
        while m:  # amortised: each range is dropped once
            start, end = m.last(1)[0]
            if end <= above:
                return
            m.pop_last()
            if start < above:
                m[start] = above
                self._bytes -= end - above
                return
            self._bytes -= end - start

    def clear(self) -> None:
        self._map.clear()
        self._bytes = 0

    def covers(self, start: int, end: int) -> bool:
        """True when all of ``[start, end)`` is SACKed."""
        cur = self._map.floor(start)
        return cur is not None and cur[1] >= end

    def find(self, off: int) -> tuple[int, int] | None:
        """The range holding offset ``off``, or None."""
        cur = self._map.floor(off)
        return cur if cur is not None and cur[1] > off else None

    def highest(self, count: int) -> list[tuple[int, int]]:
        """Up to ``count`` ranges, highest first."""
        return self._map.last(count)

    def skip_sacked(self, off: int) -> int:
        """The first offset at or after ``off`` that is not SACKed."""
        cur = self._map.floor(off)
        return cur[1] if cur is not None and cur[1] > off else off

    def next_sacked(self, off: int) -> int | None:
        """Start of the first SACKed range beginning after ``off``."""
        cur = self._map.higher(off)
        return cur[0] if cur is not None else None
