"""The links of the simulated network (:mod:`udptcp.tools.simnet`): one direction of one
wire each, with its queue, serializer and impairments, and the Gilbert–Elliott chain for
bursty loss.

A :class:`Link` holds its settings, its counters and its running state (queue, serializer,
loss chain); :class:`~udptcp.tools.simnet.SimNet` moves datagrams through it, drawing from
the link's own seeded random stream.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from udptcp.core.segment import Segment

__all__ = ["GilbertElliott", "Link", "mbit"]


def mbit(rate: float) -> float:
    """Bytes per second of a rate given in Mbit/s (the unit of :attr:`Link.rate`)."""
    return rate * 1e6 / 8


@dataclass(frozen=True)
class GilbertElliott:
    """Two-state bursty loss (the Gilbert–Elliott channel).

    In the good state a datagram is lost with ``loss_good``, in the bad state with
    ``loss_bad``. Before each datagram the chain steps once, moving good→bad with
    ``p_good_bad`` and bad→good with ``p_bad_good`` (netem's per-packet model). With
    ``step_time`` the chain instead steps once per ``step_time`` seconds of wire time (at
    least once per datagram), so a bad spell lasts a *time*: a sender whose lone
    retransmissions go out seconds apart then meets the average loss rate, not an outage
    that only its own datagrams can end. Set it to one datagram's serialization time to
    keep the per-packet figures at full load.
    """

    p_good_bad: float
    p_bad_good: float
    loss_good: float = 0.0
    loss_bad: float = 1.0
    step_time: float | None = None

    @classmethod
    def from_loss(
        cls,
        loss: float,
        burst: float = 4.0,
        loss_bad: float = 1.0,
        step_time: float | None = None,
    ) -> GilbertElliott:
        """A chain losing ``loss`` of all datagrams on average, in bad spells lasting
        ``burst`` steps on average (with ``loss_bad`` = 1, the mean loss-run length)."""
        if not 0 <= loss < loss_bad or burst < 1:
            raise ValueError(f"need 0 <= loss < loss_bad and burst >= 1, got {loss}, {burst}")
        p_bg = 1.0 / burst
        bad = loss / loss_bad  # stationary share of time in the bad state
        return cls(
            p_good_bad=p_bg * bad / (1 - bad),
            p_bad_good=p_bg,
            loss_bad=loss_bad,
            step_time=step_time,
        )

    @property
    def bad_share(self) -> float:
        """Long-run fraction of steps spent in the bad state."""
        total = self.p_good_bad + self.p_bad_good
        return self.p_good_bad / total if total else 0.0

    @property
    def mean_loss(self) -> float:
        """Long-run fraction of datagrams lost."""
        bad = self.bad_share
        return bad * self.loss_bad + (1 - bad) * self.loss_good

    def p_bad_after(self, bad: bool, steps: float) -> float:
        """Probability of the bad state ``steps`` steps after being in ``bad``."""
        decay = max(1.0 - self.p_good_bad - self.p_bad_good, 0.0) ** steps
        share = self.bad_share
        return share + ((1.0 if bad else 0.0) - share) * decay


@dataclass(eq=False)
class Link:
    """One direction of one wire. Probabilities are per datagram; times in seconds.

    A datagram entering the link is first offered to ``drop`` (a scripted loss: a predicate
    on the segment), checked against ``mtu``, then queued: with a ``rate``, a FIFO serializer
    takes ``(len + overhead) / rate`` seconds per datagram, and a datagram that finds
    ``queue_limit`` datagrams (or ``queue_bytes`` bytes) already *waiting* — the one being
    serialized does not count — is dropped (drop-tail). On the wire it may then be lost
    (``loss``, or the ``burst`` chain), duplicated, corrupted (one bit flipped), and arrives
    after ``delay`` plus a uniform ``[0, jitter]``. With ``preserve_order`` the jitter never
    lets a datagram overtake an earlier one; ``reorder`` separately holds a datagram back by
    ``reorder_delay``.
    """

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # chance a datagram is held back by ``reorder_delay``
    reorder_delay: float = 0.005
    delay: float = 0.001  # one-way propagation delay
    jitter: float = 0.0  # uniform extra delay in [0, jitter]
    corrupt: float = 0.0  # chance one random bit is flipped
    rate: float | None = None  # bytes per second (see ``mbit``); None = unlimited
    mtu: int | None = None  # largest UDP payload carried
    queue_limit: int = 1000  # datagrams waiting for the serializer beyond this are dropped
    # Counters, filled in as the simulation runs: "offered", "lost", "queue-full", ...,
    # and the high-water marks "max_queue" (datagrams waiting) and "max_queue_bytes".
    stats: dict[str, int] = field(default_factory=dict)
    queue_bytes: int | None = None  # byte limit of the waiting queue; None = none
    overhead: int = 0  # bytes each datagram costs beyond its UDP payload (28 for IPv4+UDP)
    burst: GilbertElliott | None = None  # bursty loss, on top of ``loss``
    preserve_order: bool = False  # jitter delays but never reorders
    drop: Callable[[Segment], bool] | None = None  # scripted loss: True drops the datagram
    name: str = ""  # for logs; set from the route when empty
    # Running state (one Link is one queue in one SimNet).
    _rng: random.Random | None = field(default=None, init=False, repr=False)
    _queue: deque[tuple[float, float, int]] = field(
        default_factory=deque, init=False, repr=False
    )  # (start, done, size) of datagrams not yet fully serialized
    _queued_bytes: int = field(default=0, init=False, repr=False)
    _free_at: float = field(default=0.0, init=False, repr=False)
    _last_arrival: float = field(default=0.0, init=False, repr=False)
    _bad: bool = field(default=False, init=False, repr=False)
    _ge_time: float = field(default=0.0, init=False, repr=False)

    def count(self, what: str, n: int = 1) -> None:
        self.stats[what] = self.stats.get(what, 0) + n

    @property
    def mean_loss(self) -> float:
        """Long-run fraction of datagrams lost on the wire (random and bursty combined)."""
        burst = self.burst.mean_loss if self.burst is not None else 0.0
        return 1 - (1 - self.loss) * (1 - burst)
