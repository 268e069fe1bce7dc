"""Secure mode's wire format: the handshake option and the sealed datagram layout.

:mod:`udptcp.core.secure` describes the protocol around them (patterns, replay window,
migration, errors) and runs it; this module builds and recognises the bytes.

**The offer** rides in the SYN as an RFC 6994 experimental option: kind 253 with the 16-bit
ExID 0x5554 ("UT", not registered with IANA; RFC 6994 §3 lets experiments pick one). Its
body is a type byte and, for an offer, the handshake pattern's number. The SYN, SYN-ACK and
reject RST use these types:

========  ======  =============================================================
type      on      body after the type byte, and the segment's payload
========  ======  =============================================================
1 OFFER   SYN     pattern number; payload: Noise message 1
2 ACCEPT  SYN-ACK pattern number; payload: Noise message 2
3 DECLINE SYN-ACK nothing (a udptcp server without secure mode); no payload
4 REJECT  RST     reason number (:data:`REJECT_REASONS`); no payload
5 WAIT    SYN     pattern number; no payload (a peer connection's responder,
                  :mod:`udptcp.core.secure_peer`)
========  ======  =============================================================

**Handshake bytes are not part of the TCP byte stream.** The Noise messages are the SYN's
and SYN-ACK's payloads, and secure mode strips them (and the option, :func:`stripped`)
before the TCP state machine sees the segment, so sequence numbers are exactly those of a plain handshake: the
SYN and SYN-ACK each occupy one sequence number and the client's first byte is ISS + 1.
A peer that does not know the option never delivers the bytes either: RFC 9293 lets a
passive opener queue SYN data only until the connection is established, and neither
udptcp's core nor Linux without a Fast Open cookie acknowledges or delivers it, so a plain
server answers with a plain SYN-ACK (the client then fails with
:class:`~udptcp.core.secure.SecureHandshakeError`, or carries on in plain mode if ``allow_plain`` says so). A
secure server never puts handshake bytes on a SYN-ACK unless the SYN offered: a plain
client *would* deliver SYN-ACK data (RFC 9293 §3.10.7.3).

**Sealed datagrams** (every datagram after the handshake, both ways)::

    0..19   the TCP header, readable: ports, seq, ack, data offset 8 (32 bytes), flags,
            window; checksum 0 and urgent pointer 0
    20..31  option kind 253, length 12, ExID 0x5554, then 8 bytes: a control byte
            (high nibble: 8 segment, 9 path challenge, 10 path response; low nibble: the
            inner options' length in 32-bit words) and a 56-bit datagram counter
    32..    ChaCha20-Poly1305 of (the segment's options || its payload), 16-byte tag last

The AEAD's associated data is bytes 0..31 as sent, so every header bit is authenticated;
the checksum is sent as zero and left zero, since the tag is a far stronger check (and
skipping the ones'-complement sum saves its cost twice per datagram). The nonce is the
counter (Noise's 32 zero bits + 64-bit little-endian), one per datagram and never the TCP
sequence number: a retransmission re-sends sequence space in a new datagram with a new
counter. Each direction has its own key (Noise Split()). A sealed datagram adds
:data:`SEAL_OVERHEAD` (28) bytes, which the MSS gives up.
"""

from __future__ import annotations

import struct

from udptcp.core.connection import rst_for
from udptcp.core.segment import Options, Segment

__all__ = [
    "ACCEPT",
    "ACCEPT_EXTRA",
    "DECLINE_EXTRA",
    "CIPHER",
    "COUNTER_LIMIT",
    "DECLINE",
    "EXID",
    "KIND_PATH_CHALLENGE",
    "KIND_PATH_RESPONSE",
    "KIND_SEGMENT",
    "OFFER",
    "OPTION_KIND",
    "PATTERNS",
    "PATTERN_IDS",
    "REJECT",
    "REJECT_REASONS",
    "SEALED_HEADER",
    "SEALED_OFFSET_BYTE",
    "SEALED_OPTION",
    "SEAL_HEADER_LEN",
    "SEAL_OVERHEAD",
    "TAG_LEN",
    "WAIT",
    "decline_option",
    "find_offer",
    "handshake_fields",
    "is_sealed",
    "option_body",
    "prologue",
    "reject_segment",
    "stripped",
    "with_option",
]

OPTION_KIND = 253
"""RFC 6994 shared experimental option kind (253 and 254 are both assigned for this)."""
EXID = 0x5554
"""The 16-bit experiment identifier: "UT"."""
_EXID_BYTES = EXID.to_bytes(2, "big")

# Handshake option types (first body byte after the ExID).
OFFER = 1
ACCEPT = 2
DECLINE = 3
REJECT = 4
WAIT = 5

# Sealed datagram kinds (high nibble of the control byte).
KIND_SEGMENT = 0x8
KIND_PATH_CHALLENGE = 0x9
KIND_PATH_RESPONSE = 0xA

#: Pattern numbers in the offer, and the pattern names.
PATTERNS = {1: "NK", 2: "IK", 3: "NNpsk0", 4: "NKpsk0", 5: "IKpsk2"}
PATTERN_IDS = {name: number for number, name in PATTERNS.items()}
CIPHER = "ChaCha20-Poly1305"

