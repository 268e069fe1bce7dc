"""Path MTU search (RFC 8899 packetization layer PMTU discovery, RFC 4821 for TCP).

Sizes are TCP payload + 20 (MSS units). The search starts from the base MSS, proven
without probing, and probes halfway towards ``Config.pmtu_max`` with a real data segment;
an acknowledged probe raises the size every later segment takes, a lost one lowers the
ceiling, and retransmission timeouts with big segments outstanding fall back to the base
(black hole detection, RFC 8899 §4.3).
"""

from __future__ import annotations

from .control import _TIMESTAMPS_LEN, S
from .segment import ACK, PSH
from .sender import Sender
from .seq import seq_diff


class PathMtu(Sender):
    """Path MTU probing (a Connection part)."""

    __slots__ = ()

    # Declared here as real methods, not as typing-only stubs, so that a
    # compiled build (mypyc, which rejects statements in a class body) can call them.
    def _mss_changed(self) -> None:
        """Tell congestion control of a new segment size (loss recovery, the part above
        this one, defines it)."""
        raise NotImplementedError

    def _maybe_probe(self, off: int, now: float) -> bool:
        """Send a path MTU probe (RFC 8899 §5.3 search, a binary one here) when the time is
        right: established, not recovering, nothing resent, a probe's worth of data waiting
        and window for it. Returns True when one went out."""
        if (
            self._probe is not None
            or now < self._probe_after
            or self._in_recovery
            or self.snd_nxt != self.snd_max
            or self.state not in (S.ESTABLISHED, S.CLOSE_WAIT)
            or self.peer_mss <= self._send_cap
        ):
            return False
        size = min((self._pmtu_low + self._pmtu_high + 1) // 2, self.peer_mss)
        if size - self._pmtu_low < 32:
            self._pmtu_high = self._pmtu_low  # close enough: the search is over
            return False
        data = size - (_TIMESTAMPS_LEN if self.ts_enabled else 0) - self._sack_option_len()
        room = min(self.snd_wnd, self.cc.cwnd) - seq_diff(self.snd_nxt, self.snd_una)
        if self._sendbuf.end - off < data or room < data:
            return False
        self._probe = (off, off + data, size)
        self.stats_counters["pmtu_probes"] += 1
        last = off + data == self._sendbuf.end
        self._transmit(ACK | (PSH if last else 0), self.snd_nxt, off, data, now)
        return True

    def _probe_acknowledged(self, upto: int) -> None:
        """Everything up to stream offset ``upto`` arrived: a probe below it proved its size."""
        if self._probe is not None and self._probe[1] <= upto:
            size = self._probe[2]
            self._probe = None
            self._pmtu_low = self._send_cap = size
            self._mss_changed()

    def _probe_lost(self, now: float) -> None:
        """The probe did not make it: the path takes less (RFC 8899 §5.2 PROBE_FAILED)."""
        assert self._probe is not None
        self._pmtu_high = self._probe[2] - 1
        self._probe = None
        self._probe_after = now + (self.rtt.srtt or 0.1)
        self.stats_counters["pmtu_probe_failures"] += 1

    def _black_hole_check(self) -> None:
        """A retransmission timeout: if segments above the base size were in use, they may
        have stopped arriving (RFC 8899 §4.3 black hole detection). Back to the base size,
        and search again later."""
        if self._send_cap > self._base_mss:
            self._send_cap = self._pmtu_low = self._base_mss
            self._pmtu_high = (self.config.pmtu_max or 20) - 20
            self._mss_changed()
            self.stats_counters["pmtu_black_holes"] += 1
