"""The Noise Protocol Framework (revision 34), as much of it as secure mode uses.

Noise builds a key exchange out of a handshake *pattern* (which Diffie-Hellman operations the
two messages perform, and which static keys each side knows in advance) and three
primitives. Here they are fixed: X25519 (``25519``), ChaCha20-Poly1305 (``ChaChaPoly``) and
SHA-256, so every protocol name reads ``Noise_<pattern>_25519_ChaChaPoly_SHA256``. The DH and
AEAD come from ``cryptography``; SHA-256 and HMAC from the standard library (the same
OpenSSL underneath).

The three objects follow the specification's §5 one to one -- :class:`CipherState` (a key
and a nonce), :class:`SymmetricState` (chaining key and handshake hash) and
:class:`HandshakeState` (the pattern being run) -- so each method can be read against the
section of the same name. Only the patterns secure mode offers are tabled
(:data:`PATTERNS`); all of them finish in two messages, so the keys exist once a SYN and a
SYN-ACK have crossed. A handshake that fails (a tag that does not verify, a low-order
public key, a message of the wrong length) raises :class:`NoiseError` and is finished.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "DHLEN",
    "HASHLEN",
    "MAX_NONCE",
    "PATTERNS",
    "TAGLEN",
    "CipherState",
    "HandshakeState",
    "NoiseError",
    "SymmetricState",
    "nonce_bytes",
    "protocol_name",
    "public_bytes",
]

DHLEN = 32
HASHLEN = 32
TAGLEN = 16
#: 2**64 - 1: reserved by §5.1 for Rekey(); a CipherState never encrypts with it.
MAX_NONCE = 0xFFFFFFFFFFFFFFFF
_ZEROS = bytes(32)
# §12.3: ChaChaPoly's 96-bit nonce is 32 zero bits, then the 64-bit counter little-endian.
_NONCE = struct.Struct("<4xQ")

#: Handshake patterns (§7.4, §7.5, §9.4): the responder's pre-message (its static key, when
#: the initiator knows it in advance) and the token list of each message. Every one of
#: them completes in two messages: initiator -> responder, responder -> initiator.
PATTERNS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    "NN": ((), (("e",), ("e", "ee"))),
    "NK": (("s",), (("e", "es"), ("e", "ee"))),
    "IK": (("s",), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
    "NNpsk0": ((), (("psk", "e"), ("e", "ee"))),
    "NKpsk0": (("s",), (("psk", "e", "es"), ("e", "ee"))),
    "IKpsk2": (("s",), (("e", "es", "s", "ss"), ("e", "ee", "se", "psk"))),
}


class NoiseError(ValueError):
    """A handshake message that cannot be processed: the handshake has failed."""


def protocol_name(pattern: str) -> bytes:
    """The full protocol name of ``pattern`` with this module's primitives."""
    return f"Noise_{pattern}_25519_ChaChaPoly_SHA256".encode("ascii")


def nonce_bytes(n: int) -> bytes:
    """The 12-byte ChaCha20-Poly1305 nonce for counter ``n`` (§12.3)."""
    return _NONCE.pack(n)


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of ``key``'s public key."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def hkdf(chaining_key: bytes, ikm: bytes, outputs: int) -> tuple[bytes, ...]:
    """HKDF as §4.3 defines it (RFC 5869 with an empty info and HMAC-SHA256)."""
    temp_key = _hmac(chaining_key, ikm)
    out1 = _hmac(temp_key, b"\x01")
    out2 = _hmac(temp_key, out1 + b"\x02")
    if outputs == 2:
        return out1, out2
    return out1, out2, _hmac(temp_key, out2 + b"\x03")


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:
        # A low-order point gives an all-zero secret, which cryptography refuses.
        raise NoiseError(f"invalid X25519 public key: {exc}") from None


