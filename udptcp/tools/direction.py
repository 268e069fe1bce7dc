"""One direction of an impaired path: seeded loss, corruption, duplication, a link, delay.

The impairment relay (:mod:`udptcp.tools.relay`) has two of these per client, and the TUN
wire of :mod:`udptcp.tools.tunpair` uses them too. Each direction has its own
:class:`~udptcp.tools.impairment.Impairment` and its own ``random.Random``
(:func:`direction_rng`), so its fate pattern depends only on the seed and on the datagrams
that crossed it.

Per datagram, a direction applies (random draws are taken only for non-zero settings, in this
order, which is what makes a run reproducible):

1. MTU: a UDP payload longer than `mtu` bytes is dropped.
2. Loss: dropped with probability `loss`; or, with `burst`, the two-state loss chain steps
   once (one draw; and once more per millisecond of silence before the datagram) and the
   datagram is dropped while it is in its bad state.
3. Corruption: with probability `corrupt` one uniformly chosen bit is flipped.
4. Duplication: with probability `duplicate` a second copy follows; each copy then goes
   through steps 5-6 on its own.
5. Link: with a `rate`, the copy waits for the link to be free and is then serialised at
   `rate` bytes per second (payload bytes; no header overhead). Copies waiting for the link
   beyond `queue_limit` are dropped (drop-tail).
6. Propagation: `delay` plus a uniform `[0, jitter]` draw, plus `reorder_delay` with
   probability `reorder` (so later datagrams overtake it). Jitter alone can reorder too, as
   it does on a real path with per-packet jitter.

A datagram with no delay and no link to wait for is sent on at once, inside the receive
callback; everything else sits in one heap per direction served by a single timer.
"""

from __future__ import annotations

import asyncio
import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .impairment import Impairment

__all__ = ["Direction", "Record", "RelayStats", "direction_rng"]

Address = tuple[Any, ...]
Sender = Callable[[bytes], None]

# uvloop's clock and timers have millisecond granularity; a timer that fires before its
# deadline is re-armed at least this far ahead instead of spinning.
_MIN_REARM = 0.001


# --------------------------------------------------------------------------------------------
# Statistics and records


@dataclass
class RelayStats:
    """Counters for one direction. `sent` and `bytes_sent` include duplicate copies."""

    received: int = 0
    sent: int = 0
    dropped_loss: int = 0
    dropped_queue: int = 0
    dropped_mtu: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    bytes_sent: int = 0
    errors: int = 0
    """Socket errors reported while sending this direction (e.g. ICMP port unreachable)."""

    def __str__(self) -> str:
        return " ".join(f"{key}={value}" for key, value in asdict(self).items())


@dataclass(frozen=True)
class Record:
    """What happened to one datagram (or one duplicate copy) at the relay.

    `fate` is one of ``"sent"``, ``"duplicate"`` (the extra copy, sent), ``"dropped-loss"``,
    ``"dropped-queue"`` or ``"dropped-mtu"``. `flags` holds ``"corrupted"`` and/or
    ``"reordered"`` for datagrams that were altered on the way.
    """

    time: float
    """loop.time() when it was sent on (or dropped)."""
    direction: str
    """``"forward"`` (client -> target) or ``"backward"`` (target -> client)."""
    client: Address
    """The client address the datagram came from or went to."""
    data: bytes
    """The datagram as forwarded (after corruption) or as it was when dropped."""
    fate: str
    flags: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# One direction: impairment pipeline, link model and delay line


def direction_rng(seed: int, name: str) -> random.Random:
    """The generator of direction ``name`` (``"forward"``/``"backward"``) for ``seed``.

    Anything else that applies an :class:`Impairment` with :class:`Direction` (the TUN
    wire of :mod:`udptcp.tools.tunpair`, say) takes its generators from here, so the same
    seed gives the n-th datagram of a direction the same fate whichever tool carries it.
    (str seeds are hashed with SHA-512: stable across processes and PYTHONHASHSEED.)
    """
    return random.Random(f"udptcp.relay:{seed}:{name}")


