"""Secure mode for peer connections: one Noise handshake over a TCP simultaneous open.

Both peers of a rendezvous session make the same call, and both send SYNs: each peer's
copies punch its own NAT, which lets in only what answers something sent out. A Noise
handshake, though, has an initiator, whose message 1 rides in a SYN, and a responder, whose
message 2 rides in the SYN-ACK answering it. The rendezvous' roles decide, and both peers
know them: role "b" initiates, role "a" responds.

* The responder's SYN carries the secure-mode option with type WAIT and its pattern number,
  and no payload. It punches the responder's NAT and tells the initiator "a secure peer,
  waiting for your offer".
* The initiator never lets a WAIT SYN into its TCP state machine. Taken there it would make a
  simultaneous open (RFC 9293 §3.5) on the initiator's side too, whose SYN-ACK cannot carry
  message 1 (the prologue binds message 1 to the SYN it rides in). It drops it (counted as
  ``secure_peer_waits``) and answers it at once with a copy of its own offering SYN, which
  the responder's NAT now lets through. So the initiator's side is an ordinary active open:
  SYN-SENT, then ESTABLISHED on the responder's SYN-ACK.
* The responder takes the offering SYN in SYN-SENT: RFC 9293 §3.10.7.3 ("fourth, check the
  SYN bit") moves it to SYN-RECEIVED, and its SYN-ACK is a server's, with ACCEPT and message 2.
  The initiator's sealed ACK completes both sides.

**Patterns** (:func:`peer_pattern`). Both peers are meant to be sure of each other, so
two of the five make sense. IK: both have an identity and pin the other's public key
(``peer_key``); message 1 reveals the initiator's key and the responder checks it against
its pin, so a third party that joined the session at the rendezvous is refused whichever
role it got (as responder it cannot read message 1 at all). NNpsk0: a pre-shared key alone.
With all three keys, IKpsk2. Each side derives its pattern from its own keys, and the two
must agree.

**Failures** end both sides at once with
:class:`~udptcp.core.secure.SecureHandshakeError`: the side that finds the problem fails
and answers with a REJECT RST, and the other reports that RST's reason
(:data:`PEER_REASONS`). A peer without secure mode is refused (it sends a SYN or SYN-ACK
without the option); there is no fallback to plain. The price of failing fast: a forged
handshake segment from the peer's address with the session's virtual ports, arriving before
the real one, ends the attempt too. Forging one takes what only the path and the
rendezvous see (both public addresses and the two random virtual ports), and an attacker
on the path can drop the handshake anyway; it can never make a peer accept the wrong key.
"""

from __future__ import annotations

import collections
from typing import Any

from udptcp.core.config import Config
from udptcp.core.secure import HandshakeRefused, SecureHandshakeError, SecureSession
from udptcp.core.secure_wire import (
    AUTH_FAILED,
    DECLINE,
    MALFORMED,
    MISMATCH,
    NO_IDENTITY,
    NO_PSK,
    OFFER,
    PATTERN_IDS,
    PATTERNS,
    PSK_REQUIRED,
    REFUSED_PLAIN,
    REJECT,
    UNSUPPORTED,
    WAIT,
    WRONG_PEER,
    option_body,
    reject_segment,
    stripped,
    with_option,
)
from udptcp.core.segment import ACK, RST, SYN, Segment, encode

__all__ = ["MAX_ANSWERED", "PEER_REASONS", "PeerSession", "peer_pattern", "peer_secure"]

#: Most addresses whose WAIT SYN the initiator answers at once with its own SYN (the rest
#: wait for the punching schedule): a sender cycling through ports gets no more.
MAX_ANSWERED = 16
_MASK = 0xFFFFFFFF

_KEYS = {
    "IK": "identity + peer_key",
    "IKpsk2": "identity + peer_key + psk",
    "NNpsk0": "psk only",
}
_OTHER_KEYS = "the two peers' keys are of different kinds (both need identity= and peer_key=, or both psk= alone, or both all three)"

#: What a REJECT reason from the other peer tells this one (AUTH_FAILED is said in the
#: terms of our pattern: :func:`_auth_failed`).
PEER_REASONS = {
    REFUSED_PLAIN: "it connects in secure mode only",
    AUTH_FAILED: "our handshake does not authenticate to it",
    WRONG_PEER: ("it pinned another key (peer_key=) than our identity's: it expected someone else"),
    MISMATCH: _OTHER_KEYS,
    PSK_REQUIRED: _OTHER_KEYS,
    NO_PSK: _OTHER_KEYS,
    NO_IDENTITY: _OTHER_KEYS,
    UNSUPPORTED: "it does not know our handshake pattern",
    MALFORMED: "it found our handshake malformed",
}