class CipherState:
    """§5.1: a key (or none) and the 64-bit nonce of the next message."""

    __slots__ = ("k", "n", "_aead")

    def __init__(self, key: bytes | None = None) -> None:
        self.k: bytes | None = None
        self.n = 0
        self._aead: ChaCha20Poly1305 | None = None
        if key is not None:
            self.initialize_key(key)

    def initialize_key(self, key: bytes) -> None:
        """Use ``key`` from nonce 0 on."""
        self.k = key
        self._aead = ChaCha20Poly1305(key)
        self.n = 0

    def has_key(self) -> bool:
        """True once a key is set; before that, encryption is the identity (§5.1)."""
        return self.k is not None

    def set_nonce(self, nonce: int) -> None:
        """Move to nonce ``nonce`` (out-of-order transport messages, §5.1)."""
        self.n = nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """Encrypt at the current nonce and advance it."""
        if self._aead is None:
            return plaintext
        if self.n >= MAX_NONCE:
            raise NoiseError("nonce exhausted")
        out = self._aead.encrypt(_NONCE.pack(self.n), plaintext, ad)
        self.n += 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """Decrypt at the current nonce; advance it only on success."""
        if self._aead is None:
            return ciphertext
        if self.n >= MAX_NONCE:
            raise NoiseError("nonce exhausted")
        try:
            out = self._aead.decrypt(_NONCE.pack(self.n), ciphertext, ad)
        except InvalidTag:
            raise NoiseError("authentication tag does not verify") from None
        self.n += 1
        return out

    def rekey(self) -> None:
        """§4.2 REKEY: the next key is the first 32 bytes of encrypting 32 zeros at the
        reserved nonce 2**64 - 1. The nonce is left where it was (§5.1)."""
        if self._aead is None:
            raise NoiseError("rekey without a key")
        n = self.n
        self.initialize_key(rekeyed(self._aead))
        self.n = n


def rekeyed(aead: ChaCha20Poly1305) -> bytes:
    """The key that follows ``aead``'s in a §4.2 REKEY."""
    return aead.encrypt(_NONCE.pack(MAX_NONCE), _ZEROS, b"")[:32]


