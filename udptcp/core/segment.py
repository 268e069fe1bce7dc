"""TCP segments and their wire codec (RFC 9293 §3.1).

One UDP datagram carries exactly one TCP segment, byte for byte as RFC 9293 §3.1 lays it out,
with one difference: the checksum covers the segment alone, with no IP pseudo-header, because
NATs rewrite the addresses it would cover.

:func:`encode` turns a :class:`Segment` into bytes; :func:`decode` turns bytes into a
:class:`Segment` or raises :class:`MalformedSegment` -- never anything else -- so the endpoint
can count bad datagrams and drop them without touching connection state.

Decoding checks, in this order:

1. ``"short"``: fewer than 20 bytes, so there is no whole header.
2. ``"checksum"``: the datagram does not sum to 0xFFFF. Checked before anything inside the
   header is trusted, so a corrupted datagram is always counted as corruption, and the
   remaining reasons mean the sender itself built a bad segment.
3. ``"data-offset"``: data offset below 5 words or past the end of the datagram.
4. ``"option-overrun"`` / ``"option-length"``: an option runs past the header end, or has a
   length the option kind does not allow.

This module is on the hot path of every datagram: a header without options skips option
parsing and allocates no :class:`Options`, and the checksum is one big-integer remainder
(see :func:`_complement`).

Compiled twin: when the optional C extension ``udptcp.core._speedups`` was built (``pip
install`` builds it where a C compiler is present), :func:`encode`, :func:`decode` and
:func:`checksum` are its versions, which hand anything unusual back to the functions below.
The Python code here stays the reference; ``pure_encode``, ``pure_decode`` and
``pure_checksum`` are always these. ``UDPTCP_PURE=1`` in the environment keeps the
extension unloaded, and so does a build older than ``_speedups.c`` in a source checkout (with
a warning); :data:`SPEEDUPS` (also ``udptcp.__speedups__``) says which is active.
"""

from __future__ import annotations

import os
import struct

__all__ = [
    "ACK",
    "CWR",
    "ECE",
    "FIN",
    "HEADER_LEN",
    "MALFORMED_REASONS",
    "MAX_OPTIONS_LEN",
    "PSH",
    "RST",
    "SYN",
    "URG",
    "SPEEDUPS",
    "MalformedSegment",
    "Options",
    "Segment",
    "checksum",
    "decode",
    "decode_options",
    "encode",
    "encode_options",
    "options_length",
    "pure_checksum",
    "pure_decode",
    "pure_encode",
]

# Control bits, byte 13 of the header (RFC 9293 §3.1; ECE and CWR from RFC 3168 §23.2).
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

HEADER_LEN = 20
"""Length of the fixed header, in bytes (data offset 5)."""

MAX_OPTIONS_LEN = 40
"""Most option bytes a header can hold: data offset 15 words minus the fixed 5."""

MALFORMED_REASONS = ("short", "data-offset", "option-overrun", "option-length", "checksum")
"""Every value :attr:`MalformedSegment.reason` can take, for counters."""

# Option kinds (RFC 9293 §3.2; RFC 7323 §2.2 and §3.2; RFC 2018 §2 and §3).
_OPT_EOL = 0
_OPT_NOP = 1
_OPT_MSS = 2
_OPT_WSCALE = 3
_OPT_SACK_PERMITTED = 4
_OPT_SACK = 5
_OPT_TIMESTAMPS = 8

# Source port, destination port, seq, ack, data offset << 4, flags, window, checksum, urgent.
_HEADER = struct.Struct("!HHIIBBHHH")
_U16 = struct.Struct("!H")
_TIMESTAMPS = struct.Struct("!II")
# SACK option bodies holding 1..4 blocks of (left edge, right edge).
_SACK_EDGES = {n: struct.Struct(f"!{2 * n}I") for n in range(1, 5)}

