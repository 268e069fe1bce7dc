"""Type stub for the optional C codec (udptcp/core/_speedups.c)."""

from collections.abc import Callable

from udptcp.core.segment import MalformedSegment, Options, Segment

def setup(
    segment: type[Segment],
    options: type[Options],
    malformed: type[MalformedSegment],
    encode: Callable[[Segment], bytes],
    decode: Callable[[bytes | bytearray | memoryview], Segment],
    checksum: Callable[[bytes | bytearray | memoryview], int],
) -> None: ...
def encode(seg: Segment) -> bytes: ...
def decode(data: bytes | bytearray | memoryview) -> Segment: ...
def checksum(data: bytes | bytearray | memoryview) -> int: ...
