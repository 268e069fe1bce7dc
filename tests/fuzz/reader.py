"""Reading a fuzzer's bytes as a script: small integers and choices, zero once exhausted.

The harnesses take their decisions from here rather than from ``atheris.FuzzedDataProvider``
so that they also run without atheris (``test_harnesses.py`` replays inputs in CI).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


class Reader:
    """Consumes ``data`` front to back."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def exhausted(self) -> bool:
        return self.pos >= len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def uint(self, nbytes: int) -> int:
        value = 0
        for _ in range(nbytes):
            value = value << 8 | self.byte()
        return value

    def signed(self, nbytes: int) -> int:
        bits = 8 * nbytes
        value = self.uint(nbytes)
        return value - (1 << bits) if value >= 1 << (bits - 1) else value

    def flag(self) -> bool:
        return bool(self.byte() & 1)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.byte() % len(options)]

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk
