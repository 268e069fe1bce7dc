"""Wire codec (udptcp.core.segment) and sequence arithmetic (udptcp.core.seq)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udptcp.core.segment import (
    ACK,
    CWR,
    ECE,
    FIN,
    HEADER_LEN,
    MALFORMED_REASONS,
    MAX_OPTIONS_LEN,
    PSH,
    RST,
    SYN,
    URG,
    MalformedSegment,
    Options,
    Segment,
    checksum,
    decode,
    encode,
    options_length,
)
from udptcp.core.seq import (
    seq_add,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_le,
    seq_lt,
    seq_max,
    seq_min,
)

ALL_FLAGS = [FIN, SYN, RST, PSH, ACK, URG, ECE, CWR]
U32 = 0xFFFFFFFF

# Reproducible property runs that stay well inside the time budget.
quick = settings(derandomize=True, max_examples=200, deadline=None)


def reference_checksum(data: bytes) -> int:
    """RFC 1071 written out plainly: sum 16-bit big-endian words, fold carries, complement."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def raw_segment(
    options: bytes = b"",
    payload: bytes = b"",
    *,
    data_offset: int | None = None,
    flags: int = ACK,
    byte12_low: int = 0,
    urgent: int = 0,
) -> bytes:
    """Build a datagram by hand, with a correct checksum, so that decode gets past it."""
    if data_offset is None:
        data_offset = (HEADER_LEN + len(options)) // 4
    header = struct.pack(
        "!HHIIBBHHH", 1000, 80, 111, 222, data_offset << 4 | byte12_low, flags, 4096, 0, urgent
    )
    datagram = bytearray(header + options + payload)
    datagram[16:18] = reference_checksum(bytes(datagram)).to_bytes(2, "big")
    return bytes(datagram)


def malformed_reason(data: bytes) -> str:
    with pytest.raises(MalformedSegment) as info:
        decode(data)
    return info.value.reason


# --- layout ------------------------------------------------------------------------------


def test_syn_with_mss_is_byte_exact_rfc9293_layout() -> None:
    seg = Segment(1000, 80, 0x01020304, 0x0A0B0C0D, SYN, 65535, Options(mss=1460))
    wire = encode(seg)
    # Checksum worked by hand: the words 03E8 0050 0102 0304 0A0B 0C0D 6002 FFFF 0000 0000
    # 0204 05B4 sum to 0x1860F, which folds to 0x8610, whose complement is 0x79EF.
    expected = bytes.fromhex(
        "03e8"  # 0-1 source port 1000
        "0050"  # 2-3 destination port 80
        "01020304"  # 4-7 sequence number
        "0a0b0c0d"  # 8-11 acknowledgment number
        "60"  # 12 data offset 6 words, reserved 0
        "02"  # 13 flags: SYN
        "ffff"  # 14-15 window
        "79ef"  # 16-17 checksum
        "0000"  # 18-19 urgent pointer
        "020405b4"  # 20-23 MSS option: kind 2, length 4, 1460
    )
    assert wire == expected
    assert wire[0:2] == (1000).to_bytes(2, "big")
    assert wire[4:8] == (0x01020304).to_bytes(4, "big")
    assert wire[12] >> 4 == 6
    assert wire[13] == SYN
    assert wire[16:18] == reference_checksum(wire[:16] + b"\0\0" + wire[18:]).to_bytes(2, "big")
    assert decode(wire) == seg


def test_header_without_options_has_data_offset_5_and_decodes_to_no_options_object() -> None:
    wire = encode(Segment(1, 2, 3, 4, ACK, 5, payload=b"hello"))
    assert len(wire) == HEADER_LEN + 5
    assert wire[12] == 0x50
    assert wire[HEADER_LEN:] == b"hello"
    assert decode(wire).options is None


def test_encode_sends_reserved_bits_and_urgent_pointer_as_zero() -> None:
    wire = encode(Segment(1, 2, 3, 4, URG | ACK, 5, Options(mss=536), b"x"))
    assert wire[12] & 0x0F == 0
    assert wire[18:20] == b"\0\0"


def test_received_urg_flag_is_kept_and_urgent_pointer_and_reserved_bits_ignored() -> None:
    seg = decode(raw_segment(payload=b"data", flags=URG | ACK, byte12_low=0x0F, urgent=3))
    assert seg.flags == URG | ACK
    assert seg.payload == b"data"
    assert encode(seg)[18:20] == b"\0\0"


def test_decode_accepts_bytearray_and_memoryview() -> None:
    wire = encode(Segment(1, 2, 3, 4, ACK, 5, Options(timestamps=(7, 8)), b"abc"))
    expected = decode(wire)
    assert decode(bytearray(wire)) == expected
    assert decode(memoryview(b"junk" + wire)[4:]) == expected
    assert type(decode(memoryview(wire)).payload) is bytes


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [*ALL_FLAGS, 0, 0xFF], ids=lambda f: f"flags={f:#04x}")
def test_every_flag_round_trips(flags: int) -> None:
    seg = Segment(40000, 443, 0xFFFFFFFF, 0, flags, 1, payload=b"p")
    wire = encode(seg)
    assert wire[13] == flags
    assert decode(wire) == seg


@pytest.mark.parametrize(
    "options",
    [
        Options(mss=0),
        Options(mss=65535),
        Options(wscale=0),
        Options(wscale=14),
        Options(sack_permitted=True),
        Options(timestamps=(0, U32)),
        Options(sack_blocks=((1, 2),)),
        Options(sack_blocks=((1, 2), (U32, 5), (7, 8), (9, 10))),
        Options(timestamps=(1, 2), sack_blocks=((1, 2), (3, 4), (5, 6))),
        Options(unknown=((30, b""),)),
        Options(unknown=((30, b"\x02\x04\x05\xb4"), (254, b"\xff"))),
        Options(mss=1460, wscale=7, sack_permitted=True, timestamps=(123456, 0)),
    ],
    ids=repr,
)
def test_every_option_round_trips(options: Options) -> None:
    seg = Segment(1, 2, 3, 4, SYN | ACK, 5, options, b"xyz")
    wire = encode(seg)
    assert len(wire) == HEADER_LEN + options_length(options) + 3
    assert decode(wire) == seg


@pytest.mark.parametrize(
    ("options", "length"),
    [
        (None, 0),
        (Options(), 0),
        (Options(mss=1), 4),
        (Options(wscale=1), 4),
        (Options(sack_permitted=True), 4),
        (Options(timestamps=(1, 2)), 12),
        (Options(sack_blocks=((1, 2),) * 3), 28),
        (Options(unknown=((30, b""),)), 4),
        (Options(unknown=((30, b"abc"),)), 8),
        (Options(mss=1, unknown=((30, b"a"),)), 8),
        (Options(timestamps=(1, 2), sack_blocks=((1, 2),) * 3), 40),
    ],
    ids=repr,
)
def test_options_are_padded_to_4_bytes_with_eol(options: Options | None, length: int) -> None:
    assert options_length(options) == length
    wire = encode(Segment(options=options, payload=b"!"))
    assert wire[12] >> 4 == (HEADER_LEN + length) // 4
    assert wire[HEADER_LEN + length :] == b"!"
    if options is not None and options.unknown:
        body = 2 + len(options.unknown[-1][1])
        assert wire[HEADER_LEN + length - (-body & 3) : HEADER_LEN + length] == b"\0" * (-body & 3)


def test_timestamps_are_aligned_behind_two_nops() -> None:
    wire = encode(Segment(options=Options(timestamps=(0x11223344, 0x55667788))))
    assert wire[HEADER_LEN:] == bytes.fromhex("0101 080a 11223344 55667788")


def test_options_fall_back_to_unaligned_form_when_aligned_would_not_fit() -> None:
    # 4 + 3 + 2 + 10 + 18 = 37 option bytes: a peer may send this, but with alignment NOPs
    # it would take 44, so encode drops the NOPs rather than fail.
    options = Options(
        mss=1, wscale=2, sack_permitted=True, timestamps=(3, 4), sack_blocks=((5, 6), (7, 8))
    )
    assert options_length(options) == 40
    wire = encode(Segment(options=options))
    assert len(wire) == HEADER_LEN + 40
    assert decode(wire).options == options


def test_empty_options_encode_as_none() -> None:
    assert decode(encode(Segment(options=Options()))).options is None


def test_unknown_option_is_skipped_by_its_length_and_preserved() -> None:
    # The unknown option's data looks like an MSS option; it must not be read as one.
    options = bytes.fromhex("01 1e06020400ff 020405b4 00")  # NOP, kind 30, MSS, EOL
    seg = decode(raw_segment(options))
    assert seg.options == Options(mss=1460, unknown=((30, b"\x02\x04\x00\xff"),))
    assert decode(encode(seg)) == seg


def test_eol_ends_option_parsing() -> None:
    # Bytes after EOL would be a malformed option if they were read.
    seg = decode(raw_segment(bytes.fromhex("020405b4 00 0201ffff")))
    assert seg.options == Options(mss=1460)


def test_options_area_of_only_padding_decodes_to_empty_options() -> None:
    assert decode(raw_segment(b"\x01\x01\x01\x00")).options == Options()


def test_repeated_option_keeps_the_last_value() -> None:
    seg = decode(raw_segment(bytes.fromhex("02040001 02040002")))
    assert seg.options == Options(mss=2)


# --- malformed datagrams -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        pytest.param(b"", "short", id="empty"),
        pytest.param(raw_segment()[:19], "short", id="19 bytes"),
        pytest.param(raw_segment(data_offset=0), "data-offset", id="offset 0"),
        pytest.param(raw_segment(data_offset=4), "data-offset", id="offset 4"),
        pytest.param(raw_segment(b"\x01" * 4, data_offset=7), "data-offset", id="past end"),
        pytest.param(raw_segment(data_offset=15), "data-offset", id="offset 15, no room"),
        pytest.param(raw_segment(b"\x01\x01\x01\x02"), "option-overrun", id="no length byte"),
        pytest.param(raw_segment(b"\x02\x08\x00\x00"), "option-overrun", id="runs past end"),
        pytest.param(raw_segment(b"\x1e\x05\x00\x00"), "option-overrun", id="unknown past end"),
        pytest.param(raw_segment(b"\x1e\x00\x00\x00"), "option-length", id="length 0"),
        pytest.param(raw_segment(b"\x1e\x01\x00\x00"), "option-length", id="length 1"),
        pytest.param(raw_segment(b"\x02\x05" + b"\0" * 6), "option-length", id="mss len 5"),
        pytest.param(raw_segment(b"\x02\x03\0\0"), "option-length", id="mss len 3"),
        pytest.param(raw_segment(b"\x03\x04\x07\x00"), "option-length", id="wscale len 4"),
        pytest.param(raw_segment(b"\x04\x03\x00\x00"), "option-length", id="sackok len 3"),
        pytest.param(raw_segment(b"\x05\x02\x00\x00"), "option-length", id="sack no blocks"),
        pytest.param(raw_segment(b"\x05\x0b" + b"\0" * 10), "option-length", id="sack len 11"),
        pytest.param(raw_segment(b"\x08\x09" + b"\0" * 10), "option-length", id="ts len 9"),
    ],
)
def test_malformed_datagram_raises_with_its_reason(datagram: bytes, reason: str) -> None:
    assert malformed_reason(datagram) == reason


def test_bad_checksum_is_reported_as_checksum() -> None:
    wire = bytearray(encode(Segment(1, 2, 3, 4, ACK, 5, payload=b"abc")))
    wire[16] ^= 0x01
    assert malformed_reason(bytes(wire)) == "checksum"


def test_checksum_is_checked_before_the_data_offset() -> None:
    wire = bytearray(raw_segment(data_offset=4))
    wire[17] ^= 0x01
    assert malformed_reason(bytes(wire)) == "checksum"


def test_any_single_flipped_bit_is_caught_by_the_checksum() -> None:
    options = Options(mss=1460, sack_blocks=((10, 20),), unknown=((30, b"z"),))
    wire = encode(Segment(1000, 80, 7, 8, SYN | ACK, 9, options, b"payload!!"))
    for bit in range(len(wire) * 8):
        corrupted = bytearray(wire)
        corrupted[bit // 8] ^= 0x80 >> (bit % 8)
        assert malformed_reason(bytes(corrupted)) == "checksum", bit


def test_malformed_segment_is_a_value_error_with_reason_and_detail() -> None:
    error = MalformedSegment("short", "3 bytes")
    assert isinstance(error, ValueError)
    assert (error.reason, error.detail) == ("short", "3 bytes")
    assert "short" in str(error) and "3 bytes" in str(error)
    assert set(MALFORMED_REASONS) == {
        "short",
        "data-offset",
        "option-overrun",
        "option-length",
        "checksum",
    }


# --- encode errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "seg",
    [
        Segment(src_port=65536),
        Segment(seq=1 << 32),
        Segment(window=-1),
        Segment(flags=0x100),
        Segment(options=Options(mss=65536)),
        Segment(options=Options(wscale=256)),
        Segment(options=Options(sack_blocks=((1, 2),) * 5)),
        Segment(options=Options(timestamps=(1, 2), sack_blocks=((1, 2),) * 4)),
        Segment(options=Options(unknown=((30, b"x" * 39),))),
    ],
    ids=repr,
)
def test_encode_rejects_what_the_header_cannot_hold(seg: Segment) -> None:
    with pytest.raises(ValueError):
        encode(seg)