# REJECT reasons.
REFUSED_PLAIN = 1
AUTH_FAILED = 2
UNSUPPORTED = 3
MALFORMED = 4
PSK_REQUIRED = 5
NO_PSK = 6
NO_IDENTITY = 7
WRONG_PEER = 8
MISMATCH = 9
#: What each REJECT reason tells the client.
REJECT_REASONS = {
    REFUSED_PLAIN: "the server accepts secure connections only",
    AUTH_FAILED: (
        "the server could not authenticate the handshake: the peer_key pinned for it is "
        "not its key, the psk differs from its own, or the SYN was altered on the way"
    ),
    UNSUPPORTED: "the server does not know the handshake pattern offered",
    MALFORMED: "the server found the handshake offer malformed",
    PSK_REQUIRED: "the server requires a pre-shared key (psk=)",
    NO_PSK: "the server has no pre-shared key; connect without psk=",
    NO_IDENTITY: "the server has no identity, so no peer_key can be pinned for it; use psk=",
    WRONG_PEER: "the server pinned another key than this side's identity",
    MISMATCH: "the server's secure-mode keys are of another kind (its pattern differs)",
}

SEAL_HEADER_LEN = 32
TAG_LEN = 16
#: Bytes a sealed datagram adds to a plain one: the 12-byte option and the 16-byte tag.
SEAL_OVERHEAD = 12 + TAG_LEN
#: Datagram counters are 56 bits; a connection never sends past this.
COUNTER_LIMIT = 1 << 56
#: Header and the 12-byte option: ports, seq, ack, data offset byte, flags, window,
#: checksum, urgent pointer, option kind, option length, ExID, control byte << 56 | counter.
SEALED_HEADER = struct.Struct("!HHIIBBHHHBBHQ")
#: Byte 12 of a sealed datagram: data offset 8 words.
SEALED_OFFSET_BYTE = (SEAL_HEADER_LEN // 4) << 4
#: Bytes 20..23 of a sealed datagram: option kind, length 12, ExID.
SEALED_OPTION = bytes((OPTION_KIND, 12)) + _EXID_BYTES
_PROLOGUE_LABEL = b"udptcp secure mode 1\x00"
# handshake_fields(): ports, seq, ack, flags, MSS, window scale, SACK-permitted, timestamps.
_FIELDS = struct.Struct("!HHIIBHBBB")
#: Most bytes an ACCEPT answer adds to a SYN-ACK: its 6-byte option with up to 3 of padding,
#: then Noise message 2 (an ephemeral key, the SYN-ACK's summary, a tag).
ACCEPT_EXTRA = 6 + 3 + 32 + _FIELDS.size + TAG_LEN
#: Most bytes a DECLINE option adds to a SYN-ACK (5 bytes, up to 3 of padding).
DECLINE_EXTRA = 5 + 3


def option_body(options: Options | None) -> bytes | None:
    """The body (after the ExID) of our option in ``options``, or None."""
    if options is None:
        return None
    for kind, data in options.unknown:
        if kind == OPTION_KIND and data[:2] == _EXID_BYTES:
            return data[2:]
    return None


def find_offer(seg: Segment) -> bytes | None:
    """The body of a SYN's secure-mode option (type byte first), or None."""
    return option_body(seg.options)


def with_option(seg: Segment, body: bytes, payload: bytes) -> Segment:
    opts = seg.options
    extra = ((OPTION_KIND, _EXID_BYTES + body),)
    if opts is None:
        options = Options(unknown=extra)
    else:
        options = Options(
            mss=opts.mss,
            wscale=opts.wscale,
            sack_permitted=opts.sack_permitted,
            sack_blocks=opts.sack_blocks,
            timestamps=opts.timestamps,
            unknown=opts.unknown + extra,
        )
    return Segment(
        seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window, options, payload
    )


def stripped(seg: Segment) -> Segment:
    """``seg`` without our option and without payload (the handshake bytes)."""
    opts = seg.options
    options = opts
    if opts is not None and opts.unknown:
        options = Options(
            mss=opts.mss,
            wscale=opts.wscale,
            sack_permitted=opts.sack_permitted,
            sack_blocks=opts.sack_blocks,
            timestamps=opts.timestamps,
            unknown=tuple(
                (k, d) for k, d in opts.unknown if not (k == OPTION_KIND and d[:2] == _EXID_BYTES)
            ),
        )
    return Segment(seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window, options)


def handshake_fields(seg: Segment) -> bytes:
    """The summary of a SYN or SYN-ACK that the handshake authenticates."""
    o = seg.options
    mss = sack = ts = 0
    wscale_byte = 255
    if o is not None:
        mss = o.mss or 0
        wscale_byte = 255 if o.wscale is None else o.wscale
        sack = int(o.sack_permitted)
        ts = int(o.timestamps is not None)
    return _FIELDS.pack(
        seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, mss, wscale_byte, sack, ts
    )


def decline_option(seg: Segment) -> Segment:
    """``seg`` (a SYN-ACK of a server without secure mode) with a DECLINE option."""
    return with_option(seg, bytes((DECLINE,)), seg.payload)


def reject_segment(syn: Segment, reason: int) -> Segment | None:
    """The RST refusing ``syn``, carrying a REJECT option with ``reason``. It acknowledges
    the SYN alone: the handshake bytes on it are not sequence space."""
    rst = rst_for(stripped(syn))
    if rst is None:
        return None
    return with_option(rst, bytes((REJECT, reason)), b"")


def is_sealed(data: bytes) -> bool:
    """True if ``data`` has the layout of a sealed datagram (the tag is not checked)."""
    return (
        len(data) >= SEAL_HEADER_LEN + TAG_LEN
        and data[12] == SEALED_OFFSET_BYTE
        and data[20:24] == SEALED_OPTION
        and data[24] >= KIND_SEGMENT << 4
    )


def prologue(syn: Segment, body: bytes) -> bytes:
    """What the handshake binds itself to: the SYN's summary and the offer."""
    return _PROLOGUE_LABEL + handshake_fields(stripped(syn)) + body
