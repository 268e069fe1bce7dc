"""A sorted map from int keys to values whose every operation costs O(log n).

The SACK scoreboard and the reassembly queue keep ranges that a peer chooses, in any order
it likes. In one flat sorted list each insertion moves every entry after it (a ``memmove``:
C code, but 10,000 entries made a segment half again as dear); here the entries live in
blocks of at most ``2 * LOAD``, found by bisecting the blocks' first keys, so an insertion or
deletion moves at most one block's entries plus, when a block splits or empties, the short
list of blocks. Blocks that shrink below ``LOAD // 4`` are merged into a neighbour, so the
number of blocks stays proportional to the entries.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Generic, TypeVar

V = TypeVar("V")

#: Entries per block after a split (blocks hold LOAD // 4 .. 2 * LOAD).
LOAD = 128


class SortedMap(Generic[V]):
    """Distinct int keys in ascending order, each with a value."""

    __slots__ = ("_keys", "_vals", "_firsts", "_len")

    def __init__(self) -> None:
        self._keys: list[list[int]] = []  # per block, ascending
        self._vals: list[list[V]] = []
        self._firsts: list[int] = []  # each block's first key
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[tuple[int, V]]:
        """Every entry, lowest key first (O(n): for tests and tracing)."""
        for keys, vals in zip(self._keys, self._vals):
            yield from zip(keys, vals)

    def floor(self, key: int) -> tuple[int, V] | None:
        """The entry with the greatest key at or below ``key``."""
        b = bisect.bisect_right(self._firsts, key) - 1
        if b < 0:
            return None
        keys = self._keys[b]
        i = bisect.bisect_right(keys, key) - 1  # >= 0: keys[0] <= key
        return keys[i], self._vals[b][i]

    def higher(self, key: int) -> tuple[int, V] | None:
        """The entry with the least key above ``key``."""
        firsts = self._firsts
        b = bisect.bisect_right(firsts, key) - 1
        if b >= 0:
            keys = self._keys[b]
            i = bisect.bisect_right(keys, key)
            if i < len(keys):
                return keys[i], self._vals[b][i]
        b += 1
        if b < len(firsts):
            return firsts[b], self._vals[b][0]
        return None

    def first(self) -> tuple[int, V] | None:
        return (self._firsts[0], self._vals[0][0]) if self._len else None

    def last(self, count: int) -> list[tuple[int, V]]:
        """Up to ``count`` entries with the highest keys, highest first."""
        out: list[tuple[int, V]] = []
        for b in range(len(self._keys) - 1, -1, -1):
            keys, vals = self._keys[b], self._vals[b]
            for i in range(len(keys) - 1, -1, -1):
                if len(out) == count:
                    return out
                out.append((keys[i], vals[i]))
        return out

    def _locate(self, key: int) -> tuple[int, int]:
        """Block and index of ``key``, which must be present."""
        b = bisect.bisect_right(self._firsts, key) - 1
        if b >= 0:
            keys = self._keys[b]
            i = bisect.bisect_left(keys, key)
            if i < len(keys) and keys[i] == key:
                return b, i
        raise KeyError(key)

    def __setitem__(self, key: int, value: V) -> None:
        """Set the value of ``key``, adding the entry if it is new."""
        firsts = self._firsts
        if not firsts:
            self._keys.append([key])
            self._vals.append([value])
            firsts.append(key)
            self._len = 1
            return
        b = max(bisect.bisect_right(firsts, key) - 1, 0)
        keys, vals = self._keys[b], self._vals[b]
        i = bisect.bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            vals[i] = value
            return
        keys.insert(i, key)
        vals.insert(i, value)
        self._len += 1
        if i == 0:
            firsts[b] = key
        if len(keys) > 2 * LOAD:
            self._keys.insert(b + 1, keys[LOAD:])
            self._vals.insert(b + 1, vals[LOAD:])
            firsts.insert(b + 1, keys[LOAD])
            del keys[LOAD:], vals[LOAD:]

    def __delitem__(self, key: int) -> None:
        self._remove(*self._locate(key))

    def pop_first(self) -> tuple[int, V]:
        """Remove and return the entry with the lowest key (the map must not be empty)."""
        item = self._firsts[0], self._vals[0][0]
        self._remove(0, 0)
        return item

    def pop_last(self) -> tuple[int, V]:
        """Remove and return the entry with the highest key (the map must not be empty)."""
        b = len(self._keys) - 1
        i = len(self._keys[b]) - 1
        item = self._keys[b][i], self._vals[b][i]
        self._remove(b, i)
        return item

    def _remove(self, b: int, i: int) -> None:
        keys, vals = self._keys[b], self._vals[b]
        del keys[i], vals[i]
        self._len -= 1
        if not keys:
            del self._keys[b], self._vals[b], self._firsts[b]
            return
        if i == 0:
            self._firsts[b] = keys[0]
        if len(keys) < LOAD // 4 and len(self._keys) > 1:
            self._merge(b)

    def _merge(self, b: int) -> None:
        """Fold the short block ``b`` into a neighbour, splitting again if that overflows."""
        a = b - 1 if b > 0 else b  # merge blocks a and a + 1
        keys, vals = self._keys[a], self._vals[a]
        keys += self._keys[a + 1]
        vals += self._vals[a + 1]
        del self._keys[a + 1], self._vals[a + 1], self._firsts[a + 1]
        if len(keys) > 2 * LOAD:
            half = len(keys) // 2
            self._keys.insert(a + 1, keys[half:])
            self._vals.insert(a + 1, vals[half:])
            self._firsts.insert(a + 1, keys[half])
            del keys[half:], vals[half:]

    def clear(self) -> None:
        self._keys.clear()
        self._vals.clear()
        self._firsts.clear()
        self._len = 0