_MSS_OPT = struct.Struct("!BBH")  # kind 2, len 4, MSS
_TIMESTAMPS_OPT = struct.Struct("!BBII")  # kind 8, len 10, TSval, TSecr
# NOP, NOP, timestamps: how encode() and common stacks lay out a header carrying only
# timestamps, which is most data segments once RFC 7323 timestamps are agreed. decode()
# recognises it without the general option loop.
_TIMESTAMPS_ONLY_PREFIX = b"\x01\x01\x08\x0a"
_TIMESTAMPS_ONLY_HLEN = HEADER_LEN + 12
_TIMESTAMPS_ONLY_OFFSET = _TIMESTAMPS_ONLY_HLEN << 2  # data offset byte: 8 words
# The header and those options in one pack: fields, then NOP NOP, kind 8 length 10, TSval, TSecr.
_HEADER_TIMESTAMPS = struct.Struct("!HHIIBBHHHHHII")

# flag_names() order: low bit to high bit, the order Wireshark prints them ("SYN,ACK").
_FLAG_ORDER = (
    (FIN, "FIN"),
    (SYN, "SYN"),
    (RST, "RST"),
    (PSH, "PSH"),
    (ACK, "ACK"),
    (URG, "URG"),
    (ECE, "ECE"),
    (CWR, "CWR"),
)
_FLAG_NAMES = tuple(
    ",".join(name for bit, name in _FLAG_ORDER if flags & bit) for flags in range(256)
)


class MalformedSegment(ValueError):
    """A datagram that is not a well-formed segment; it must be dropped and counted.

    ``reason`` is one of :data:`MALFORMED_REASONS`; ``detail`` is free text for logs.
    """

    reason: str
    detail: str

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        if self.detail:
            return f"malformed segment ({self.reason}): {self.detail}"
        return f"malformed segment ({self.reason})"


class Options:
    """The TCP options of one segment; every field is optional.

    ``unknown`` holds the ``(kind, data)`` of options this stack does not interpret, in the
    order received. They are kept for tracing and re-encoded by :func:`encode`, so a decoded
    segment round-trips; their kinds must not be 0, 1 or one of the known kinds above.
    """

    __slots__ = ("mss", "wscale", "sack_permitted", "sack_blocks", "timestamps", "unknown")

    mss: int | None
    """Maximum segment size (kind 2, RFC 9293 §3.7.1); SYN segments only."""
    wscale: int | None
    """Window scale shift count (kind 3, RFC 7323 §2), as received: the connection clamps
    values above 14."""
    sack_permitted: bool
    """SACK-permitted (kind 4, RFC 2018 §2); SYN segments only."""
    sack_blocks: tuple[tuple[int, int], ...]
    """SACK blocks as ``(left edge, right edge)`` pairs (kind 5, RFC 2018 §3), 1..4 of them."""
    timestamps: tuple[int, int] | None
    """``(TSval, TSecr)`` (kind 8, RFC 7323 §3)."""
    unknown: tuple[tuple[int, bytes], ...]
    """``(kind, data)`` of options not interpreted here."""

    def __init__(
        self,
        *,
        mss: int | None = None,
        wscale: int | None = None,
        sack_permitted: bool = False,
        sack_blocks: tuple[tuple[int, int], ...] = (),
        timestamps: tuple[int, int] | None = None,
        unknown: tuple[tuple[int, bytes], ...] = (),
    ) -> None:
        self.mss = mss
        self.wscale = wscale
        self.sack_permitted = sack_permitted
        self.sack_blocks = tuple(sack_blocks)
        self.timestamps = timestamps
        self.unknown = tuple(unknown)

    def _key(self) -> tuple[object, ...]:
        return (
            self.mss,
            self.wscale,
            self.sack_permitted,
            self.sack_blocks,
            self.timestamps,
            self.unknown,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Options):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        fields = []
        if self.mss is not None:
            fields.append(f"mss={self.mss}")
        if self.wscale is not None:
            fields.append(f"wscale={self.wscale}")
        if self.sack_permitted:
            fields.append("sack_permitted=True")
        if self.sack_blocks:
            fields.append(f"sack_blocks={self.sack_blocks!r}")
        if self.timestamps is not None:
            fields.append(f"timestamps={self.timestamps!r}")
        if self.unknown:
            fields.append(f"unknown={self.unknown!r}")
        return f"Options({', '.join(fields)})"


