"""Many connections' deadlines in one heap: what an endpoint (or the simulator) needs to keep
one real timer for all its connections.

Each connection has at most one deadline here (its ``get_timer()``). Re-arming pushes a new
entry and leaves the old one in the heap, marked stale by the newer deadline on record;
stale entries are skipped when they reach the top and swept out once they outnumber the live
ones, so a change costs O(log n) and the heap never holds more than a few entries per
connection.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["TimerHeap"]

K = TypeVar("K", bound=Hashable)

#: Sweep the stale entries once the heap holds more than this many per armed deadline
#: (and more than :data:`_SWEEP_MIN` in all).
_SWEEP_RATIO = 4
_SWEEP_MIN = 64


class TimerHeap(Generic[K]):
    """The next deadline of each of many connections (any hashable key), earliest first."""

    __slots__ = ("_heap", "_armed", "_counter")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._armed: dict[K, float] = {}
        # Ties go to the deadline set first (the heap never compares keys).
        self._counter = itertools.count()

    def __len__(self) -> int:
        """How many keys have a deadline."""
        return len(self._armed)

    def __contains__(self, key: object) -> bool:
        return key in self._armed

    def deadline(self, key: K) -> float | None:
        """``key``'s deadline, or None."""
        return self._armed.get(key)

    def schedule(self, key: K, deadline: float | None) -> bool:
        """Set ``key``'s deadline (None cancels it). Returns True when the earliest deadline
        moved earlier: the caller's one real timer must be re-armed."""
        if deadline is None:
            self._armed.pop(key, None)
            return False
        if self._armed.get(key) == deadline:
            return False
        top = self.earliest()
        self.set(key, deadline)
        return top is None or deadline < top

    def set(self, key: K, deadline: float | None) -> None:
        """As :meth:`schedule`, without working out whether the earliest deadline moved (for
        a caller that compares ``deadline`` with its real timer itself: an endpoint does
        this once per segment)."""
        armed = self._armed
        if deadline is None:
            armed.pop(key, None)
            return
        if armed.get(key) == deadline:
            return
        armed[key] = deadline
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._counter), key))
        if len(heap) > _SWEEP_MIN and len(heap) > _SWEEP_RATIO * len(armed):
            self._sweep()

    def cancel(self, key: K) -> None:
        """Forget ``key``'s deadline (a connection closed or went away)."""
        self._armed.pop(key, None)

    def clear(self) -> None:
        """Forget every deadline."""
        self._heap.clear()
        self._armed.clear()

    def earliest(self) -> float | None:
        """The earliest deadline of any key, or None."""
        heap, armed = self._heap, self._armed
        while heap:
            deadline, _, key = heap[0]
            if armed.get(key) == deadline:
                return deadline
            heapq.heappop(heap)  # stale: re-armed or cancelled since
        return None

    def pop_due(self, until: float) -> list[tuple[float, K]]:
        """Remove and return every ``(deadline, key)`` due by ``until``, earliest first.

        Deadlines set while the caller runs these wait for the next call (so a connection
        that keeps re-arming at ``now`` cannot spin its caller)."""
        heap, armed = self._heap, self._armed
        due: list[tuple[float, K]] = []
        while heap and heap[0][0] <= until:
            deadline, _, key = heapq.heappop(heap)
            if armed.get(key) == deadline:
                del armed[key]
                due.append((deadline, key))
        return due

    def _sweep(self) -> None:
        armed = self._armed
        self._heap = [e for e in self._heap if armed.get(e[2]) == e[0]]
        heapq.heapify(self._heap)
