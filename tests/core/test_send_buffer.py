"""The send buffer against a plain bytes model: what get() returns, what acknowledge()
drops, what it keeps alive."""

from __future__ import annotations

import random

import pytest

from udptcp.core import buffers
from udptcp.core.buffers import SendBuffer

SEED = 20261204


@pytest.mark.parametrize("seed", range(SEED, SEED + 20))
def test_get_and_acknowledge_match_a_bytes_model(seed: int) -> None:
    rng = random.Random(seed)
    buf, model, start = SendBuffer(), bytearray(), 0  # model[i] is stream offset start + i
    for _ in range(400):
        action = rng.random()
        if action < 0.45:
            size = rng.choice([1, 7, 1400, 4095, 4096, 65536, 70_000, 300_000])
            kind = rng.choice([bytes, bytearray, memoryview])
            data = kind(rng.randbytes(size))
            buf.append(data)
            model += data
        elif action < 0.7 and len(model):
            upto = start + rng.randint(0, len(model))
            buf.acknowledge(upto)
            del model[: upto - start]
            start = upto
        elif len(model):
            offset = start + rng.randrange(len(model))
            size = rng.choice([1, 1400, 65413, 65536, 200_000])
            got = buf.get(offset, size)
            assert type(got) is bytes
            assert got == bytes(model[offset - start : offset - start + size]), (seed, offset)
        assert (buf.start, buf.end, len(buf)) == (start, start + len(model), len(model)), seed
    assert buf.get(buf.end, 100) == b""  # at the end (or in an empty buffer): nothing
    # Nothing left exported: every bytearray chunk can still grow.
    buf.append(b"x")
    assert buf.get(buf.end - 1, 1) == b"x"


def test_an_empty_buffer_has_nothing_to_get() -> None:
    buf = SendBuffer()
    assert buf.get(0, 1400) == b"" and len(buf) == 0
    buf.append(b"abc")
    buf.acknowledge(3)
    assert buf.get(3, 1400) == b""


def test_a_written_bytes_object_is_sent_without_a_copy_and_freed_once_acknowledged() -> None:
    buf = SendBuffer()
    chunk = bytes(range(256)) * 256  # 64 KiB, written as one bytes object
    buf.append(chunk)
    buf.append(chunk)
    assert buf.get(0, 65536) is chunk  # a segment that is one whole chunk is that object
    assert buf.get(65536 - 100, 200) == chunk[-100:] + chunk[:100]  # spanning: joined
    buf.acknowledge(65536 + 10)
    assert buf._chunks[0] == b""  # the first chunk's reference is gone already


def test_small_writes_share_one_chunk_and_the_open_chunk_is_reused(monkeypatch) -> None:
    buf = SendBuffer()
    for _ in range(100):
        buf.append(b"ab")
    assert len(buf._chunks) == 1 and buf.get(0, 200) == b"ab" * 100
    buf.acknowledge(200)
    tail = buf._chunks[0]
    buf.append(b"c")
    assert buf._chunks == [tail] and buf.get(200, 10) == b"c"  # no new chunk per message


def test_acknowledged_chunks_leave_the_lists_in_bulk() -> None:
    buf = SendBuffer()
    piece = bytes(8192)
    for _ in range(3 * buffers._COMPACT_AT):
        buf.append(piece)
    for k in range(1, 3 * buffers._COMPACT_AT):
        buf.acknowledge(k * len(piece))
        assert len(buf._chunks) - buf._first == 3 * buffers._COMPACT_AT - k
        assert buf._first < buffers._COMPACT_AT  # compacted: slots do not pile up


@pytest.mark.parametrize("count", [3, 2000, 70_000])  # a small, a large and a split write
def test_a_memoryview_of_wider_items_is_counted_in_bytes(count: int) -> None:
    # asyncio's transports take any bytes-like object, a memoryview of an array of 4-byte
    # integers included: its len() counts items, its buffer holds 4 bytes per item.
    from array import array

    wide = memoryview(array("I", range(count)))
    buf = SendBuffer()
    buf.append(b"head")
    buf.append(wide)
    buf.append(b"tail")
    expected = b"head" + wide.tobytes() + b"tail"
    assert len(buf) == buf.end == len(expected)
    assert buf.get(0, len(expected) + 1) == expected
    buf.acknowledge(len(expected) - 4)
    assert buf.get(buf.start, 100) == b"tail"