class Segment:
    """One TCP segment: header fields, options and payload.

    ``options`` is None when the header carries no options (data offset 5), so the common
    case allocates nothing extra. ``seq``, ``ack`` and ``window`` are the raw header values:
    the window is not yet shifted by any agreed window scale.
    """

    __slots__ = ("src_port", "dst_port", "seq", "ack", "flags", "window", "options", "payload")

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    options: Options | None
    payload: bytes

    def __init__(
        self,
        src_port: int = 0,
        dst_port: int = 0,
        seq: int = 0,
        ack: int = 0,
        flags: int = 0,
        window: int = 0,
        options: Options | None = None,
        payload: bytes = b"",
    ) -> None:
        self.src_port = src_port
        self.dst_port = dst_port
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.options = options
        self.payload = payload

    @property
    def seg_len(self) -> int:
        """Sequence space the segment occupies: payload length, plus one each for SYN and FIN
        (RFC 9293 §3.4, SEG.LEN)."""
        return len(self.payload) + ((self.flags & SYN) != 0) + ((self.flags & FIN) != 0)

    def has(self, flag: int) -> bool:
        """Return True if any bit of ``flag`` is set, e.g. ``seg.has(SYN)``."""
        return (self.flags & flag) != 0

    def flag_names(self) -> str:
        """The set flags as comma-separated names, lowest bit first, e.g. ``"SYN,ACK"``.

        The order is FIN, SYN, RST, PSH, ACK, URG, ECE, CWR (as Wireshark prints them). An
        empty string means no flags are set.
        """
        return _FLAG_NAMES[self.flags & 0xFF]

    def _key(self) -> tuple[object, ...]:
        return (
            self.src_port,
            self.dst_port,
            self.seq,
            self.ack,
            self.flags,
            self.window,
            self.options,
            self.payload,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Segment):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        options = "" if self.options is None else f" {self.options!r}"
        return (
            f"<Segment {self.src_port}->{self.dst_port} {self.flag_names() or '-'}"
            f" seq={self.seq} ack={self.ack} win={self.window}"
            f" len={len(self.payload)}{options}>"
        )


def checksum(data: bytes | bytearray | memoryview) -> int:
    """Return the RFC 1071 checksum of ``data``: the 16-bit ones' complement of the ones'
    complement sum of its big-endian 16-bit words, an odd last byte padded with a zero byte.

    A buffer that already holds its correct checksum gives 0.
    """
    return _complement(_words(data))


_FOLD_MASKS: dict[int, int] = {}  # bit width -> mask, for _words' folding


def _words(data: bytes | bytearray | memoryview) -> int:
    """An integer congruent, modulo 0xFFFF, to the sum of ``data``'s big-endian 16-bit
    words (an odd last byte padded with zero), and zero only if every byte is.

    Read little-endian, each word counts byte-swapped, and swapping a word's bytes is
    multiplying it by 2**8 modulo 0xFFFF (a rotation), so the little-endian reading times
    2**8 qualifies; an odd last byte lands as the low byte of a little-endian word, the
    high byte of its big-endian one, which is the padding rule. CPython reads a buffer as
    a little-endian integer about a third faster than as a big-endian one.
    """
    words = int.from_bytes(data, "little")
    n = len(data)
    while n > 256:
        # Fold the high half onto the low half at an even byte boundary: 2**(16k) is 1
        # modulo 0xFFFF, so the sum keeps the remainder (and is zero only if both are).
        # CPython divides a big integer by 0xFFFF digit by digit with a hardware divide;
        # shifts and adds are several times cheaper per digit (1.4 KB: -20%, 9 KB: -40%).
        half = (n >> 1) & ~1
        bits = half << 3
        mask = _FOLD_MASKS.get(bits)
        if mask is None:
            mask = _FOLD_MASKS[bits] = (1 << bits) - 1
        words = (words >> bits) + (words & mask)
        n = n - half + 1
    folded = words % 0xFFFF  # reduced first: the remainder of the bigger shifted value costs more
    if folded:
        return folded << 8
    return 0xFFFF if words else 0


def _complement(total: int) -> int:
    """Return the ones' complement of the ones' complement sum that ``total`` stands for.

    ``total`` is any non-negative integer congruent, modulo 0xFFFF, to the plain sum of the
    16-bit words, and zero only if every word is: since 2**16 == 1 (mod 0xFFFF), reading a
    whole even-length buffer as one big-endian integer qualifies, and so does adding such
    integers for pieces that start at even offsets. Folding carries back in (RFC 1071 §4.1) also preserves the value modulo
    0xFFFF, so the folded sum is that remainder -- except that a non-zero sum never folds to
    0: it is 0xFFFF, ones' complement "negative zero". One remainder is much faster in CPython
    than summing words one by one.
    """
    folded = total % 0xFFFF
    if folded == 0 and total:
        folded = 0xFFFF
    return 0xFFFF - folded


