"""Sequence-number tests written out for speed must agree with :mod:`udptcp.core.seq`'s
helpers: ``in_window`` (every arriving segment) against the RFC 9293 §3.10.7.4 four-case
test spelled with ``seq_le``/``seq_lt``, on random values and on the edges of the window and
of the half sequence space where modular comparison turns over."""

from __future__ import annotations

import random

from udptcp.core.seq import in_window, seq_add, seq_le, seq_lt

_MASK = 0xFFFFFFFF
_HALF = 0x80000000


def _reference(rcv_nxt: int, rcv_wnd: int, seq: int, seg_len: int) -> bool:
    if seg_len == 0:
        if rcv_wnd == 0:
            return seq == rcv_nxt
        return seq_le(rcv_nxt, seq) and seq_le(seq, seq_add(rcv_nxt, rcv_wnd))
    if rcv_wnd == 0:
        return False
    last = seq_add(seq, seg_len - 1)
    end = seq_add(rcv_nxt, rcv_wnd)
    return (seq_le(rcv_nxt, seq) and seq_lt(seq, end)) or (
        seq_le(rcv_nxt, last) and seq_lt(last, end)
    )


def _cases(rng: random.Random) -> list[tuple[int, int, int, int]]:
    cases = []
    for _ in range(20_000):
        rcv_nxt = rng.choice((0, 1, _HALF - 1, _HALF, _MASK, rng.randrange(1 << 32)))
        rcv_wnd = rng.choice((0, 1, 1460, 65535, 1 << 30, _HALF - 1, rng.randrange(1 << 31)))
        near = rng.choice((rcv_nxt, (rcv_nxt + rcv_wnd) & _MASK, (rcv_nxt + _HALF) & _MASK))
        seq = rng.choice(((near + rng.randint(-3, 3)) & _MASK, rng.randrange(1 << 32)))
        seg_len = rng.choice((0, 1, 2, 1460, rng.randrange(1, 1 << 16)))
        cases.append((rcv_nxt, rcv_wnd, seq, seg_len))
    return cases


def test_in_window_agrees_with_the_four_case_test() -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    for case in _cases(rng):
        assert in_window(*case) == _reference(*case), f"seed {seed}: {case}"
