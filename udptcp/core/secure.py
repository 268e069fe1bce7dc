"""Secure mode: a Noise handshake in the SYN and SYN-ACK, then sealed datagrams.

Plain udptcp gives TCP's guarantees and no more: anyone on the path can read, inject, reset
or hijack. In secure mode every datagram after the handshake is encrypted and authenticated,
replays are dropped, and a connection may follow its peer to a new UDP address once that
address has proved it holds the keys. The TCP state machine underneath is unchanged: this
module sits between it and the wire, per connection, with no sockets and no clock of its
own (``now`` is passed in, addresses are opaque values).

Choices, in the order a reader meets them on the wire:

**The offer** rides in the SYN as an RFC 6994 experimental TCP option (kind 253, ExID
0x5554), answered in the SYN-ACK (accepted or declined) or by a REJECT RST. The two Noise
messages are the SYN's and SYN-ACK's payloads, stripped before the TCP state machine sees
them: they are not sequence space, and a peer that does not know the option neither
acknowledges nor delivers them. :mod:`udptcp.core.secure_wire` has the details, the
option's types and the sealed datagram's layout.

**Patterns** (Noise rev. 34, ``25519_ChaChaPoly_SHA256``): five, all two messages, so the
keys exist when SYN and SYN-ACK have crossed and the third segment is already sealed; which
one a side runs follows from its keys (:mod:`udptcp.core.secure_patterns`).

The prologue binds the handshake to the SYN's header (ports, ISS, flags, MSS, window scale,
SACK-permitted, whether timestamps were offered, and the offer itself); message 2's payload
is the same summary of the SYN-ACK, which the client compares with the SYN-ACK it received.
So a middlebox that strips options or changes the ISN makes the handshake fail instead of
silently weakening the connection. Timestamp values and the window field are left out:
a retransmitted SYN changes the first, and neither can do more than a dropped packet.

**Sealed datagrams**: after the handshake, every datagram keeps its TCP header readable and
authenticated (the AEAD's associated data, checksum field zero), adds a 12-byte option with
a 56-bit datagram counter, and carries the options and payload encrypted with
ChaCha20-Poly1305, tag last (:mod:`udptcp.core.secure_wire`). The nonce is the counter, one
per datagram and never the TCP sequence number: a retransmission re-sends sequence space in
a new datagram with a new counter. Each direction has its own key (Noise Split()). A sealed
datagram adds :data:`~udptcp.core.secure_wire.SEAL_OVERHEAD` (28) bytes, which the MSS
gives up.

**Replay window**: the highest counter authenticated so far and a 2048-bit map below it
(RFC 4303 §3.4.3's window, as RFC 6479 sizes it): a counter seen before, or older than the
window, is dropped after a cheap check, and only an authenticated datagram moves the
window, so forgeries cannot push it. **Rekeying**: the key of counter ``n`` is the split
key passed ``n >> 20`` times through Noise's Rekey(), so both sides change keys every
2**20 datagrams (about 1.4 GB) without a message; a receiver holds the previous, current
and next key. The 56-bit counter would last centuries at any rate the stack reaches; a
connection refuses to send past it rather than wrap.

**Unauthenticated input changes nothing**: a datagram that fails the tag, repeats a counter,
or arrives plain (a forged RST, SYN or ACK) is dropped and counted (``secure_*`` counters).
The few plain segments a secure connection still takes are handshake ones: a retransmitted
SYN or SYN-ACK byte-identical to the one already authenticated, the server's RST answering
the client's SYN (which refuses the connection, as over TCP), and the client's RST while
the server has not yet heard a sealed datagram from it (a client that rejected the server).

**Migration**: an authenticated datagram from a new UDP address is delivered (its content
is genuine) but does not move the connection; it draws a sealed PATH_CHALLENGE (8 random
bytes) to that address, at most one every :data:`PATH_CHALLENGE_INTERVAL` seconds and only
for a datagram that advanced the replay window (a late straggler from an old address does
not pull the connection back). A sealed PATH_RESPONSE echoing those bytes *from that
address* moves the connection there (:attr:`SecureSession.peer`). A replayed or forged
datagram never gets this far, so an attacker can at most make us send one small
challenge to an address it names, and never steal the connection. Plain connections never
migrate.

**Errors** (:class:`SecureHandshakeError`, a ``ConnectionError``) say which side refused
and why, within one round trip: a wrong pinned key or PSK (the server cannot decrypt
message 1 and answers a REJECT RST), a plain peer (a SYN-ACK without the option), a udptcp
server without secure mode (DECLINE), a secure-only server and a plain client (REJECT, seen
by a plain client as ``ConnectionRefusedError``), a forged or altered SYN-ACK. None of them
is retried.
"""

