"""Sequence-number arithmetic modulo 2**32 (RFC 9293 §3.4).

TCP sequence numbers wrap, so ``a < b`` on raw integers is wrong near the wrap. Every
comparison here looks at the signed 32-bit distance ``a - b``: ``a`` is "before" ``b`` when
that distance is negative. All functions take and return plain ``int`` values in
``0 .. 2**32 - 1``.

The comparisons agree exactly with the sign of :func:`seq_diff`, so ``seq_lt`` is always
``not seq_ge`` and ``seq_gt`` is always ``not seq_le``. The one ambiguous case is two numbers
exactly 2**31 apart: their distance is -2**31 whichever way round, so each is "less than" the
other. A correct window never spans half the sequence space, so this never matters in practice.
"""

from __future__ import annotations

__all__ = [
    "SEQ_MOD",
    "in_window",
    "seq_add",
    "seq_diff",
    "seq_ge",
    "seq_gt",
    "seq_le",
    "seq_lt",
    "seq_max",
    "seq_min",
]

SEQ_MOD = 1 << 32
"""The size of the sequence space."""

_MASK = 0xFFFFFFFF
_HALF = 0x80000000


def seq_add(a: int, n: int) -> int:
    """Return ``a + n`` modulo 2**32 (``n`` may be negative)."""
    return (a + n) & _MASK


def seq_diff(a: int, b: int) -> int:
    """Return the signed distance ``a - b``, in ``-2**31 .. 2**31 - 1``."""
    return ((a - b + _HALF) & _MASK) - _HALF


def seq_lt(a: int, b: int) -> bool:
    """Return True if ``a`` comes strictly before ``b``."""
    return ((a - b) & _MASK) >= _HALF


def seq_le(a: int, b: int) -> bool:
    """Return True if ``a`` comes before ``b`` or equals it."""
    d = (a - b) & _MASK
    return d == 0 or d >= _HALF


def seq_gt(a: int, b: int) -> bool:
    """Return True if ``a`` comes strictly after ``b``."""
    return 0 < ((a - b) & _MASK) < _HALF


def seq_ge(a: int, b: int) -> bool:
    """Return True if ``a`` comes after ``b`` or equals it."""
    return ((a - b) & _MASK) < _HALF


def seq_max(a: int, b: int) -> int:
    """Return whichever of ``a`` and ``b`` comes later in sequence space."""
    return a if ((a - b) & _MASK) < _HALF else b


def seq_min(a: int, b: int) -> int:
    """Return whichever of ``a`` and ``b`` comes earlier in sequence space."""
    return b if ((a - b) & _MASK) < _HALF else a


def in_window(rcv_nxt: int, rcv_wnd: int, seq: int, seg_len: int) -> bool:
    """RFC 9293 §3.10.7.4's four-case acceptability test of a segment of ``seg_len``
    sequence numbers starting at ``seq`` against the receive window.

    §3.10.7.4 says SEG.SEQ < RCV.NXT+RCV.WND for an empty segment; like Linux and BSD a bare
    ACK at the right edge itself is accepted too, which is where a sender that filled the
    window puts it."""
    # Every arriving segment is tested: seq_le (d == 0 or d >= 2**31, d the masked
    # difference) and seq_lt (d >= 2**31) are written out.
    if seg_len == 0:
        if rcv_wnd == 0:
            return seq == rcv_nxt
        d = (rcv_nxt - seq) & _MASK
        if not (d == 0 or d >= _HALF):
            return False
        d = (seq - rcv_nxt - rcv_wnd) & _MASK
        return d == 0 or d >= _HALF
    if rcv_wnd == 0:
        return False
    end = rcv_nxt + rcv_wnd
    d = (rcv_nxt - seq) & _MASK
    if (d == 0 or d >= _HALF) and ((seq - end) & _MASK) >= _HALF:
        return True
    last = seq + seg_len - 1
    d = (rcv_nxt - last) & _MASK
    return (d == 0 or d >= _HALF) and ((last - end) & _MASK) >= _HALF
