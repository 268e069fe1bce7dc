"""Initial sequence numbers per RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, key).

M is a clock that ticks every 4 microseconds (RFC 9293 §3.4.1) and F a keyed hash of the
connection identity, so ISNs of different connections are unpredictable to an off-path attacker
while successive incarnations of one 4-tuple still move forward.

F is BLAKE2s in its keyed (MAC) mode, a pseudorandom function as RFC 6528 §3 asks. The keyed
state is made once and copied per ISN: every connection, client or server side, takes one,
and the copy costs about half of hashing the key again.
"""

from __future__ import annotations

import hashlib
import os

_TICKS_PER_SECOND = 250_000  # one tick per 4 µs


class IsnGenerator:
    """Generate RFC 6528 initial sequence numbers from a secret key.

    ``local`` and ``remote`` identify the connection; any hashable value with a stable
    ``repr`` works (the simulator passes ``(host, port)`` tuples; the endpoint gives its
    six values to :meth:`isn_for`). ``key`` is at most 32 bytes (BLAKE2s's limit); by
    default 16 random ones.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(16)
        self._keyed = hashlib.blake2s(key=self._key, digest_size=4)

    def isn(self, local: object, remote: object, now: float) -> int:
        """M + F(local, remote, key) modulo 2**32, with M the 4 µs clock at ``now``."""
        return self._m_plus_f(repr((local, remote)), now)

    def isn_for(
        self,
        local_host: object,
        local_port: int,
        local_vport: int,
        remote_host: object,
        remote_port: int,
        remote_vport: int,
        now: float,
    ) -> int:
        """:meth:`isn` for an endpoint's connection, its identity given field by field: the
        same function of the same six values, fed to F as one space-separated string (a
        host is an IP literal and a port a number, so no two identities read alike), which
        costs half what the ``repr`` of two tuples does. Every connection takes one."""
        return self._m_plus_f(
            f"{local_host} {local_port} {local_vport} {remote_host} {remote_port} {remote_vport}",
            now,
        )

    def _m_plus_f(self, identity: str, now: float) -> int:
        digest = self._keyed.copy()
        digest.update(identity.encode())
        f = int.from_bytes(digest.digest(), "big")
        m = int(now * _TICKS_PER_SECOND)
        return (m + f) & 0xFFFFFFFF
