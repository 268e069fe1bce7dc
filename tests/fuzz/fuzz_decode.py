"""Coverage-guided fuzzing of the segment decoder (atheris).

Every datagram either decodes or raises ``MalformedSegment``, nothing else; what decodes
encodes again, and that decodes back to the same segment. Where the C speedups are built,
they must agree with the pure-Python codec on every input (same segment, same bytes, same
reason and detail) and must not crash the process. Half the inputs get a correct
checksum written into them first (the first byte decides), so the fuzzer's mutations reach
the option parser instead of all dying at the checksum.

Run (atheris is in the optional ``fuzz`` extra)::

    python tests/fuzz/fuzz_decode.py -max_total_time=600 tests/fuzz/corpus/decode
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's udptcp, not an installed one

from udptcp.core.segment import (  # noqa: E402
    MALFORMED_REASONS,
    MalformedSegment,
    Options,
    Segment,
    checksum,
    decode,
    encode,
    pure_checksum,
    pure_decode,
    pure_encode,
)

try:
    from udptcp.core import _speedups
except ImportError:
    _speedups = None
else:
    _speedups.setup(Segment, Options, MalformedSegment, pure_encode, pure_decode, pure_checksum)


def _decoded(fn, data: bytes) -> object:
    try:
        return fn(data)
    except MalformedSegment as exc:
        return (exc.reason, exc.detail)


def _compare_paths(data: bytes) -> None:
    """The compiled codec against the reference, on this input and its re-encoding."""
    if _speedups is None:
        return
    assert _speedups.checksum(data) == pure_checksum(data)
    expected = _decoded(pure_decode, data)
    assert _decoded(_speedups.decode, data) == expected, data.hex()
    if isinstance(expected, Segment):
        assert _speedups.encode(expected) == pure_encode(expected)


def one_input(data: bytes) -> None:
    """The property, for one input."""
    if data and data[0] & 1 and len(data) >= 21:
        # Write the checksum that makes the rest of the datagram valid.
        body = bytearray(data[1:])
        body[16:18] = b"\0\0"
        body[16:18] = checksum(body).to_bytes(2, "big")
        data = bytes(body)
    else:
        data = data[1:]
    _compare_paths(data)
    try:
        seg = decode(data)
    except MalformedSegment as exc:
        assert exc.reason in MALFORMED_REASONS, exc.reason
        return
    header_len = (data[12] >> 4) * 4
    assert seg.payload == data[header_len:]
    wire = encode(seg)
    again = decode(wire)
    if seg.options is not None and seg.options == Options():
        seg.options = None  # only NOPs and EOL: encoded as no options at all, as documented
    assert again == seg, (seg, again)
    # A decoded segment's own encoding is canonical: encoding it again changes nothing.
    assert encode(again) == wire


def _seeds() -> list[bytes]:
    """Well-formed datagrams with every option kind, for the fuzzer to start from."""
    segs = [
        Segment(1, 2, 3, 4, 0x02, 65535, Options(mss=1452, wscale=7, sack_permitted=True)),
        Segment(1, 2, 3, 4, 0x10, 100, Options(timestamps=(5, 6)), b"data"),
        Segment(1, 2, 3, 4, 0x10, 100, Options(timestamps=(5, 6), sack_blocks=((7, 8), (9, 10)))),
        Segment(1, 2, 3, 4, 0x18, 100, Options(sack_blocks=((1, 2),) * 4)),
        Segment(1, 2, 3, 4, 0x10, 100, Options(unknown=((30, b"xyz"),)), b"!"),
    ]
    return [b"\0" + encode(seg) for seg in segs]


def main() -> None:
    import atheris

    for arg in sys.argv[1:]:
        corpus = Path(arg)
        if corpus.is_dir() and not any(corpus.iterdir()):
            for i, seed in enumerate(_seeds()):
                (corpus / f"seed-{i}").write_bytes(seed)
    atheris.instrument_all()  # coverage feedback from udptcp (and everything loaded)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
