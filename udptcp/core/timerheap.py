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

Deadlines that arrive in order (TIME-WAIT records: each ends 2 MSL after it began) can skip
the heap (:meth:`TimerHeap.set_fifo`): they wait in a queue beside it, so the heap holds only
the deadlines that move, however many records an endpoint that closes connections by the
thousand keeps.
"""

from __future__ import annotations

import collections
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

    __slots__ = ("_heap", "_armed", "_counter", "_fifo", "_fifo_live")

    def __init__(self) -> None:
        # Entries are ``[deadline, tie, key]`` lists, so that making one stale can drop its
        # key; ties go to the deadline set first (the heap never compares keys).
        self._heap: list[list[Any]] = []
        self._armed: dict[K, list[Any]] = {}
        self._counter = itertools.count()
        # Deadlines set with set_fifo(), in deadline order: entries of the same form with
        # a fourth item (never compared: the tie before it is unique) that tells them from
        # the heap's, and how many of them are live (so the heap's share is known).
        self._fifo: collections.deque[list[Any]] = collections.deque()
        self._fifo_live = 0

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
            self._stale(entry)
        if deadline is None:
            if entry is not None:
                del armed[key]
            return
        entry = armed[key] = [deadline, next(self._counter), key]
        heap = self._heap
        heapq.heappush(heap, entry)
        # (Deadlines in the queue are not the heap's: they do not count towards its share.)
        if len(heap) > _SWEEP_MIN and len(heap) > _SWEEP_RATIO * (len(armed) - self._fifo_live):
            self._sweep()

    def set_fifo(self, key: K, deadline: float) -> None:
        """As :meth:`set`, for a deadline that is usually no earlier than the last one set
        this way: an endpoint's TIME-WAIT records, each ending the same 2 MSL after it
        began. Those join a queue in deadline order instead of the heap: O(1), and the
        heap keeps only the live connections' deadlines, which move all the time, instead
        of sifting them past thousands of records (an endpoint that closes connections
        by the thousand holds one record per connection for 2 MSL). One out of order
        goes into the heap."""
        fifo = self._fifo
        if fifo and deadline < fifo[-1][0]:
            self.set(key, deadline)
            return
        armed = self._armed
        entry = armed.get(key)
        if entry is not None:
            if entry[0] == deadline:
                return
            self._stale(entry)
        entry = armed[key] = [deadline, next(self._counter), key, True]
        fifo.append(entry)
        self._fifo_live += 1
        # Records dropped early (a 4-tuple reopened by a new SYN) leave stale entries that
        # would wait for their 2 MSL: swept as the heap's are, so the queue stays within a
        # few entries per live record (max_time_wait bounds those), however fast they churn.
        if len(fifo) > _SWEEP_MIN and len(fifo) > _SWEEP_RATIO * self._fifo_live:
            self._fifo = collections.deque([e for e in fifo if e[2] is not _STALE])

    def cancel(self, key: K) -> None:
        """Forget ``key``'s deadline (a connection closed or went away)."""
        entry = self._armed.pop(key, None)
        if entry is not None:
            self._stale(entry)

    def _stale(self, entry: list[Any]) -> None:
        """Mark ``entry`` stale: it lets go of its key and is skipped where it lies."""
        entry[2] = _STALE
        if len(entry) == 4:
            self._fifo_live -= 1

    def clear(self) -> None:
        """Forget every deadline."""
        self._heap.clear()
        self._fifo.clear()
        self._fifo_live = 0
        self._armed.clear()

    def earliest(self) -> float | None:
        """The earliest deadline of any key, or None."""
        heap = self._heap
        while heap and heap[0][2] is _STALE:
            heapq.heappop(heap)  # stale: re-armed or cancelled since
        fifo = self._fifo
        while fifo and fifo[0][2] is _STALE:
            fifo.popleft()
        if heap:
            top = heap[0]
            if fifo and fifo[0] < top:  # (deadline, then the order they were set)
                top = fifo[0]
        elif fifo:
            top = fifo[0]
        else:
            return None
        deadline: float = top[0]
        return deadline

    def pop_due(self, until: float) -> list[tuple[float, K]]:
        """Remove and return every ``(deadline, key)`` due by ``until``, earliest first.

        Deadlines set while the caller runs these wait for the next call (so a connection
        that keeps re-arming at ``now`` cannot spin its caller)."""
        heap, armed, fifo = self._heap, self._armed, self._fifo
        entries: list[list[Any]] = []
        while heap and heap[0][0] <= until:
            entry = heapq.heappop(heap)
            if entry[2] is not _STALE:
                entries.append(entry)
        if fifo and fifo[0][0] <= until:
            from_heap = len(entries)
            while fifo and fifo[0][0] <= until:
                entry = fifo.popleft()
                if entry[2] is not _STALE:
                    entries.append(entry)
                    self._fifo_live -= 1
            if from_heap and len(entries) > from_heap:
                entries.sort()  # both lanes gave some: (deadline, order set); keys unique
        due: list[tuple[float, K]] = []
        for entry in entries:
            key = entry[2]
            del armed[key]
            due.append((entry[0], key))
        return due

    def _sweep(self) -> None:
        self._heap = [e for e in self._heap if e[2] is not _STALE]
        heapq.heapify(self._heap)
