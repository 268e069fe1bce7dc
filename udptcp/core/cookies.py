"""SYN cookies: a stateless answer to a SYN when the half-open table is full (RFC 4987 §3.6).

The listener's SYN-ACK carries, as its initial sequence number, everything it needs to
rebuild the handshake when the final ACK comes back (ACK = cookie + 1), and it keeps nothing
meanwhile. The 32-bit cookie is laid out as

====== ===========================================================================
bits   contents
====== ===========================================================================
31–27  a coarse clock: :data:`TICK` seconds per step, modulo 32
26–24  index of the peer's MSS in :data:`MSS_TABLE` (the largest entry not above it)
23–0   a MAC (HMAC-SHA256, truncated) over the peer's UDP address, both virtual ports,
       the peer's ISN, the clock and the MSS index
====== ===========================================================================

A cookie is valid in the clock step it was made in and the next one (64 to 128 s). The MAC
key is random and replaced every :data:`KEY_LIFETIME` seconds, the previous key being still
accepted, so a key outlives every cookie it made and no cookie outlives two keys. A blind
attacker must guess 24 bits per forged ACK (one in ~8 million against each of the two keys).

The peer's window-scale and SACK-permitted choices do not fit in the sequence number; where
the SYN offered timestamps they ride in the low bits of our TSval (:func:`encode_ts_choices`)
and come back in the final ACK's TSecr, as Linux does. Without timestamps a cookie connection
has neither window scaling nor SACK (its SYN-ACK does not offer them).

Sans-I/O: every call takes ``now``; nothing here reads a clock or touches the network.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes, hmac

from .seq import seq_gt

__all__ = [
    "KEY_LIFETIME",
    "MAX_AGE",
    "MSS_TABLE",
    "TICK",
    "SynCookies",
    "check_ts_echo",
    "decode_ts_choices",
    "encode_ts_choices",
]

_MASK = 0xFFFFFFFF
#: Seconds per step of the cookie's clock.
TICK = 64.0
#: Steps of age a cookie may have when its ACK comes back: made in this step or the last.
_MAX_AGE_TICKS = 1
#: The longest a cookie can be valid, in seconds.
MAX_AGE = TICK * (_MAX_AGE_TICKS + 1)
#: Seconds each MAC key is used to make cookies; it is still accepted for as long again.
KEY_LIFETIME = 2 * TICK
#: MSS values a cookie can carry, ascending: 48 (the least Linux will send with), 536 (RFC
#: 9293's default), udptcp's own sizes on a 1280-byte IPv6 / IPv4 path (1212, 1232) and on
#: a 1500-byte one (1432, 1452), Linux TCP's on Ethernet (1460) and a jumbo frame's (8952).
MSS_TABLE = (48, 536, 1212, 1232, 1432, 1452, 1460, 8952)
_MAC_BITS = 24
_MAC_MASK = (1 << _MAC_BITS) - 1
# What the MAC covers after the address: local and remote virtual port, peer ISN, clock
# step, MSS index.
_MAC_FIELDS = struct.Struct("!HHIBB")
# TSval low bits (encode_ts_choices): bit 0 SACK-permitted, bits 1-4 the peer's window
# scale shift, 15 meaning "no window scaling".
_TS_BITS = 5
_TS_MASK = (1 << _TS_BITS) - 1
_NO_WSCALE = 15


def _mss_index(peer_mss: int) -> int:
    index = 0
    for i, value in enumerate(MSS_TABLE):
        if value <= peer_mss:
            index = i
    return index


class SynCookies:
    """Make and check SYN cookies for one endpoint.

    ``remote`` identifies the peer's UDP address (the endpoint passes ``(host, port)``);
    any value with a stable ``repr`` works. ``random`` supplies key bytes (``os.urandom``
    unless a test passes its own).
    """

    def __init__(self, random: Callable[[int], bytes] = os.urandom) -> None:
        self._random = random
        self._epoch: int | None = None
        self._keys: tuple[hmac.HMAC, hmac.HMAC | None] | None = None
        #: When a cookie was last made (``None``: never). ACKs are checked as cookies only
        #: within :data:`MAX_AGE` of it, so a listener that never overflowed gives a blind
        #: attacker nothing to guess at (Linux checks the same way).
        self.last_made: float | None = None

    def _current_keys(self, now: float) -> tuple[hmac.HMAC, hmac.HMAC | None]:
        epoch = int(now // KEY_LIFETIME)
        keys, last = self._keys, self._epoch
        if keys is None or last is None or epoch > last:
            # The previous key stays valid only if it was the key of the epoch just ended.
            previous = (
                keys[0] if keys is not None and last is not None and epoch == last + 1 else None
            )
            keys = self._keys = (hmac.HMAC(self._random(32), hashes.SHA256()), previous)
            self._epoch = epoch
        return keys

    def make(
        self,
        remote: object,
        local_port: int,
        remote_port: int,
        peer_isn: int,
        peer_mss: int,
        now: float,
    ) -> int:
        """The cookie (our ISN) answering a SYN with sequence number ``peer_isn``."""
        key = self._current_keys(now)[0]
        step = int(now // TICK) & 0x1F
        index = _mss_index(peer_mss)
        mac = _mac(key, remote, local_port, remote_port, peer_isn, step, index)
        self.last_made = now
        return (step << 27) | (index << _MAC_BITS) | mac

    def recently_made(self, now: float) -> bool:
        """True if a cookie made now minus :data:`MAX_AGE` or later may still come back."""
        return self.last_made is not None and now - self.last_made <= MAX_AGE

    def check(
        self,
        remote: object,
        local_port: int,
        remote_port: int,
        peer_isn: int,
        cookie: int,
        now: float,
    ) -> int | None:
        """The peer MSS a valid ``cookie`` carries, or None: a forged, altered or expired
        cookie, or one made under a key no longer accepted. Never raises."""
        cookie &= _MASK
        step = cookie >> 27
        age = (int(now // TICK) - step) & 0x1F
        if age > _MAX_AGE_TICKS:
            return None
        index = (cookie >> _MAC_BITS) & 0x7
        mac = cookie & _MAC_MASK
        for key in self._current_keys(now):
            if key is not None and mac == _mac(
                key, remote, local_port, remote_port, peer_isn & _MASK, step, index
            ):
                return MSS_TABLE[index]
        return None


def _mac(
    key: hmac.HMAC,
    remote: object,
    local_port: int,
    remote_port: int,
    peer_isn: int,
    step: int,
    index: int,
) -> int:
    h = key.copy()
    h.update(repr(remote).encode())
    h.update(_MAC_FIELDS.pack(local_port & 0xFFFF, remote_port & 0xFFFF, peer_isn, step, index))
    return int.from_bytes(h.finalize()[:3], "big")


def encode_ts_choices(tsval: int, wscale: int | None, sack: bool) -> int:
    """``tsval`` with its low bits replaced by the peer's window-scale shift (``None``: no
    window scaling) and SACK-permitted choice.

    The result is never above ``tsval`` (in sequence arithmetic): the connection built
    later keeps its TSval clock running from the true value, and a TSval must never go
    backwards (RFC 7323 §5.4).
    """
    shift = _NO_WSCALE if wscale is None else min(max(wscale, 0), 14)
    bits = (shift << 1) | (1 if sack else 0)
    tsval &= _MASK
    value = (tsval & ~_TS_MASK) | bits
    if seq_gt(value, tsval):
        value = (value - (_TS_MASK + 1)) & _MASK  # above the true clock: one step back
    return value


def decode_ts_choices(tsecr: int) -> tuple[int | None, bool]:
    """The ``(window-scale shift or None, SACK-permitted)`` that :func:`encode_ts_choices`
    put into a TSval now echoed as ``tsecr``. Every 32-bit value decodes; never raises."""
    shift = (tsecr >> 1) & 0xF
    return (None if shift == _NO_WSCALE else shift), bool(tsecr & 1)


def check_ts_echo(tsecr: int, iss: int, now: float) -> tuple[int | None, bool] | None:
    """The choices a final ACK's ``tsecr`` brings back for the cookie ``iss``, or None if
    it cannot be the TSval of that cookie's SYN-ACK: cookie SYN-ACKs use the TSval clock
    of the connection they stand for (milliseconds plus ``iss``), so the echo must be
    at most :data:`MAX_AGE` old (and never from the future). Never raises."""
    age_ms = (int(now * 1000) + iss - tsecr) & _MASK
    if age_ms > MAX_AGE * 1000 + _TS_MASK + 1:
        return None
    return decode_ts_choices(tsecr)