def peer_secure(config: Config) -> bool:
    """Does a peer connection with ``config`` run in secure mode (any key given)?"""
    return config.identity is not None or config.peer_key is not None or config.psk is not None


def peer_pattern(config: Config) -> str:
    """The pattern both peers run with ``config``'s keys (see the module docstring);
    ValueError for a combination that would leave a peer unauthenticated."""
    identity, peer_key, psk = config.identity, config.peer_key, config.psk
    if identity is not None and peer_key is not None:
        return "IK" if psk is None else "IKpsk2"
    if identity is None and peer_key is None and psk is not None:
        return "NNpsk0"
    raise ValueError(
        "a secure peer connection authenticates both peers: pass identity= (ours) and "
        "peer_key= (the other peer's public key), or psk= alone, or all three"
    )


def _auth_failed(pattern: str) -> str:
    """Why a handshake of ``pattern`` may fail to authenticate."""
    causes = []
    if pattern.startswith("IK"):
        causes.append("it pinned another key (peer_key=) than our identity's")
    if "psk" in pattern:
        causes.append("the psks differ")
    causes.append("the SYN was altered on the way")
    return ", ".join(causes[:-1]) + " or " + causes[-1]


class PeerSession(SecureSession):
    """Secure mode for one peer connection: the initiator (role "b") or the responder
    (role "a"); see the module docstring. The caller sets :attr:`peer` when the punching
    layer binds the connection to an address."""

    other_side = "the other peer"

    def __init__(
        self,
        config: Config,
        initiator: bool,
        *,
        local_port: int,
        remote_port: int,
        peer: Any,
        stats: collections.Counter[str] | None = None,
    ) -> None:
        super().__init__(
            config,
            peer_pattern(config),
            initiator,
            local_port=local_port,
            remote_port=remote_port,
            peer=peer,
            stats=stats,
        )
        self._syn: Segment | None = None  # our latest SYN as sent
        self._answered: set[Any] = set()  # initiator: addresses whose WAIT got our SYN
        self._peer_iss: int | None = None  # responder: the initiator's ISS

    # ------------------------------------------------------------------ sending

    def _handshake_segment(self, seg: Segment) -> Segment:
        if not self.initiator and self._msg1 is None:
            # Our SYN: a punch that says we wait for the offer. (Before the offer there
            # is no SYN-ACK of ours: only an offering SYN moves us to SYN-RECEIVED.)
            if not seg.flags & ACK:
                self._iss = seg.seq
            return with_option(stripped(seg), bytes((WAIT, PATTERN_IDS[self.pattern])), b"")
        out = super()._handshake_segment(seg)
        if self.initiator:
            self._syn = out
        return out

    def _fail(
        self,
        message: str,
        answer: Segment | None = None,
        addr: Any = None,
        reason: int = AUTH_FAILED,
    ) -> None:
        """End the handshake; answer ``answer`` with a REJECT RST saying ``reason``, so the
        other peer fails at once too, knowing why."""
        self.failure = SecureHandshakeError(message)
        self.stats["secure_handshake_failures"] += 1
        self._hs = None
        if answer is not None:
            rst = reject_segment(answer, reason)
            if rst is not None:
                self.outbox.append((encode(rst), addr))

    # ------------------------------------------------------------------ receiving

    def open_plain(self, seg: Segment, addr: Any, now: float) -> Segment | None:
        """A plain segment: the handshake rules of the module docstring for each role, then
        those of client and server (retransmitted SYN and SYN-ACK, dropped forgeries)."""
        if self.failure is not None:
            return None
        if self.initiator:
            if self._tx is None and self._msg1 is not None:
                return self._initiate(seg, addr)
        elif self._msg1 is None:
            return self._wait(seg, addr)
        elif seg.flags & RST and self._rx_max < 0:
            body = option_body(seg.options)
            if (
                body is not None
                and len(body) == 2
                and body[0] == REJECT
                and self._peer_iss is not None
                and seg.seq == (self._peer_iss + 1) & _MASK
            ):
                self._fail(self._refusal(body[1]))
                return None
        return super().open_plain(seg, addr, now)

    def _refused_by_peer(self, seg: Segment, body: bytes | None) -> bool:
        """An RST acknowledging our SYN with a REJECT: fail with its reason."""
        if body is None or len(body) != 2 or body[0] != REJECT:
            return False
        assert self._iss is not None
        if not seg.flags & ACK or seg.ack != (self._iss + 1) & _MASK:
            return False
        self._fail(self._refusal(body[1]))
        return True

    def _initiate(self, seg: Segment, addr: Any) -> Segment | None:
        """The initiator in SYN-SENT."""
        flags = seg.flags & (SYN | ACK | RST)
        body = option_body(seg.options)
        if flags == SYN:
            if body is not None and len(body) == 2 and body[0] == WAIT:
                theirs = PATTERNS.get(body[1])
                if theirs == self.pattern:
                    self.stats["secure_peer_waits"] += 1
                    if addr not in self._answered and len(self._answered) < MAX_ANSWERED:
                        # Its NAT is open towards us now: our offer goes through at once.
                        self._answered.add(addr)
                        if self._syn is not None:
                            self.outbox.append((encode(self._syn), addr))
                    return None
                self._fail(self._mismatch(theirs), seg, addr, MISMATCH)
            elif body is None:
                self._fail(self._plain_peer("a SYN"), seg, addr, REFUSED_PLAIN)
            else:
                why = (
                    "it offered a handshake of its own: both peers were given the initiator's role"
                    if body[:1] == bytes((OFFER,))
                    else "its secure-mode option is malformed"
                )
                self._fail(f"the other peer's SYN makes no sense here: {why}", seg, addr, MALFORMED)
            return None
        if flags & RST:
            if self._refused_by_peer(seg, body):
                return None
            return seg  # a plain RST: TCP's rules decide
        assert self._iss is not None
        if (
            flags == SYN | ACK
            and seg.ack == (self._iss + 1) & _MASK
            and (body is None or body[:1] == bytes((DECLINE,)))
        ):
            self._fail(self._plain_peer("a SYN-ACK"), seg, addr, REFUSED_PLAIN)
            return None
        return self._client_handshake(seg, addr)

    def _wait(self, seg: Segment, addr: Any) -> Segment | None:
        """The responder in SYN-SENT, waiting for the offer."""
        flags = seg.flags & (SYN | ACK | RST)
        body = option_body(seg.options)
        if flags == SYN:
            return self._take_offer(seg, body, addr)
        acks_ours = (
            bool(flags & ACK) and self._iss is not None and seg.ack == (self._iss + 1) & _MASK
        )
        if flags & RST:
            if self._refused_by_peer(seg, body):
                return None
            return seg if acks_ours else None
        if flags == SYN | ACK and acks_ours:
            # A simultaneous open answered: only a peer without secure mode makes one.
            self._fail(self._plain_peer("a SYN-ACK"), seg, addr, REFUSED_PLAIN)
            return None
        self.stats["secure_unsealed"] += 1
        return None

    def _take_offer(self, syn: Segment, body: bytes | None, addr: Any) -> Segment | None:
        """The initiator's SYN: read message 1 and check who sent it, or refuse it."""
        if body is None:
            self._fail(self._plain_peer("a SYN"), syn, addr, REFUSED_PLAIN)
            return None
        if len(body) != 2 or body[0] != OFFER:
            why = (
                "both peers were given the responder's role"
                if body[:1] == bytes((WAIT,))
                else "its secure-mode option is malformed"
            )
            self._fail(f"the other peer's SYN makes no offer: {why}", syn, addr, MALFORMED)
            return None
        theirs = PATTERNS.get(body[1])
        if theirs != self.pattern:
            self._fail(self._mismatch(theirs), syn, addr, MISMATCH)
            return None
        try:
            self._read_offer(syn, body)
        except HandshakeRefused:
            self._fail(
                f"the other peer's handshake does not authenticate: {_auth_failed(self.pattern)}",
                syn,
                addr,
            )
            return None
        pinned = self.config.peer_key
        if pinned is not None and self.peer_key != pinned:
            # Message 1 proved the sender holds the key it revealed, but it is not the peer
            # we pinned: someone else joined the session.
            got = self.peer_key.hex() if self.peer_key is not None else "none"
            self.peer_key = None
            self._fail(
                f"the other peer is not the one pinned: its key is {got[:16]}…, "
                f"peer_key= is {pinned.hex()[:16]}… (someone else joined the session?)",
                syn,
                addr,
                WRONG_PEER,
            )
            return None
        self._peer_iss = syn.seq
        return stripped(syn)

    def _refusal(self, reason: int) -> str:
        """The error for a REJECT from the other peer with ``reason``."""
        why = PEER_REASONS.get(reason, f"reason {reason}")
        if reason == AUTH_FAILED:
            ours = _auth_failed(self.pattern).replace(
                "it pinned another key (peer_key=) than our identity's",
                "the peer_key we pinned is not its identity's key",
            )
            why += f": {ours}"
        return f"the other peer refused the handshake: {why}"

    def _mismatch(self, theirs: str | None) -> str:
        return (
            f"the other peer's secure-mode keys are of another kind: it runs "
            f"{theirs or 'an unknown pattern'} ({_KEYS.get(theirs or '', '?')}), we run "
            f"{self.pattern} ({_KEYS[self.pattern]})"
        )

    def _plain_peer(self, what: str) -> str:
        return (
            f"the other peer joined without secure mode ({what} without the secure-mode "
            f"option): it needs the same kind of keys as ours ({_KEYS[self.pattern]})"
        )