from __future__ import annotations

import collections
import os
import struct
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from udptcp.core.config import Config
from udptcp.core.connection import rst_for
from udptcp.core.noise import HandshakeState, NoiseError, rekeyed
from udptcp.core.secure_patterns import (
    SecureInfo,
    client_pattern,
    client_secure,
    server_refusal,
    server_secure,
)
from udptcp.core.secure_wire import (
    ACCEPT,
    AUTH_FAILED,
    CIPHER,
    COUNTER_LIMIT,
    DECLINE,
    EXID,
    KIND_PATH_CHALLENGE,
    KIND_PATH_RESPONSE,
    KIND_SEGMENT,
    MALFORMED,
    OFFER,
    OPTION_KIND,
    PATTERN_IDS,
    PATTERNS,
    REJECT,
    REJECT_REASONS,
    SEAL_HEADER_LEN,
    SEALED_HEADER,
    SEALED_OFFSET_BYTE,
    UNSUPPORTED,
    find_offer,
    handshake_fields,
    option_body,
    prologue,
    stripped,
    with_option,
)
from udptcp.core.segment import (
    ACK,
    MAX_OPTIONS_LEN,
    RST,
    SYN,
    MalformedSegment,
    Options,
    Segment,
    decode_options,
    encode,
    encode_options,
)

__all__ = [
    "PATH_CHALLENGE_INTERVAL",
    "REKEY_SHIFT",
    "REPLAY_WINDOW",
    "HandshakeRefused",
    "SecureHandshakeError",
    "SecureInfo",
    "SecureSession",
    "client_pattern",
    "client_secure",
    "server_secure",
]

#: Width of the replay window, in datagrams.
REPLAY_WINDOW = 2048
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1
#: log2 of the datagrams sent under one key before both sides move to the next.
REKEY_SHIFT = 20
_COUNTER_MASK = COUNTER_LIMIT - 1
#: Least time between two path challenges of one connection, in seconds.
PATH_CHALLENGE_INTERVAL = 0.25
_PATH_TOKEN_LEN = 8
_NONCE = struct.Struct("<4xQ")
_TS_OPTION = struct.Struct("!HHII")  # NOP NOP, kind 8 length 10, TSval, TSecr
_TS_PREFIX = b"\x01\x01\x08\x0a"
_TIMESTAMPS = struct.Struct("!II")


class SecureHandshakeError(ConnectionError):
    """The secure handshake failed; the message says which side refused and why."""


class HandshakeRefused(Exception):
    """A server refuses an offering SYN; ``reason`` is a :data:`REJECT_REASONS` key."""

    def __init__(self, reason: int) -> None:
        super().__init__(REJECT_REASONS.get(reason, f"reason {reason}"))
        self.reason = reason