def options_length(options: Options | None) -> int:
    """Return how many bytes :func:`encode` spends on ``options``, padding included.

    The connection uses this to size payloads so that header plus data fit the datagram. A
    result above :data:`MAX_OPTIONS_LEN` means the options cannot be encoded.
    """
    if options is None:
        return 0
    length = 0  # option bytes proper
    nops = 0  # NOPs that align them
    if options.mss is not None:
        length += 4
    if options.wscale is not None:
        length += 3
        nops += 1
    if options.sack_permitted:
        length += 2
        nops += 2
    if options.timestamps is not None:
        length += 10
        nops += 2
    if options.sack_blocks:
        length += 2 + 8 * len(options.sack_blocks)
        nops += 2
    for _kind, data in options.unknown:
        length += 2 + len(data)
    aligned = _pad4(length + nops)
    return aligned if aligned <= MAX_OPTIONS_LEN else _pad4(length)


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def _encode_options(options: Options, aligned: bool) -> bytes:
    """Encode ``options`` in a fixed order, padded with EOL to a 4-byte boundary.

    With ``aligned`` every known option but MSS is preceded by NOPs so that it starts on a
    4-byte boundary, as common stacks send them (RFC 7323 Appendix A for timestamps). Without
    it there are no NOPs: encode() falls back to that when the aligned form would not fit,
    so that any set of options a peer could send can be encoded again.
    """
    nop = b"\x01" if aligned else b""
    parts: list[bytes] = []
    if options.mss is not None:
        parts.append(_MSS_OPT.pack(_OPT_MSS, 4, options.mss))
    if options.wscale is not None:
        parts.append(nop + bytes((_OPT_WSCALE, 3, options.wscale)))
    if options.sack_permitted:
        parts.append(nop + nop + bytes((_OPT_SACK_PERMITTED, 2)))
    if options.timestamps is not None:
        tsval, tsecr = options.timestamps
        parts.append(nop + nop + _TIMESTAMPS_OPT.pack(_OPT_TIMESTAMPS, 10, tsval, tsecr))
    if options.sack_blocks:
        blocks = options.sack_blocks
        if len(blocks) > 4:
            raise ValueError(f"{len(blocks)} SACK blocks, at most 4 fit (RFC 2018 §3)")
        edges = [edge for block in blocks for edge in block]
        parts.append(nop + nop + bytes((_OPT_SACK, 2 + 8 * len(blocks))))
        parts.append(_SACK_EDGES[len(blocks)].pack(*edges))
    for kind, data in options.unknown:
        parts.append(bytes((kind, 2 + len(data))))
        parts.append(data)
    encoded = b"".join(parts)
    # Pad with EOL, which ends option parsing (RFC 9293 §3.2).
    return encoded + b"\x00" * (-len(encoded) & 3)


def encode_options(options: Options) -> bytes:
    """The option bytes :func:`encode` puts in a header for ``options``, padded to a 4-byte
    boundary (secure mode encrypts them apart from the header). Raises ValueError if they
    need more than :data:`MAX_OPTIONS_LEN` bytes."""
    opts = _encode_options(options, aligned=True)
    if len(opts) > MAX_OPTIONS_LEN:
        opts = _encode_options(options, aligned=False)
    if len(opts) > MAX_OPTIONS_LEN:
        raise ValueError(f"options need {len(opts)} bytes, more than {MAX_OPTIONS_LEN}")
    return opts


def decode_options(data: bytes, start: int, end: int) -> Options:
    """Parse the option bytes ``data[start:end]`` as :func:`decode` parses a header's,
    raising :class:`MalformedSegment` (``"option-overrun"``, ``"option-length"``)."""
    return _decode_options(data, end, start)


