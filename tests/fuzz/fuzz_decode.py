"""Coverage-guided fuzzing of the segment decoder (atheris).

Every datagram either decodes or raises ``MalformedSegment``, nothing else; what decodes
encodes again, and that decodes back to the same segment. Half the inputs get a correct
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
    checksum,
    decode,
    encode,
)


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


def main() -> None:
    import atheris

    atheris.instrument_all()  # coverage feedback from udptcp (and everything loaded)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