class SymmetricState:
    """§5.2: the chaining key ``ck``, the handshake hash ``h`` and a CipherState."""

    __slots__ = ("ck", "h", "cipher")

    def __init__(self, name: bytes) -> None:
        # InitializeSymmetric: a name of at most HASHLEN bytes is padded, a longer one hashed.
        self.h = name.ljust(HASHLEN, b"\x00") if len(name) <= HASHLEN else _hash(name)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, ikm: bytes) -> None:
        """MixKey."""
        self.ck, temp_k = hkdf(self.ck, ikm, 2)
        self.cipher.initialize_key(temp_k)

    def mix_hash(self, data: bytes) -> None:
        """MixHash."""
        self.h = _hash(self.h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        """MixKeyAndHash (the ``psk`` token)."""
        self.ck, temp_h, temp_k = hkdf(self.ck, ikm, 3)
        self.mix_hash(temp_h)
        self.cipher.initialize_key(temp_k)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """EncryptAndHash: encrypt with ``h`` as associated data, then hash the result."""
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """DecryptAndHash."""
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """Split: the initiator-to-responder and responder-to-initiator CipherStates."""
        k1, k2 = hkdf(self.ck, b"", 2)
        return CipherState(k1), CipherState(k2)


class HandshakeState:
    """§5.3: one run of a two-message pattern.

    ``s`` is the local static key pair, ``rs`` the remote static public key known in
    advance (the responder's, for the patterns with a ``<- s`` pre-message), ``psk`` the
    32-byte pre-shared key of the ``psk`` patterns. ``e`` fixes the ephemeral key pair
    (for test vectors only; a fresh one is generated otherwise).

    Call :meth:`write_message` and :meth:`read_message` in turn; after the second message
    :attr:`complete` is True and :attr:`send` / :attr:`recv` hold the transport
    CipherStates of this side, :attr:`handshake_hash` the final ``h`` (a channel binding)
    and :attr:`rs` the peer's static public key, if the pattern conveyed or required one.
    """

    def __init__(
        self,
        pattern: str,
        initiator: bool,
        *,
        prologue: bytes = b"",
        s: X25519PrivateKey | None = None,
        rs: bytes | None = None,
        psk: bytes | None = None,
        e: X25519PrivateKey | None = None,
    ) -> None:
        if pattern not in PATTERNS:
            raise ValueError(f"unsupported Noise pattern {pattern!r}")
        premessage, messages = PATTERNS[pattern]
        self.pattern = pattern
        self.initiator = initiator
        self._messages = messages
        self._index = 0  # next message
        self._psk_mode = "psk" in pattern
        if self._psk_mode and (psk is None or len(psk) != 32):
            raise ValueError(f"{pattern} needs a 32-byte psk")
        self._psk = psk
        self.s = s
        self.e = e
        self.rs = rs
        self.re: bytes | None = None
        self.symmetric = SymmetricState(protocol_name(pattern))
        self.symmetric.mix_hash(prologue)
        if premessage == ("s",):
            # "<- s": the responder's static public key, known to both in advance (§7.1).
            if initiator:
                if rs is None or len(rs) != DHLEN:
                    raise ValueError(f"{pattern} needs the responder's 32-byte static key")
                self.symmetric.mix_hash(rs)
            else:
                if s is None:
                    raise ValueError(f"{pattern} needs the responder's static key pair")
                self.symmetric.mix_hash(public_bytes(s))
        needs_s = any("s" in msg for i, msg in enumerate(messages) if (i % 2 == 0) == initiator)
        if needs_s and s is None:
            raise ValueError(f"{pattern} needs this side's static key pair")
        self.send: CipherState | None = None
        self.recv: CipherState | None = None
        self.handshake_hash: bytes | None = None

    @property
    def complete(self) -> bool:
        """True once both messages have been processed."""
        return self.handshake_hash is not None

    def _my_turn(self) -> bool:
        return (self._index % 2 == 0) == self.initiator

    def write_message(self, payload: bytes = b"") -> bytes:
        """WriteMessage: the next message of the pattern, carrying ``payload``."""
        if self.complete or not self._my_turn():
            raise NoiseError("not this side's turn to write")
        sym = self.symmetric
        out = bytearray()
        for token in self._messages[self._index]:
            if token == "e":
                if self.e is None:
                    self.e = X25519PrivateKey.generate()
                pub = public_bytes(self.e)
                out += pub
                sym.mix_hash(pub)
                if self._psk_mode:
                    sym.mix_key(pub)  # §9.2: in a psk handshake "e" also mixes the key
            elif token == "s":
                assert self.s is not None
                out += sym.encrypt_and_hash(public_bytes(self.s))
            elif token == "psk":
                assert self._psk is not None
                sym.mix_key_and_hash(self._psk)
            else:
                sym.mix_key(self._dh(token))
        out += sym.encrypt_and_hash(payload)
        self._advance()
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """ReadMessage: process the peer's next message and return its payload."""
        if self.complete or self._my_turn():
            raise NoiseError("not the peer's turn to write")
        message = bytes(message)
        sym = self.symmetric
        pos = 0
        for token in self._messages[self._index]:
            if token == "e":
                if len(message) < pos + DHLEN:
                    raise NoiseError("message too short for an ephemeral key")
                self.re = message[pos : pos + DHLEN]
                pos += DHLEN
                sym.mix_hash(self.re)
                if self._psk_mode:
                    sym.mix_key(self.re)
            elif token == "s":
                size = DHLEN + (TAGLEN if sym.cipher.has_key() else 0)
                if len(message) < pos + size:
                    raise NoiseError("message too short for a static key")
                self.rs = sym.decrypt_and_hash(message[pos : pos + size])
                pos += size
            elif token == "psk":
                assert self._psk is not None
                sym.mix_key_and_hash(self._psk)
            else:
                sym.mix_key(self._dh(token))
        if sym.cipher.has_key() and len(message) - pos < TAGLEN:
            raise NoiseError("message too short for its tag")
        payload = sym.decrypt_and_hash(message[pos:])
        self._advance()
        return payload

    def _dh(self, token: str) -> bytes:
        """The DH of a two-letter token: first letter ours as initiator (§7.3)."""
        first, second = token[0], token[1]
        if not self.initiator:
            first, second = second, first
        local = self.e if first == "e" else self.s
        remote = self.re if second == "e" else self.rs
        if local is None or remote is None:
            raise NoiseError(f"token {token!r} without the keys it needs")
        return _dh(local, remote)

    def _advance(self) -> None:
        self._index += 1
        if self._index == len(self._messages):
            c1, c2 = self.symmetric.split()
            self.send, self.recv = (c1, c2) if self.initiator else (c2, c1)
            self.handshake_hash = self.symmetric.h