def encode(seg: Segment) -> bytes:
    """Return the wire form of ``seg``: header, options, payload (RFC 9293 §3.1).

    Reserved bits and the urgent pointer are sent as zero; the data offset covers the options,
    padded to a 4-byte boundary. An :class:`Options` with nothing set encodes as no options,
    so it decodes back as ``options=None``. Raises ValueError if a field is out of range or
    the options need more than :data:`MAX_OPTIONS_LEN` bytes.
    """
    try:
        options = seg.options
        if (
            options is not None
            and options.timestamps is not None
            and options.mss is None
            and options.wscale is None
            and not options.sack_permitted
            and not options.sack_blocks
            and not options.unknown
        ):
            return _encode_timestamped(seg, options.timestamps)
        opts = b""
        if options is not None:
            opts = _encode_options(options, aligned=True)
            if len(opts) > MAX_OPTIONS_LEN:
                opts = _encode_options(options, aligned=False)
        if len(opts) > MAX_OPTIONS_LEN:
            raise ValueError(f"options need {len(opts)} bytes, more than {MAX_OPTIONS_LEN}")
        offset_byte = (HEADER_LEN + len(opts)) << 2  # data offset in words, in the high nibble
        payload = seg.payload
        payload_words = _words(payload)
        # The checksum without packing the header twice: each field's value is congruent to
        # the sum of its 16-bit words modulo 0xFFFF, and the checksum and urgent pointer fields
        # are zero. See _complement() for why that suffices.
        total = _fields_sum(seg, offset_byte) + int.from_bytes(opts, "big") + payload_words
        header = _HEADER.pack(
            seg.src_port,
            seg.dst_port,
            seg.seq,
            seg.ack,
            offset_byte,
            seg.flags,
            seg.window,
            _complement(total),
            0,
        )
    except struct.error as exc:
        raise ValueError(f"cannot encode {seg!r}: {exc}") from exc
    return header + opts + payload


def _fields_sum(seg: Segment, offset_byte: int) -> int:
    """The header fields' share of the checksum sum (checksum and urgent pointer are 0)."""
    return (
        seg.src_port
        + seg.dst_port
        + seg.seq
        + seg.ack
        + (offset_byte << 8 | seg.flags)
        + seg.window
    )


def _encode_timestamped(seg: Segment, timestamps: tuple[int, int]) -> bytes:
    """encode() for the usual data segment or ACK: options NOP, NOP, timestamps only."""
    tsval, tsecr = timestamps
    payload = seg.payload
    # As in encode(); the option bytes sum to 0x0101 + 0x080A + TSval + TSecr.
    total = (
        _fields_sum(seg, _TIMESTAMPS_ONLY_OFFSET)
        + 0x0101
        + 0x080A
        + tsval
        + tsecr
        + _words(payload)
    )
    header = _HEADER_TIMESTAMPS.pack(
        seg.src_port,
        seg.dst_port,
        seg.seq,
        seg.ack,
        _TIMESTAMPS_ONLY_OFFSET,
        seg.flags,
        seg.window,
        _complement(total),
        0,
        0x0101,
        0x080A,
        tsval,
        tsecr,
    )
    return header + payload


def decode(data: bytes | bytearray | memoryview) -> Segment:
    """Parse one datagram into a :class:`Segment`.

    Raises :class:`MalformedSegment` for any content that is not a well-formed segment, and
    no other exception for any bytes-like input. The checks run in the order the module
    docstring lists. The URG flag is kept in ``flags`` as received, but the urgent pointer is
    ignored (docs/architecture.md#wire-format). Options are parsed only when the data offset is above 5.
    """
    if type(data) is not bytes:
        data = bytes(data)  # also flattens memoryviews of other formats or shapes
    length = len(data)
    if length < HEADER_LEN:
        raise MalformedSegment("short", f"{length} bytes")
    if checksum(data) != 0:
        raise MalformedSegment("checksum")
    src_port, dst_port, seq, ack, offset_byte, flags, window, _checksum, _urgent = (
        _HEADER.unpack_from(data)
    )
    header_len = (offset_byte >> 4) << 2
    if header_len < HEADER_LEN or header_len > length:
        raise MalformedSegment("data-offset", f"header {header_len} bytes, datagram {length}")
    if header_len == HEADER_LEN:
        options = None
    elif (
        header_len == _TIMESTAMPS_ONLY_HLEN
        and data[HEADER_LEN : HEADER_LEN + 4] == _TIMESTAMPS_ONLY_PREFIX
    ):
        options = Options(timestamps=_TIMESTAMPS.unpack_from(data, HEADER_LEN + 4))
    else:
        options = _decode_options(data, header_len)
    return Segment(src_port, dst_port, seq, ack, flags, window, options, data[header_len:])