# --- checksum ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x00\x00", b"\xff", b"\xff\xff", b"\xff\xff" * 9, b"\x01\x02\x03", b"\xab"],
)
def test_checksum_corner_cases_match_rfc1071(data: bytes) -> None:
    assert checksum(data) == reference_checksum(data)


@quick
@given(st.binary(max_size=2000))
def test_checksum_matches_straightforward_rfc1071(data: bytes) -> None:
    assert checksum(data) == reference_checksum(data)
    assert checksum(bytearray(data)) == checksum(memoryview(data)) == checksum(data)


def test_segment_summing_to_ffff_gets_checksum_zero_and_decodes() -> None:
    # Choose the window so the words sum to exactly 0xFFFF: RFC 1071 then stores 0x0000,
    # never 0xFFFF (which is what an unfolded "0 mod 0xFFFF" shortcut would give).
    seg = Segment(1, 2, 3, 4, ACK, 0)
    window = int.from_bytes(encode(seg)[16:18], "big")
    seg.window = window
    wire = encode(seg)
    assert wire[16:18] == b"\0\0"
    assert decode(wire) == seg


# --- Segment and Options helpers ---------------------------------------------------------


def test_seg_len_counts_syn_and_fin() -> None:
    assert Segment(flags=ACK, payload=b"abc").seg_len == 3
    assert Segment(flags=SYN).seg_len == 1
    assert Segment(flags=FIN | ACK, payload=b"ab").seg_len == 3
    assert Segment(flags=SYN | FIN, payload=b"a").seg_len == 3


def test_has_and_flag_names() -> None:
    seg = Segment(flags=CWR | ACK | SYN)
    assert seg.has(SYN) and seg.has(ACK) and not seg.has(FIN)
    assert seg.flag_names() == "SYN,ACK,CWR"
    assert Segment(flags=0xFF).flag_names() == "FIN,SYN,RST,PSH,ACK,URG,ECE,CWR"
    assert Segment().flag_names() == ""


def test_repr_is_readable() -> None:
    assert repr(Segment(1000, 80, 5, 9, SYN | ACK, 65535)) == (
        "<Segment 1000->80 SYN,ACK seq=5 ack=9 win=65535 len=0>"
    )
    assert repr(Segment(1, 2, payload=b"ab", options=Options(mss=1460, wscale=7))) == (
        "<Segment 1->2 - seq=0 ack=0 win=0 len=2 Options(mss=1460, wscale=7)>"
    )


def test_equality_is_by_value() -> None:
    assert Segment(1, 2, options=Options(mss=5)) == Segment(1, 2, options=Options(mss=5))
    assert Segment(1, 2, payload=b"a") != Segment(1, 2, payload=b"b")
    assert Segment(options=Options()) != Segment()
    assert Options(sack_blocks=[(1, 2)]) == Options(sack_blocks=((1, 2),))  # type: ignore[arg-type]
    assert Options(timestamps=(1, 2)) != Options(timestamps=(1, 3))


# --- sequence arithmetic -----------------------------------------------------------------


def test_seq_helpers_across_the_wrap() -> None:
    assert seq_add(U32, 1) == 0
    assert seq_add(0, -1) == U32
    assert seq_add(U32 - 9, 20) == 10
    assert seq_diff(0, U32) == 1
    assert seq_diff(U32, 0) == -1
    assert seq_diff(10, U32 - 9) == 20
    assert seq_lt(U32, 0) and seq_le(U32, 0)
    assert seq_gt(0, U32) and seq_ge(0, U32)
    assert not seq_lt(0, U32) and not seq_gt(U32, 0)
    assert seq_le(5, 5) and seq_ge(5, 5) and not seq_lt(5, 5) and not seq_gt(5, 5)
    assert seq_max(U32, 3) == 3 and seq_min(U32, 3) == U32
    assert seq_max(3, U32) == 3 and seq_min(3, U32) == U32


