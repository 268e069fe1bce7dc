"""udptcp's Noise implementation against an independent one (the ``noiseprotocol`` package).

For every pattern secure mode uses, in both roles, with fixed static and ephemeral keys: the
two implementations must produce byte-identical handshake messages, the same handshake hash
and transport keys that open each other's messages (with associated data, at explicit
nonces, and after Rekey()).
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from udptcp.core.noise import (
    PATTERNS,
    CipherState,
    HandshakeState,
    NoiseError,
    protocol_name,
    public_bytes,
)

noise_connection = pytest.importorskip("noise.connection", reason="noiseprotocol not installed")
NoiseConnection = noise_connection.NoiseConnection
Keypair = noise_connection.Keypair

SEED = 20261202


def _key(rng: random.Random) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(32))


def _private(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


def _pair(pattern: str, we_initiate: bool, seed: int) -> tuple[HandshakeState, Any]:
    """Our HandshakeState and a noiseprotocol one for the other role, same keys."""
    rng = random.Random(seed)
    init_s, resp_s, init_e, resp_e, psk = (_key(rng) for _ in range(5))
    prologue = b"udptcp cross-check"
    psk_or_none = psk if "psk" in pattern else None
    responder_static = pattern[1] == "K"  # NK, IK, NKpsk0, IKpsk2: "<- s"
    initiator_static = pattern[0] == "I"
    them = NoiseConnection.from_name(protocol_name(pattern))
    them.set_prologue(prologue)
    if psk_or_none is not None:
        them.set_psks(psk)
    if we_initiate:
        them.set_as_responder()
        ours = HandshakeState(
            pattern,
            True,
            prologue=prologue,
            s=_private(init_s) if initiator_static else None,
            rs=public_bytes(_private(resp_s)) if responder_static else None,
            psk=psk_or_none,
            e=_private(init_e),
        )
        if responder_static:
            them.set_keypair_from_private_bytes(Keypair.STATIC, resp_s)
        them.set_keypair_from_private_bytes(Keypair.EPHEMERAL, resp_e)
    else:
        them.set_as_initiator()
        ours = HandshakeState(
            pattern,
            False,
            prologue=prologue,
            s=_private(resp_s) if responder_static else None,
            psk=psk_or_none,
            e=_private(resp_e),
        )
        if initiator_static:
            them.set_keypair_from_private_bytes(Keypair.STATIC, init_s)
        if responder_static:
            them.set_keypair_from_public_bytes(
                Keypair.REMOTE_STATIC, public_bytes(_private(resp_s))
            )
        them.set_keypair_from_private_bytes(Keypair.EPHEMERAL, init_e)
    them.start_handshake()
    return ours, them


pytestmark = pytest.mark.filterwarnings("ignore:One of ephemeral keypairs is already set")


def _messages(pattern: str, we_initiate: bool) -> tuple[bytes, bytes]:
    ours, them = _pair(pattern, we_initiate, SEED)
    if we_initiate:
        m1 = ours.write_message(b"payload 1")
        them.read_message(m1)
        m2 = bytes(them.write_message(b"payload 2"))
        ours.read_message(m2)
    else:
        m1 = bytes(them.write_message(b"payload 1"))
        ours.read_message(m1)
        m2 = ours.write_message(b"payload 2")
        them.read_message(m2)
    return m1, m2


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_messages_are_byte_identical_to_the_independent_implementation(pattern: str) -> None:
    # Same keys, roles swapped: each message is written once by us and once by them.
    assert _messages(pattern, True) == _messages(pattern, False)


@pytest.mark.parametrize("we_initiate", [True, False], ids=["we-initiate", "we-respond"])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_handshake_matches_the_independent_implementation(pattern: str, we_initiate: bool) -> None:
    ours, them = _pair(pattern, we_initiate, SEED)
    if we_initiate:
        m1 = ours.write_message(b"first payload")
        assert bytes(them.read_message(m1)) == b"first payload"
        m2 = them.write_message(b"second payload")
        assert ours.read_message(bytes(m2)) == b"second payload"
    else:
        m1 = them.write_message(b"first payload")
        assert ours.read_message(bytes(m1)) == b"first payload"
        m2 = ours.write_message(b"second payload")
        assert bytes(them.read_message(m2)) == b"second payload"
    assert them.handshake_finished and ours.complete
    assert ours.handshake_hash == them.get_handshake_hash()

    # Transport messages: associated data, explicit (out-of-order) nonces, both ways.
    assert ours.send is not None and ours.recv is not None
    theirs_out = them.noise_protocol.cipher_state_encrypt
    theirs_in = them.noise_protocol.cipher_state_decrypt
    for nonce in (0, 5, 1, 2**32 + 7):
        ad = b"header %d" % nonce
        theirs_out.n = nonce
        sealed = theirs_out.encrypt_with_ad(ad, b"to us %d" % nonce)
        ours.recv.set_nonce(nonce)
        assert ours.recv.decrypt_with_ad(ad, bytes(sealed)) == b"to us %d" % nonce
        ours.send.set_nonce(nonce)
        back = ours.send.encrypt_with_ad(ad, b"to them %d" % nonce)
        theirs_in.n = nonce
        assert bytes(theirs_in.decrypt_with_ad(ad, back)) == b"to them %d" % nonce
    # Rekey() gives both the same next key.
    theirs_out.rekey()
    ours.recv.rekey()
    theirs_out.n = ours.recv.n = 0
    assert ours.recv.decrypt_with_ad(b"", bytes(theirs_out.encrypt_with_ad(b"", b"rekeyed"))) == (
        b"rekeyed"
    )


def test_protocol_name_of_exactly_hashlen_bytes_is_used_unhashed() -> None:
    # "Noise_NK_25519_ChaChaPoly_SHA256" is exactly 32 bytes: h starts as the name itself.
    hs = HandshakeState("NK", True, rs=public_bytes(X25519PrivateKey.generate()))
    assert len(protocol_name("NK")) == 32
    assert hs.symmetric.ck == protocol_name("NK")


def _completed_nk() -> tuple[HandshakeState, HandshakeState, bytes]:
    server = X25519PrivateKey.generate()
    client = HandshakeState("NK", True, rs=public_bytes(server))
    responder = HandshakeState("NK", False, s=server)
    return client, responder, client.write_message(b"")


def test_tampered_handshake_message_fails() -> None:
    _client, responder, m1 = _completed_nk()
    for i in range(len(m1)):
        tampered = bytearray(m1)
        tampered[i] ^= 0x01
        fresh = HandshakeState("NK", False, s=responder.s)
        with pytest.raises(NoiseError):
            fresh.read_message(bytes(tampered))


def test_truncated_handshake_message_fails() -> None:
    _client, responder, m1 = _completed_nk()
    for cut in (0, 10, 32, 47):
        with pytest.raises(NoiseError):
            HandshakeState("NK", False, s=responder.s).read_message(m1[:cut])


def test_low_order_public_key_fails() -> None:
    # The all-zero point has order 1: its DH result is all zeros, which must be refused.
    server = X25519PrivateKey.generate()
    responder = HandshakeState("NK", False, s=server)
    with pytest.raises(NoiseError):
        responder.read_message(bytes(32) + os.urandom(16))


def test_wrong_pinned_key_fails_at_the_responder() -> None:
    server = X25519PrivateKey.generate()
    impostor = X25519PrivateKey.generate()
    client = HandshakeState("NK", True, rs=public_bytes(server))
    m1 = client.write_message(b"")
    with pytest.raises(NoiseError):
        HandshakeState("NK", False, s=impostor).read_message(m1)


def test_different_prologues_fail() -> None:
    server = X25519PrivateKey.generate()
    client = HandshakeState("NK", True, prologue=b"a", rs=public_bytes(server))
    with pytest.raises(NoiseError):
        HandshakeState("NK", False, prologue=b"b", s=server).read_message(client.write_message())


def test_cipher_state_refuses_the_reserved_nonce() -> None:
    cipher = CipherState(bytes(32))
    cipher.set_nonce(2**64 - 1)
    with pytest.raises(NoiseError):
        cipher.encrypt_with_ad(b"", b"x")


def test_out_of_turn_calls_are_refused() -> None:
    client, _responder, _m1 = _completed_nk()
    with pytest.raises(NoiseError):
        client.write_message(b"")  # the responder's turn now
