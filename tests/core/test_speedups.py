"""The compiled codec (``udptcp/core/_speedups.c``) against its pure-Python reference.

For every input -- hostile bytes, datagrams with a valid checksum and garbage options, every
segment a lossy transfer really sends, segments with fields out of range or of the wrong
type -- both paths must give the same bytes, the same decoded segment, or the same
exception (type, reason, detail). The extension is imported directly, so this runs under
``UDPTCP_PURE=1`` too; it skips only where the extension was not built.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import udptcp
from udptcp.core import segment
from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.segment import (
    ACK,
    PSH,
    SYN,
    MalformedSegment,
    Options,
    Segment,
    pure_checksum,
    pure_decode,
    pure_encode,
)

try:
    from udptcp.core import _speedups
except ImportError:  # pragma: no cover - depends on the install
    _speedups = None

pytestmark = pytest.mark.skipif(
    _speedups is None, reason="the C speedups are not built (no compiler at install time)"
)

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261204
# Seeded: the same examples every run (the seed shows in any failure's output).
many = settings(derandomize=True, max_examples=1000, deadline=None, database=None)


@pytest.fixture(autouse=True, scope="module")
def _set_up() -> None:
    if _speedups is not None:
        _speedups.setup(Segment, Options, MalformedSegment, pure_encode, pure_decode, pure_checksum)


def _outcome(fn: Callable[[Any], Any], arg: Any) -> tuple[str, Any]:
    """What one call did: its result, or its exception in comparable form."""
    try:
        return ("ok", fn(arg))
    except MalformedSegment as exc:
        return ("malformed", (exc.reason, exc.detail, exc.args, str(exc)))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


def _same_decode(data: Any) -> None:
    expected = _outcome(pure_decode, data)
    got = _outcome(_speedups.decode, data)
    assert got == expected, f"input {bytes(data).hex()}"
    if got[0] == "ok":
        seg = got[1]
        assert type(seg) is Segment and type(seg.payload) is bytes
        assert seg.options is None or type(seg.options) is Options


def _same_encode(seg: Any) -> None:
    expected = _outcome(pure_encode, seg)
    got = _outcome(_speedups.encode, seg)
    assert got == expected, repr(seg)


def _with_checksum(data: bytes) -> bytes:
    """``data`` with the checksum that makes it pass, so decoding reaches the options."""
    body = bytearray(data)
    if len(body) >= 20:
        body[16:18] = b"\0\0"
        body[16:18] = pure_checksum(body).to_bytes(2, "big")
    return bytes(body)


def test_the_active_path_is_named_and_follows_udptcp_pure() -> None:
    code = (
        "import udptcp, udptcp.core.segment as s; print(udptcp.__speedups__, s.decode.__module__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "UDPTCP_PURE"}
    runs = {}
    for pure in ("", "1"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**env, "UDPTCP_PURE": pure},
            capture_output=True,
            text=True,
            check=True,
        )
        runs[pure] = out.stdout.split()
    assert runs[""] == ["True", "udptcp.core._speedups"]
    assert runs["1"] == ["False", "udptcp.core.segment"]
    assert isinstance(udptcp.__speedups__, bool)
    assert udptcp.__speedups__ is segment.SPEEDUPS


@many
@given(st.binary(max_size=120))
def test_decode_of_hostile_bytes_matches(data: bytes) -> None:
    _same_decode(data)


@many
@given(
    st.binary(min_size=20, max_size=20),
    st.integers(5, 15),
    st.lists(st.sampled_from([0, 1, 2, 3, 4, 5, 8, 30, 254]), max_size=12),
    st.binary(max_size=60),
)
def test_decode_with_a_valid_checksum_reaches_the_options_and_matches(
    header: bytes, offset: int, kinds: list[int], rest: bytes
) -> None:
    # Option-looking bytes (real kinds with random lengths) behind a chosen data offset.
    rng = random.Random(len(rest) * 7919 + offset)
    opts = b"".join(bytes((k, rng.choice((0, 1, 2, 3, 4, 10, 18, 34, 42, 255)))) for k in kinds)
    data = bytearray(header + opts + rest)
    data[12] = (offset << 4) | (data[12] & 0x0F)
    _same_decode(_with_checksum(bytes(data)))


def test_decode_of_bytearray_memoryview_and_other_buffers_matches() -> None:
    wire = pure_encode(Segment(1, 2, 3, 4, ACK, 5, Options(timestamps=(6, 7)), b"x" * 34))
    for data in (
        bytearray(wire),
        memoryview(wire),
        memoryview(wire).cast("H"),
        memoryview(wire)[::2],
        b"",
        "not bytes",
        None,
        12345,
    ):
        assert _outcome(_speedups.decode, data) == _outcome(pure_decode, data), repr(data)


@many
@given(st.one_of(st.binary(max_size=3000), st.binary(max_size=3000).map(bytearray)))
def test_checksum_matches(data: bytes | bytearray) -> None:
    assert _speedups.checksum(data) == pure_checksum(data)


def test_checksum_corners_match() -> None:
    rng = random.Random(SEED)
    for n in range(0, 70):
        for data in (bytes(n), b"\xff" * n, rng.randbytes(n)):
            for form in (bytes, bytearray, memoryview):
                assert _speedups.checksum(form(data)) == pure_checksum(form(data)), (n, data)
    # Whole 64 KB datagrams, all ones among them: the most carry the sums ever take.
    for n in (65507, 65535):
        for data in (b"\xff" * n, rng.randbytes(n), bytes(n - 1) + b"\x01"):
            assert _speedups.checksum(data) == pure_checksum(data), n
    assert _speedups.checksum(b"\xff\xff") == pure_checksum(b"\xff\xff") == 0
    assert _speedups.checksum(b"") == pure_checksum(b"") == 0xFFFF
    assert _outcome(_speedups.checksum, "text") == _outcome(pure_checksum, "text")


u32 = st.integers(0, 2**32 - 1)
# Mostly valid values, sometimes just outside the field, sometimes of another type.
field16 = st.one_of(st.integers(0, 0xFFFF), st.sampled_from([-1, 0x10000, True, 2**70, "1"]))
field32 = st.one_of(u32, st.sampled_from([-1, 2**32, False, 1.5]))
options_st = st.builds(
    Options,
    mss=st.one_of(st.none(), field16),
    wscale=st.one_of(st.none(), st.integers(0, 14), st.sampled_from([255, 256, -1])),
    sack_permitted=st.one_of(st.booleans(), st.sampled_from([0, 1])),
    sack_blocks=st.lists(
        st.one_of(st.tuples(u32, u32), st.tuples(field32, field32), st.tuples(u32)),
        max_size=5,
    ).map(tuple),
    timestamps=st.one_of(st.none(), st.tuples(u32, u32), st.tuples(field32, field32)),
    unknown=st.lists(st.tuples(st.integers(6, 255), st.binary(max_size=6)), max_size=2).map(tuple),
)


@settings(many, max_examples=500)
@given(
    field16,
    field16,
    field32,
    field32,
    st.one_of(st.integers(0, 255), st.just(256)),
    field16,
    st.one_of(st.none(), options_st),
    st.one_of(st.binary(max_size=1500), st.binary(max_size=50).map(bytearray)),
)
def test_encode_of_any_segment_matches(
    src: Any, dst: Any, seq: Any, ack: Any, flags: int, window: Any, options: Any, payload: Any
) -> None:
    seg = Segment(src, dst, seq, ack, flags, window, options, payload)
    _same_encode(seg)
    wire = _outcome(pure_encode, seg)
    if wire[0] == "ok":
        _same_decode(wire[1])


def test_encode_of_odd_objects_matches() -> None:
    class Sub(Segment):
        __slots__ = ()

    unset = Segment.__new__(Segment)
    half = Options.__new__(Options)
    for seg in (
        Sub(1, 2, 3, 4, ACK, 5, None, b"sub"),
        unset,
        Segment(1, 2, 3, 4, ACK, 5, half, b""),
        Segment(1, 2, 3, 4, ACK, 5, "options", b""),
        Segment(1, 2, 3, 4, ACK, 5, None, memoryview(b"mv")),
        Segment(1, 2, 3, 4, ACK, 5, None, "text"),
        Segment(1, 2, 3, 4, ACK, 5, Options(timestamps=[1, 2])),
        Segment(1, 2, 3, 4, ACK, 5, Options(timestamps=(1, 2, 3))),
        Segment(1, 2, 3, 4, SYN, 5, Options(mss=1460, wscale=14, sack_permitted=True)),
        Segment(1, 2, 3, 4, ACK, 5, Options(sack_blocks=((1, 2),) * 4, timestamps=(1, 2))),
        None,
        b"bytes",
    ):
        assert _outcome(_speedups.encode, seg) == _outcome(pure_encode, seg), repr(seg)


def _real_segments(seed: int) -> list[bytes]:
    """Every datagram of a lossy 200 KB exchange with SACK, timestamps, window scaling."""
    rng = random.Random(seed)
    config = Config()
    now = 0.0
    wire: list[bytes] = []
    # The handshake, as simnet.connected_pair makes it, but with its segments kept.
    a = Connection.connect(config, local_port=1000, remote_port=2000, iss=seed, mss=1452, now=now)
    syn = a.take_segments()
    b = Connection.accept(config, syn[0], iss=seed << 20, mss=1452, now=now)
    syn_ack = b.take_segments()
    for seg in syn_ack:
        a.receive(seg, now)
    for seg in syn + syn_ack:
        wire.append(pure_encode(seg))
    a.send(rng.randbytes(200_000), now)
    b.send(b"r" * 20_000, now)
    a.shutdown(now)
    flight: list[tuple[Connection, Segment]] = []
    for _ in range(3000):
        for src, dst in ((a, b), (b, a)):
            for seg in src.take_segments():
                wire.append(pure_encode(seg))
                if rng.random() > 0.05:
                    flight.append((dst, seg))
        for conn in (a, b):
            conn.take_events()
        if b.state is State.CLOSE_WAIT:
            b.shutdown(now)
        if not flight:
            timers = [t for t in (a.get_timer(), b.get_timer()) if t is not None]
            if not timers or (a.state is State.TIME_WAIT and b.state is State.CLOSED):
                break
            now = max(now, min(timers))
            for conn in (a, b):
                timer = conn.get_timer()
                if timer is not None and timer <= now:
                    conn.handle_timer(now)
            continue
        rng.shuffle(flight)  # reordering
        now += 0.001
        for dst, seg in flight:
            dst.receive(seg, now)
        flight.clear()
    return wire


@pytest.mark.parametrize("seed", [1, 2])
def test_every_segment_of_a_lossy_transfer_round_trips_identically(seed: int) -> None:
    wire = _real_segments(seed)
    assert len(wire) > 150
    kinds = set()
    for data in wire:
        seg = pure_decode(data)
        assert _speedups.decode(data) == seg
        assert _speedups.encode(seg) == pure_encode(seg) == data
        kinds.add((seg.flags & SYN, bool(seg.options and seg.options.sack_blocks)))
        # Corrupted copies: one flipped byte, and a truncation.
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0x5A
        _same_decode(bytes(bad))
        _same_decode(data[: len(data) // 2])
    # The corpus holds handshake segments and SACK-carrying ACKs, not only data.
    assert (SYN, False) in kinds and (0, True) in kinds, kinds


def test_saved_fuzz_inputs_decode_identically() -> None:
    folder = ROOT / "tests" / "fuzz" / "corpus" / "decode"
    inputs = sorted(folder.iterdir()) if folder.is_dir() else []
    rng = random.Random(SEED)
    generated = [rng.randbytes(rng.randrange(80)) for _ in range(2000)]
    for data in [p.read_bytes() for p in inputs] + generated:
        _same_decode(data)
        _same_decode(_with_checksum(data))


def test_a_data_segment_is_what_the_rfc_says_on_both_paths() -> None:
    seg = Segment(0x1234, 0x5678, 1, 2, ACK | PSH, 3, Options(timestamps=(4, 5)), b"ab")
    wire = _speedups.encode(seg)
    assert wire[:4] == bytes.fromhex("12345678")
    assert wire[12] >> 4 == 8  # 20-byte header plus NOP, NOP, timestamps
    assert wire[20:24] == b"\x01\x01\x08\x0a"
    assert pure_checksum(wire) == 0
    assert wire == pure_encode(seg)