class Direction:
    """Applies one direction's impairment and sends datagrams on when they are due.

    The relay makes two. To use one elsewhere, set :attr:`loop` (the running loop) before
    the first :meth:`submit`; each datagram then goes to the ``send`` callable it came with,
    at once or from a timer, unless the impairment drops it (counted in ``stats``).
    """

    def __init__(
        self,
        name: str,
        impairment: Impairment,
        rng: random.Random,
        stats: RelayStats,
    ) -> None:
        self.name = name
        self.rng = rng
        self.stats = stats
        self.loop: asyncio.AbstractEventLoop | None = None
        self.emit: Callable[[Record], None] | None = None
        self.closed = False
        self._heap: list[tuple[float, int, bytes, Sender, Address, str, tuple[str, ...]]] = []
        self._seq = 0
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._timer_when = 0.0
        self._link_free_at = 0.0
        self._link_waiting: deque[float] = deque()  # start times of copies waiting for the link
        self._bad = False  # state of the bursty-loss chain
        self._chain_time = 0.0  # when the chain last stepped
        self.set_impairment(impairment)

    def set_impairment(self, impairment: Impairment) -> None:
        self.impairment = impairment
        self._perfect = impairment.is_perfect
        if impairment.burst:
            # Leave the bad state with 1/burst per datagram, enter it as often as gives the
            # long-run share `loss`: bad / (bad + good) = p_gb / (p_gb + p_bg) = loss.
            self._p_bad_good = 1.0 / impairment.burst
            self._p_good_bad = self._p_bad_good * impairment.loss / (1.0 - impairment.loss)

    def _lose(self, imp: Impairment, now: float) -> bool:
        """Whether the loss model drops the next datagram (one draw).

        The bursty chain steps once per datagram, and once more per millisecond the
        direction was silent: a loss spell lasts about ``burst`` datagrams of a busy
        direction, but a lone retransmission sent after a timeout meets the average loss
        rate rather than a spell that only its own datagrams could end (which would turn
        every spell into a chain of backed-off timeouts).
        """
        if not imp.burst:
            return self.rng.random() < imp.loss
        steps = 1 + min(int((now - self._chain_time) * 1000), 1_000_000)
        self._chain_time = now
        # P(bad) after ``steps`` steps from the current state (two-state Markov chain).
        p_gb, p_bg = self._p_good_bad, self._p_bad_good
        share = p_gb / (p_gb + p_bg)
        decay = max(1.0 - p_gb - p_bg, 0.0) ** steps
        p_bad = share + ((1.0 if self._bad else 0.0) - share) * decay
        self._bad = self.rng.random() < p_bad
        return self._bad

    def submit(self, data: bytes, client: Address, send: Sender) -> None:
        """Take one datagram received for this direction."""
        if self.closed:
            return
        stats = self.stats
        stats.received += 1
        if self._perfect and self.emit is None:
            # Fast path: nothing to decide, nothing to record.
            send(data)
            stats.sent += 1
            stats.bytes_sent += len(data)
            return
        self._impair(data, client, send)

    def _impair(self, data: bytes, client: Address, send: Sender) -> None:
        assert self.loop is not None
        imp = self.impairment
        rng = self.rng
        stats = self.stats
        now = self.loop.time()
        if imp.mtu is not None and len(data) > imp.mtu:
            stats.dropped_mtu += 1
            self._record(now, client, data, "dropped-mtu", ())
            return
        if imp.loss and self._lose(imp, now):
            stats.dropped_loss += 1
            self._record(now, client, data, "dropped-loss", ())
            return
        flags: tuple[str, ...] = ()
        if imp.corrupt and data and rng.random() < imp.corrupt:
            bit = rng.randrange(len(data) * 8)
            corrupted = bytearray(data)
            corrupted[bit >> 3] ^= 0x80 >> (bit & 7)
            data = bytes(corrupted)
            stats.corrupted += 1
            flags = ("corrupted",)
        self._transmit(now, data, client, send, "sent", flags)
        if imp.duplicate and rng.random() < imp.duplicate:
            stats.duplicated += 1
            self._transmit(now, data, client, send, "duplicate", flags)

    def _transmit(
        self,
        now: float,
        data: bytes,
        client: Address,
        send: Sender,
        fate: str,
        flags: tuple[str, ...],
    ) -> None:
        """Put one copy on the link and the delay line (or send it at once)."""
        imp = self.impairment
        due = now
        if imp.rate is not None:
            waiting = self._link_waiting
            while waiting and waiting[0] <= now:
                waiting.popleft()
            start = max(now, self._link_free_at)
            if start > now:
                if len(waiting) >= imp.queue_limit:
                    self.stats.dropped_queue += 1
                    self._record(now, client, data, "dropped-queue", flags)
                    return
                waiting.append(start)
            # Serialisation: the copy is on the far side once its last byte has left.
            self._link_free_at = due = start + len(data) / imp.rate
        due += imp.delay
        if imp.jitter:
            due += self.rng.random() * imp.jitter
        if imp.reorder and self.rng.random() < imp.reorder:
            due += imp.reorder_delay
            self.stats.reordered += 1
            flags = (*flags, "reordered")
        if due <= now:
            self._send(data, client, send, fate, flags)
            return
        heapq.heappush(self._heap, (due, self._seq, data, send, client, fate, flags))
        self._seq += 1
        if self._timer is None or due < self._timer_when:
            if self._timer is not None:
                self._timer.cancel()
            self._arm(due, now)

    def _arm(self, when: float, now: float, fired_early: bool = False) -> None:
        assert self.loop is not None
        self._timer_when = when
        if fired_early:
            # uvloop rounds timers to whole milliseconds and may run one before its time;
            # wait at least a millisecond rather than spin until the deadline.
            self._timer = self.loop.call_later(max(when - now, _MIN_REARM), self._on_timer)
        else:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        assert self.loop is not None
        self._timer = None
        now = self.loop.time()
        heap = self._heap
        sent = False
        # Never early: a datagram leaves once loop.time() has reached its due time.
        while heap and heap[0][0] <= now:
            _due, _seq, data, send, client, fate, flags = heapq.heappop(heap)
            self._send(data, client, send, fate, flags)
            sent = True
        if heap and not self.closed:
            self._arm(heap[0][0], now, fired_early=not sent)

    def _send(
        self, data: bytes, client: Address, send: Sender, fate: str, flags: tuple[str, ...]
    ) -> None:
        send(data)
        self.stats.sent += 1
        self.stats.bytes_sent += len(data)
        if self.emit is not None:
            assert self.loop is not None
            self._record(self.loop.time(), client, data, fate, flags)

    def _record(
        self, now: float, client: Address, data: bytes, fate: str, flags: tuple[str, ...]
    ) -> None:
        if self.emit is not None:
            self.emit(Record(now, self.name, client, data, fate, flags))

    @property
    def pending(self) -> int:
        """Copies waiting on the link or in the delay line."""
        return len(self._heap)

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()
        self._link_waiting.clear()