def test_seq_half_space_apart_is_before_in_both_directions() -> None:
    # The documented ambiguity: seq_diff is -2**31 whichever way round.
    assert seq_diff(1 << 31, 0) == seq_diff(0, 1 << 31) == -(1 << 31)
    assert seq_lt(0, 1 << 31) and seq_lt(1 << 31, 0)


@quick
@given(st.integers(0, U32), st.integers(-(2**31) + 1, 2**31 - 1))
def test_seq_comparisons_follow_the_signed_distance(a: int, n: int) -> None:
    b = seq_add(a, n)
    assert 0 <= b <= U32
    assert seq_diff(b, a) == n
    assert seq_diff(a, b) == -n
    assert seq_gt(b, a) == (n > 0) == seq_lt(a, b)
    assert seq_ge(b, a) == (n >= 0) == seq_le(a, b)
    assert seq_max(a, b) == (b if n >= 0 else a)
    assert seq_min(a, b) == (a if n >= 0 else b)


# --- properties --------------------------------------------------------------------------


option_fragments = st.lists(
    st.one_of(
        st.sampled_from([b"\x00", b"\x01"]),
        st.builds(
            lambda kind, length, data: bytes((kind, length)) + data,
            st.sampled_from([2, 3, 4, 5, 8, 30]),
            st.integers(0, 20),
            st.binary(max_size=18),
        ),
        st.binary(min_size=1, max_size=3),
    ),
    max_size=6,
).map(b"".join)


@st.composite
def datagrams(draw: st.DrawFn) -> bytes:
    """Arbitrary bytes, and bytes shaped like a header with option-like bytes, a data offset
    that usually covers them and a checksum that is usually right, so that decode's every
    check gets exercised."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=60))
    data = bytearray(draw(st.binary(min_size=HEADER_LEN, max_size=HEADER_LEN)))
    options = draw(option_fragments)[:MAX_OPTIONS_LEN]
    options += b"\x00" * (-len(options) & 3)
    data += options + draw(st.binary(max_size=8))
    data_offset = (HEADER_LEN + len(options)) // 4
    if draw(st.integers(0, 3)) == 0:
        data_offset = draw(st.integers(0, 15))
    data[12] = data_offset << 4 | (data[12] & 0x0F)
    if draw(st.integers(0, 9)):
        data[16:18] = b"\0\0"
        data[16:18] = reference_checksum(bytes(data)).to_bytes(2, "big")
    return bytes(data)


@quick
@given(datagrams())
def test_decode_raises_only_malformed_segment(data: bytes) -> None:
    try:
        seg = decode(data)
    except MalformedSegment as error:
        assert error.reason in MALFORMED_REASONS
        return
    assert isinstance(seg.payload, bytes)
    # Whatever decodes can be encoded again to the same segment.
    again = decode(encode(seg))
    if seg.options == Options():
        seg.options = None
    assert again == seg


u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, U32)
unknown_kinds = st.integers(6, 255).filter(lambda kind: kind != 8)

options_strategy = st.builds(
    Options,
    mss=st.none() | u16,
    wscale=st.none() | st.integers(0, 255),
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(st.tuples(u32, u32), max_size=4).map(tuple),
    timestamps=st.none() | st.tuples(u32, u32),
    unknown=st.lists(st.tuples(unknown_kinds, st.binary(max_size=8)), max_size=3).map(tuple),
).filter(lambda options: options_length(options) <= MAX_OPTIONS_LEN)

segments = st.builds(
    Segment,
    src_port=u16,
    dst_port=u16,
    seq=u32,
    ack=u32,
    flags=st.integers(0, 255),
    window=u16,
    options=st.none() | options_strategy,
    payload=st.binary(max_size=64),
)


@quick
@given(segments)
def test_encode_decode_round_trip(seg: Segment) -> None:
    wire = encode(seg)
    assert len(wire) == HEADER_LEN + options_length(seg.options) + len(seg.payload)
    assert wire[16:18] == reference_checksum(wire[:16] + b"\0\0" + wire[18:]).to_bytes(2, "big")
    if seg.options == Options():
        seg.options = None
    assert decode(wire) == seg
