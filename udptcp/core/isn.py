"""Initial sequence numbers per RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, key).

M is a clock that ticks every 4 microseconds (RFC 9293 §3.4.1) and F a keyed hash of the
connection identity, so ISNs of different connections are unpredictable to an off-path attacker
while successive incarnations of one 4-tuple still move forward.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes

_TICKS_PER_SECOND = 250_000  # one tick per 4 µs


class IsnGenerator:
    """Generate RFC 6528 initial sequence numbers from a secret key.

    ``local`` and ``remote`` identify the connection; any hashable value with a stable
    ``repr`` works (the endpoint passes ``(host, udp_port, vport)`` tuples).
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(16)

    def isn(self, local: object, remote: object, now: float) -> int:
        digest = hashes.Hash(hashes.SHA256())
        digest.update(self._key)
        digest.update(repr((local, remote)).encode())
        f = int.from_bytes(digest.finalize()[:4], "big")
        m = int(now * _TICKS_PER_SECOND)
        return (m + f) & 0xFFFFFFFF
