"""Many connections' deadlines in one heap: what an endpoint (or the simulator) needs to keep
one real timer for all its connections.

Each connection has at most one deadline here (its ``get_timer()``). Re-arming pushes a new
entry and leaves the old one in the heap, marked stale; stale entries are skipped when they
reach the top and swept out once they outnumber the live ones, so a change costs O(log n) and
the heap never holds more than a few entries per connection.

A stale entry lets go of its key at once (the heap recipe in the :mod:`heapq` documentation):
a connection that is cancelled here and forgotten elsewhere is freed by its reference count
then, not kept whole -- buffers, logs and all -- until its old deadline reaches the top or a
sweep runs. An endpoint full of TIME-WAIT records (each with a deadline 2 MSL away) sweeps
rarely, and the dead connections such entries would hold made every full garbage collection
walk them.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

__all__ = ["TimerHeap"]

K = TypeVar("K", bound=Hashable)

#: Sweep the stale entries once the heap holds more than this many per armed deadline
#: (and more than :data:`_SWEEP_MIN` in all).
_SWEEP_RATIO = 4
_SWEEP_MIN = 64

#: What a stale entry holds instead of its key.
_STALE: Any = object()


class TimerHeap(Generic[K]):
    """The next deadline of each of many connections (any hashable key), earliest first."""

    __slots__ = ("_heap", "_armed", "_counter")

    def __init__(self) -> None:
        # Entries are ``[deadline, tie, key]`` lists, so that making one stale can drop its
        # key; ties go to the deadline set first (the heap never compares keys).
        self._heap: list[list[Any]] = []
        self._armed: dict[K, list[Any]] = {}
        self._counter = itertools.count()

    def __len__(self) -> int:
        """How many keys have a deadline."""
        return len(self._armed)

    def __contains__(self, key: object) -> bool:
        return key in self._armed

    def deadline(self, key: K) -> float | None:
        """``key``'s deadline, or None."""
        entry = self._armed.get(key)
        if entry is None:
            return None
        deadline: float = entry[0]
        return deadline

    def schedule(self, key: K, deadline: float | None) -> bool:
        """Set ``key``'s deadline (None cancels it). Returns True when the earliest deadline
        moved earlier: the caller's one real timer must be re-armed."""
        if deadline is None:
            self.cancel(key)
            return False
        entry = self._armed.get(key)
        if entry is not None and entry[0] == deadline:
            return False
        top = self.earliest()
        self.set(key, deadline)
        return top is None or deadline < top

    def set(self, key: K, deadline: float | None) -> None:
        """As :meth:`schedule`, without working out whether the earliest deadline moved (for
        a caller that compares ``deadline`` with its real timer itself: an endpoint does
        this once per segment)."""
        armed = self._armed
        entry = armed.get(key)
        if entry is not None:
            if entry[0] == deadline:
                return
            entry[2] = _STALE
        if deadline is None:
            if entry is not None:
                del armed[key]
            return
        entry = armed[key] = [deadline, next(self._counter), key]
        heap = self._heap
        heapq.heappush(heap, entry)
        if len(heap) > _SWEEP_MIN and len(heap) > _SWEEP_RATIO * len(armed):
            self._sweep()

    def cancel(self, key: K) -> None:
        """Forget ``key``'s deadline (a connection closed or went away)."""
        entry = self._armed.pop(key, None)
        if entry is not None:
            entry[2] = _STALE

    def clear(self) -> None:
        """Forget every deadline."""
        self._heap.clear()
        self._armed.clear()

    def earliest(self) -> float | None:
        """The earliest deadline of any key, or None."""
        heap = self._heap
        while heap:
            entry = heap[0]
            if entry[2] is not _STALE:
                deadline: float = entry[0]
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
            if key is not _STALE:
                del armed[key]
                due.append((deadline, key))
        return due

    def _sweep(self) -> None:
        self._heap = [e for e in self._heap if e[2] is not _STALE]
        heapq.heapify(self._heap)
