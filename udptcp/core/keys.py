"""Static X25519 key pairs for secure mode: :class:`Identity`.

A server's identity is what its clients pin (``peer_key=identity.public_key``); a client's
identity lets a server learn who connected (``get_extra_info("peer_key")``). The public key
is 32 raw bytes, as X25519 (RFC 7748) defines it, so it can be printed in hex, put in a
configuration file or exchanged out of band.

The key file written by :meth:`Identity.save` is two lines of text: a comment with the public
key, and the 32-byte private key in hex. It is created with mode 0600 (owner read/write
only), as ssh creates private keys.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

__all__ = ["KEY_LEN", "Identity", "check_key"]

#: Length of an X25519 key, private or public, in bytes.
KEY_LEN = 32
_HEADER = "# udptcp X25519 identity; public key "


def check_key(name: str, value: object) -> bytes:
    """Return ``value`` as bytes if it is a 32-byte key, else raise ``ValueError`` naming
    ``name`` (``peer_key``, ``psk`` ...)."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be {KEY_LEN} bytes, got {type(value).__name__}")
    raw = bytes(value)
    if len(raw) != KEY_LEN:
        raise ValueError(f"{name} must be {KEY_LEN} bytes, got {len(raw)}")
    return raw


class Identity:
    """A static X25519 key pair.

    Build one with :meth:`generate`, :meth:`from_private_bytes` or :meth:`load`. The private
    key never appears in ``repr`` or ``str``.
    """

    __slots__ = ("_private", "_public")

    def __init__(self, private_key: X25519PrivateKey) -> None:
        if not isinstance(private_key, X25519PrivateKey):
            raise TypeError("Identity wraps an X25519PrivateKey; use Identity.generate()")
        self._private = private_key
        self._public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls) -> Identity:
        """A new random key pair."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> Identity:
        """The key pair of a 32-byte raw X25519 private key."""
        return cls(X25519PrivateKey.from_private_bytes(check_key("private key", data)))

    @property
    def public_key(self) -> bytes:
        """The public key: 32 raw bytes, what peers pin."""
        return self._public

    @property
    def private_key(self) -> X25519PrivateKey:
        """The ``cryptography`` private key object (for the handshake)."""
        return self._private

    def private_bytes(self) -> bytes:
        """The 32 raw bytes of the private key. Keep them secret."""
        return self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key pair to ``path`` with file mode 0600, replacing any file there."""
        text = f"{_HEADER}{self._public.hex()}\n{self.private_bytes().hex()}\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            # O_CREAT's mode applies to new files only (and the umask may narrow it);
            # an existing file is narrowed too, before the secret goes into it.
            os.fchmod(fd, 0o600)
            os.write(fd, text.encode("ascii"))
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        """Read a key pair written by :meth:`save`."""
        with open(path, encoding="ascii") as f:
            lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        if len(lines) != 1:
            raise ValueError(f"{os.fspath(path)!r} is not a udptcp identity file")
        try:
            raw = bytes.fromhex(lines[0])
        except ValueError:
            raise ValueError(f"{os.fspath(path)!r} does not hold a hex private key") from None
        return cls.from_private_bytes(raw)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return self._public == other._public

    def __hash__(self) -> int:
        return hash(self._public)

    def __repr__(self) -> str:
        return f"<udptcp.Identity public_key={self._public.hex()}>"