class SecureSession:
    """Secure mode for one connection: its handshake, keys, counters and path state.

    Make one with :meth:`connect` (client) or :meth:`accept` (server, from the offering
    SYN). Outgoing segments go through :meth:`seal`; incoming datagrams through
    :meth:`open_sealed` (sealed ones) or :meth:`open_plain` (decoded plain segments). Both
    return the segment for the TCP state machine, or None when the datagram was consumed
    (a path message) or dropped (counted in :attr:`stats`). After each call the caller
    sends what :attr:`outbox` holds (``(datagram, address)`` pairs), ends the connection
    with :attr:`failure` if set, and follows :attr:`peer` if it changed.
    """

    #: How error messages name the other side.
    other_side = "the server"

    def __init__(
        self,
        config: Config,
        pattern: str,
        initiator: bool,
        *,
        local_port: int,
        remote_port: int,
        peer: Any,
        stats: collections.Counter[str] | None = None,
        rekey_shift: int = REKEY_SHIFT,
    ) -> None:
        self.config = config
        self.pattern = pattern
        self.initiator = initiator
        self.local_port = local_port
        self.remote_port = remote_port
        #: The peer's UDP address (opaque here); changes when a path check succeeds.
        self.peer = peer
        #: Counters of dropped input and path events (``secure_*``).
        self.stats: collections.Counter[str] = stats if stats is not None else collections.Counter()
        self.info = SecureInfo(pattern, CIPHER)
        #: The peer's static public key, where the pattern conveys one.
        self.peer_key: bytes | None = None
        #: The Noise handshake hash: the same on both sides, a channel binding.
        self.handshake_hash: bytes | None = None
        #: Set when the handshake failed: the caller ends the connection with it.
        self.failure: SecureHandshakeError | None = None
        #: Set on a client whose server answered plain and ``allow_plain`` allows that:
        #: the caller drops the session and the connection goes on in plain mode.
        self.fell_back = False
        #: Datagrams to send: ``(bytes, address)``.
        self.outbox: list[tuple[bytes, Any]] = []
        self._hs: HandshakeState | None = None
        self._msg1: bytes | None = None
        self._msg2: bytes | None = None
        self._iss: int | None = None  # the client's ISS, once its SYN went out
        self._shift = rekey_shift
        self._tx: ChaCha20Poly1305 | None = None
        self._tx_n = 0
        self._tx_epoch = 0
        self._rx_keys: dict[int, ChaCha20Poly1305] = {}
        self._rx_epoch = 0
        self._rx_max = -1  # highest counter authenticated
        self._rx_bits = 0  # bit d: counter _rx_max - d authenticated
        self._challenge: tuple[bytes, Any] | None = None
        self._challenge_time = float("-inf")

    # ------------------------------------------------------------------ opening

    @classmethod
    def connect(
        cls,
        config: Config,
        *,
        local_port: int,
        remote_port: int,
        peer: Any,
        stats: collections.Counter[str] | None = None,
        rekey_shift: int = REKEY_SHIFT,
    ) -> SecureSession:
        """The client side; the handshake starts when :meth:`seal` sees the SYN."""
        pattern = client_pattern(config)
        return cls(
            config,
            pattern,
            True,
            local_port=local_port,
            remote_port=remote_port,
            peer=peer,
            stats=stats,
            rekey_shift=rekey_shift,
        )

    @classmethod
    def accept(
        cls,
        config: Config,
        syn: Segment,
        *,
        peer: Any,
        stats: collections.Counter[str] | None = None,
        rekey_shift: int = REKEY_SHIFT,
    ) -> SecureSession:
        """The server side, from a SYN carrying an offer and Noise message 1.

        Raises :class:`HandshakeRefused` when the server cannot or will not run it; the
        caller answers with :func:`reject_segment`.
        """
        body = find_offer(syn)
        if body is None or len(body) != 2 or body[0] != OFFER:
            raise HandshakeRefused(MALFORMED)
        pattern = PATTERNS.get(body[1])
        if pattern is None:
            raise HandshakeRefused(UNSUPPORTED)
        refusal = server_refusal(config, pattern)
        if refusal is not None:
            raise HandshakeRefused(refusal)
        session = cls(
            config,
            pattern,
            False,
            local_port=syn.dst_port,
            remote_port=syn.src_port,
            peer=peer,
            stats=stats,
            rekey_shift=rekey_shift,
        )
        session._read_offer(syn, body)
        return session

    def _read_offer(self, syn: Segment, body: bytes) -> None:
        """Take Noise message 1 from ``syn``, whose offer ``body`` names our pattern.
        Raises :class:`HandshakeRefused` (AUTH_FAILED) when it does not authenticate."""
        identity = self.config.identity
        hs = HandshakeState(
            self.pattern,
            False,
            prologue=prologue(syn, body),
            s=identity.private_key if identity is not None else None,
            psk=self.config.psk,
        )
        try:
            hs.read_message(syn.payload)
        except NoiseError:
            raise HandshakeRefused(AUTH_FAILED) from None
        self._hs = hs
        self._msg1 = syn.payload
        # IK patterns tell the responder who the initiator is; the others leave it anonymous.
        self.peer_key = hs.rs if self.pattern.startswith("I") else None

    @property
    def established(self) -> bool:
        """True once this side has its transport keys."""
        return self._tx is not None

    def _keys_from(self, hs: HandshakeState) -> None:
        assert hs.send is not None and hs.recv is not None and hs.send.k and hs.recv.k
        self._tx = ChaCha20Poly1305(hs.send.k)
        self._rx_keys = {0: ChaCha20Poly1305(hs.recv.k)}
        self.handshake_hash = hs.handshake_hash
        self._hs = None  # the ephemeral keys go with it (forward secrecy)

    # ------------------------------------------------------------------ sending

    def seal(self, seg: Segment) -> bytes:
        """The datagram for an outgoing segment: a handshake segment carrying its Noise
        message, or a sealed one once the keys exist."""
        flags = seg.flags
        if flags & SYN:
            return encode(self._handshake_segment(seg))
        if self._tx is None:
            return encode(seg)  # before the keys: an RST answering a bad SYN-ACK
        opts = seg.options
        if opts is None:
            inner = b""
        elif (
            opts.timestamps is not None
            and opts.mss is None
            and opts.wscale is None
            and not opts.sack_permitted
            and not opts.sack_blocks
            and not opts.unknown
        ):
            tsval, tsecr = opts.timestamps
            inner = _TS_OPTION.pack(0x0101, 0x080A, tsval, tsecr)
        else:
            inner = encode_options(opts)
        # _seal(), inlined: this runs once per datagram sent.
        n = self._tx_n
        if n >> self._shift != self._tx_epoch:
            self._next_tx_key(n)
        self._tx_n = n + 1
        header = SEALED_HEADER.pack(
            seg.src_port,
            seg.dst_port,
            seg.seq,
            seg.ack,
            SEALED_OFFSET_BYTE,
            flags,
            seg.window,
            0,
            0,
            OPTION_KIND,
            12,
            EXID,
            (KIND_SEGMENT << 4 | len(inner) >> 2) << 56 | n,
        )
        aead = self._tx
        assert aead is not None
        return header + aead.encrypt(
            _NONCE.pack(n), inner + seg.payload if inner else seg.payload, header
        )

    def _seal(
        self,
        control: int,
        src_port: int,
        dst_port: int,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        plaintext: bytes,
    ) -> bytes:
        n = self._tx_n
        if n >> self._shift != self._tx_epoch:
            self._next_tx_key(n)
        self._tx_n = n + 1
        header = SEALED_HEADER.pack(
            src_port,
            dst_port,
            seq,
            ack,
            SEALED_OFFSET_BYTE,
            flags,
            window,
            0,
            0,
            OPTION_KIND,
            12,
            EXID,
            control << 56 | n,
        )
        assert self._tx is not None
        return header + self._tx.encrypt(_NONCE.pack(n), plaintext, header)

    def _next_tx_key(self, n: int) -> None:
        """Counter ``n`` starts a new epoch: move the sending key on (Noise Rekey())."""
        if n >= COUNTER_LIMIT:
            raise OverflowError("secure connection sent 2**56 datagrams; it must end")
        assert self._tx is not None
        self._tx = ChaCha20Poly1305(rekeyed(self._tx))
        self._tx_epoch += 1

    def _handshake_segment(self, seg: Segment) -> Segment:
        if self.initiator:
            if self._msg1 is None:
                body = bytes((OFFER, PATTERN_IDS[self.pattern]))
                # The offer is part of the SYN's summary: prologue = what the server sees.
                offered = with_option(seg, body, b"")
                cfg = self.config
                identity = cfg.identity
                self._hs = HandshakeState(
                    self.pattern,
                    True,
                    prologue=prologue(offered, body),
                    s=identity.private_key if identity is not None else None,
                    rs=cfg.peer_key,
                    psk=cfg.psk,
                )
                self._msg1 = self._hs.write_message(b"")
                self._iss = seg.seq
            return with_option(seg, bytes((OFFER, PATTERN_IDS[self.pattern])), self._msg1)
        if self._msg2 is None:
            hs = self._hs
            assert hs is not None
            self._msg2 = hs.write_message(handshake_fields(stripped(seg)))
            self._keys_from(hs)
        return with_option(seg, bytes((ACCEPT, PATTERN_IDS[self.pattern])), self._msg2)

    # ------------------------------------------------------------------ receiving

    def open_sealed(self, data: bytes, addr: Any, now: float) -> Segment | None:
        """Authenticate and decrypt a sealed datagram (``is_sealed(data)`` holds).

        Returns the segment for the TCP state machine, or None: a path message (handled
        here) or a datagram dropped and counted.
        """
        (
            src_port,
            dst_port,
            seq,
            ack,
            _offset,
            flags,
            window,
            _checksum,
            _urgent,
            _kind,
            _length,
            _exid,
            word,
        ) = SEALED_HEADER.unpack_from(data)
        n = word & _COUNTER_MASK
        top = self._rx_max
        if n <= top:
            d = top - n
            if d >= REPLAY_WINDOW:
                self.stats["secure_too_old"] += 1
                return None
            if (self._rx_bits >> d) & 1:
                self.stats["secure_replayed"] += 1
                return None
        epoch = n >> self._shift
        aead = self._rx_keys.get(epoch)
        if aead is None:
            aead = self._rx_key(epoch)
            if aead is None:
                self.stats["secure_auth_failed"] += 1
                return None
        try:
            plaintext = aead.decrypt(_NONCE.pack(n), data[SEAL_HEADER_LEN:], data[:SEAL_HEADER_LEN])
        except InvalidTag:
            self.stats["secure_auth_failed"] += 1
            return None
        # Authentic: only now may the window and the epoch move.
        if n > top:
            shift = n - top
            self._rx_bits = ((self._rx_bits << shift) | 1) & _WINDOW_MASK
            self._rx_max = n
        else:
            self._rx_bits |= 1 << (top - n)
        if epoch > self._rx_epoch:
            self._rx_epoch = epoch
            for old in [e for e in self._rx_keys if e < epoch - 1]:
                del self._rx_keys[old]
        control = word >> 56
        kind = control >> 4
        if kind == KIND_SEGMENT:
            olen = (control & 0xF) << 2
            if olen > MAX_OPTIONS_LEN or olen > len(plaintext):
                # Even an authenticated peer gets no more option space than a header has.
                self.stats["secure_malformed"] += 1
                return None
            if olen == 0:
                options = None
            elif olen == 12 and plaintext[:4] == _TS_PREFIX:
                options = Options(timestamps=_TIMESTAMPS.unpack_from(plaintext, 4))
            else:
                try:
                    options = decode_options(plaintext, 0, olen)
                except MalformedSegment:
                    self.stats["secure_malformed"] += 1
                    return None
            if addr != self.peer and n > top:
                self._probe_path(addr, now)
            return Segment(
                src_port,
                dst_port,
                seq,
                ack,
                flags,
                window,
                options,
                plaintext[olen:] if olen else plaintext,
            )
        if kind == KIND_PATH_CHALLENGE and len(plaintext) == _PATH_TOKEN_LEN:
            # Answer at the address it came from (QUIC's PATH_RESPONSE, RFC 9000 §8.2.2).
            self.stats["secure_path_responses"] += 1
            self.outbox.append((self._path_message(KIND_PATH_RESPONSE, plaintext), addr))
        elif kind == KIND_PATH_RESPONSE and len(plaintext) == _PATH_TOKEN_LEN:
            challenge = self._challenge
            if challenge is not None and challenge == (plaintext, addr):
                self._challenge = None
                self.peer = addr
                self.stats["secure_migrations"] += 1
        else:
            self.stats["secure_malformed"] += 1
        return None

    def authentic(self, data: bytes) -> bool:
        """Would :meth:`open_sealed` accept ``data``? Changes nothing (used to find which
        connection a sealed datagram from an unknown address belongs to)."""
        word = SEALED_HEADER.unpack_from(data)[-1]
        n = word & _COUNTER_MASK
        if n <= self._rx_max:
            d = self._rx_max - n
            if d >= REPLAY_WINDOW or (self._rx_bits >> d) & 1:
                return False
        epoch = n >> self._shift
        aead = self._rx_keys.get(epoch)
        if aead is None:
            current = self._rx_keys.get(self._rx_epoch)
            if epoch != self._rx_epoch + 1 or current is None:
                return False
            aead = ChaCha20Poly1305(rekeyed(current))
        try:
            aead.decrypt(_NONCE.pack(n), data[SEAL_HEADER_LEN:], data[:SEAL_HEADER_LEN])
        except InvalidTag:
            return False
        return True

    def _rx_key(self, epoch: int) -> ChaCha20Poly1305 | None:
        """The key of the epoch after the newest one authenticated (derived once); None
        for any epoch further ahead or already forgotten."""
        if epoch != self._rx_epoch + 1:
            return None
        current = self._rx_keys.get(self._rx_epoch)
        if current is None:
            return None
        aead = ChaCha20Poly1305(rekeyed(current))
        self._rx_keys[epoch] = aead
        return aead

    def _probe_path(self, addr: Any, now: float) -> None:
        if now < self._challenge_time + PATH_CHALLENGE_INTERVAL:
            return
        token = os.urandom(_PATH_TOKEN_LEN)
        self._challenge = (token, addr)
        self._challenge_time = now
        self.stats["secure_path_challenges"] += 1
        self.outbox.append((self._path_message(KIND_PATH_CHALLENGE, token), addr))

    def _path_message(self, kind: int, token: bytes) -> bytes:
        return self._seal(kind << 4, self.local_port, self.remote_port, 0, 0, 0, 0, token)

    def open_plain(self, seg: Segment, addr: Any, now: float) -> Segment | None:
        """A plain (unsealed, checksum-verified) segment for this connection: the
        handshake segments, or something unauthenticated that is dropped and counted."""
        if self.failure is not None:
            return None
        flags = seg.flags
        if self.initiator:
            if self._tx is None and self._msg1 is not None:
                return self._client_handshake(seg, addr)
            if (
                flags & (SYN | ACK | RST) == SYN | ACK
                and self._rx_max < 0
                and self._msg2 is not None
                and seg.payload == self._msg2
            ):
                # The server's SYN-ACK again, and nothing sealed from it yet: it did not
                # hear our ACK. Let TCP answer it.
                return stripped(seg)
        elif flags & (SYN | ACK | RST) == SYN:
            if self._rx_max < 0 and seg.payload == self._msg1 and find_offer(seg) is not None:
                # The client's SYN again, and nothing sealed from it yet: our SYN-ACK was
                # lost. (Later, the same bytes can only be a replay.)
                return stripped(seg)
        elif flags & RST and self._rx_max < 0:
            # The client gave up on us before sending anything sealed.
            return seg
        if flags & RST:
            self.stats["secure_unsealed_rst"] += 1
        elif flags & SYN:
            self.stats["secure_unsealed_syn"] += 1
        else:
            self.stats["secure_unsealed"] += 1
        return None

    def _client_handshake(self, seg: Segment, addr: Any) -> Segment | None:
        """SYN-SENT: the answer to our offer."""
        flags = seg.flags
        assert self._iss is not None
        acks_syn = bool(flags & ACK) and seg.ack == (self._iss + 1) & 0xFFFFFFFF
        body = option_body(seg.options)
        if flags & RST:
            if acks_syn and body is not None and len(body) == 2 and body[0] == REJECT:
                reason = REJECT_REASONS.get(body[1], f"refused (reason {body[1]})")
                self._fail(f"secure handshake refused: {reason}")
                return None
            return seg  # a plain RST: refused, as TCP says
        if flags & (SYN | ACK) != SYN | ACK or not acks_syn:
            return seg  # TCP's SYN-SENT rules answer it (or it is a simultaneous open)
        if body is None or body[:1] == bytes((DECLINE,)):
            if self.config.allow_plain:
                self.fell_back = True
                return stripped(seg) if body is not None else seg
            if body is None:
                why = (
                    "the peer does not speak udptcp secure mode (its SYN-ACK ignores the "
                    "offer): it is a plain TCP stack or an older udptcp"
                )
            else:
                why = "the server runs udptcp without secure mode (no identity or psk)"
            self._fail(f"{why}; pass allow_plain=True to accept a plain connection", seg, addr)
            return None
        if len(body) != 2 or body[0] != ACCEPT or body[1] != PATTERN_IDS[self.pattern]:
            self._fail(
                f"{self.other_side} answered the secure offer with another pattern", seg, addr
            )
            return None
        hs = self._hs
        assert hs is not None
        try:
            summary = hs.read_message(seg.payload)
        except NoiseError:
            self._fail(
                "the SYN-ACK's handshake message does not authenticate: it was forged or "
                f"{self.other_side} holds another key or psk",
                seg,
                addr,
            )
            return None
        bare = stripped(seg)
        if summary != handshake_fields(bare):
            self._fail("the SYN-ACK was altered in transit (its header fields)", seg, addr)
            return None
        self._msg2 = seg.payload
        self.peer_key = self.config.peer_key  # now proven (None in NNpsk0)
        self._keys_from(hs)
        return bare

    def _fail(self, message: str, answer: Segment | None = None, addr: Any = None) -> None:
        """End the handshake: record the error; reset the server's half-open connection."""
        self.failure = SecureHandshakeError(message)
        self.stats["secure_handshake_failures"] += 1
        self._hs = None
        if answer is not None:
            rst = rst_for(answer)
            if rst is not None:
                self.outbox.append((encode(rst), addr))