def _decode_options(data: bytes, end: int, start: int = HEADER_LEN) -> Options:
    """Parse the options in ``data[start:end]`` (RFC 9293 §3.2).

    A known kind appearing twice keeps its last value.
    """
    mss: int | None = None
    wscale: int | None = None
    sack_permitted = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamps: tuple[int, int] | None = None
    unknown: list[tuple[int, bytes]] = []
    i = start
    while i < end:
        kind = data[i]
        if kind == _OPT_EOL:
            break
        if kind == _OPT_NOP:
            i += 1
            continue
        # Every other kind, known or not, is kind, length (counting both), data.
        if i + 1 >= end:
            raise MalformedSegment("option-overrun", f"kind {kind} at {i} has no length byte")
        opt_len = data[i + 1]
        if opt_len < 2:
            raise MalformedSegment("option-length", f"kind {kind} at {i} has length {opt_len}")
        next_i = i + opt_len
        if next_i > end:
            raise MalformedSegment(
                "option-overrun", f"kind {kind} at {i} length {opt_len} passes {end}"
            )
        if kind == _OPT_MSS:
            _expect_length(kind, opt_len, opt_len == 4)
            mss = _U16.unpack_from(data, i + 2)[0]
        elif kind == _OPT_WSCALE:
            _expect_length(kind, opt_len, opt_len == 3)
            wscale = data[i + 2]
        elif kind == _OPT_SACK_PERMITTED:
            _expect_length(kind, opt_len, opt_len == 2)
            sack_permitted = True
        elif kind == _OPT_SACK:
            # 2 + 8n bytes; n is at most 4 because the option space is 40 bytes (RFC 2018 §3).
            blocks, rest = divmod(opt_len - 2, 8)
            _expect_length(kind, opt_len, blocks >= 1 and rest == 0)
            edges = _SACK_EDGES[blocks].unpack_from(data, i + 2)
            sack_blocks = tuple(zip(edges[0::2], edges[1::2], strict=True))
        elif kind == _OPT_TIMESTAMPS:
            _expect_length(kind, opt_len, opt_len == 10)
            timestamps = _TIMESTAMPS.unpack_from(data, i + 2)
        else:
            unknown.append((kind, data[i + 2 : next_i]))
        i = next_i
    return Options(
        mss=mss,
        wscale=wscale,
        sack_permitted=sack_permitted,
        sack_blocks=sack_blocks,
        timestamps=timestamps,
        unknown=tuple(unknown),
    )


def _expect_length(kind: int, opt_len: int, ok: bool) -> None:
    if not ok:
        raise MalformedSegment("option-length", f"kind {kind} cannot have length {opt_len}")


# ---------------------------------------------------------------- the compiled twin

pure_encode = encode
pure_decode = decode
pure_checksum = checksum


def _load_speedups() -> bool:
    """Put the C codec in place of :func:`encode`, :func:`decode` and :func:`checksum` if it
    was built and ``UDPTCP_PURE`` does not forbid it; return whether it did."""
    global encode, decode, checksum
    if os.environ.get("UDPTCP_PURE", "") not in ("", "0"):
        return False
    try:
        from udptcp.core import _speedups
    except ImportError:  # not built: no compiler at install time, or another interpreter
        return False
    from udptcp.core import _pure

    directory = os.path.dirname(os.path.abspath(__file__))
    stale = _pure.codec_stale_reason(directory)
    if stale is not None:  # an edited _speedups.c that was not rebuilt
        _pure.warn_stale("codec", directory, stale)
        return False
    _speedups.setup(Segment, Options, MalformedSegment, pure_encode, pure_decode, pure_checksum)
    encode = _speedups.encode
    decode = _speedups.decode
    checksum = _speedups.checksum
    return True


SPEEDUPS: bool = _load_speedups()
"""True when the compiled codec is active, False when this module's Python runs."""
