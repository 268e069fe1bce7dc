"""Secure mode's handshake patterns: which one a side runs, given the keys it holds.

**Patterns** (Noise rev. 34, ``25519_ChaChaPoly_SHA256``), all two messages, so the keys
exist when SYN and SYN-ACK have crossed and the third segment is already sealed. The client
picks one from what it was given (:func:`client_pattern`):

==========  ============================  ===========================================
pattern     client has                    authenticates
==========  ============================  ===========================================
1 NK        ``peer_key``                  the server (the client stays anonymous)
2 IK        ``identity`` + ``peer_key``   both; the server learns the client's key
3 NNpsk0    ``psk``                       both, by the pre-shared key
4 NKpsk0    ``peer_key`` + ``psk``        the server by key, both by the PSK
5 IKpsk2    all three                     both, twice (WireGuard's pattern)
==========  ============================  ===========================================

A server answers any pattern its keys allow (:func:`server_refusal` says why not, as the
REJECT reason). :mod:`udptcp.core.secure` runs the chosen handshake.
"""

from __future__ import annotations

from typing import NamedTuple

from udptcp.core.config import Config
from udptcp.core.secure_wire import NO_IDENTITY, NO_PSK, PSK_REQUIRED

__all__ = ["SecureInfo", "client_pattern", "client_secure", "server_refusal", "server_secure"]


class SecureInfo(NamedTuple):
    """``get_extra_info("secure")`` of a secure connection."""

    pattern: str
    """The Noise handshake pattern, e.g. ``"NK"``."""
    cipher: str
    """The AEAD sealing the datagrams: ``"ChaCha20-Poly1305"``."""


def client_secure(config: Config) -> bool:
    """Does a client with ``config`` connect in secure mode (a ``peer_key`` or ``psk``)?"""
    return config.peer_key is not None or config.psk is not None


def server_secure(config: Config) -> bool:
    """Does a listener with ``config`` serve secure mode (an ``identity`` or ``psk``)?"""
    return config.identity is not None or config.psk is not None


def client_pattern(config: Config) -> str:
    """The pattern a client with ``config``'s keys offers (see the module docstring)."""
    peer_key, identity, psk = config.peer_key, config.identity, config.psk
    if peer_key is None:
        if psk is None:
            raise ValueError(
                "a secure connection needs the server's public key (peer_key=) or a "
                "pre-shared key (psk=); an identity alone authenticates nobody to us"
            )
        if identity is not None:
            raise ValueError("a client identity is sent to a server whose peer_key is pinned")
        return "NNpsk0"
    if identity is None:
        return "NK" if psk is None else "NKpsk0"
    return "IK" if psk is None else "IKpsk2"


def server_refusal(config: Config, pattern: str) -> int | None:
    """Why a server with ``config`` cannot run ``pattern``, or None if it can."""
    if "psk" in pattern:
        if config.psk is None:
            return NO_PSK
    elif config.psk is not None:
        return PSK_REQUIRED
    if pattern[0] in "NI" and pattern[1] == "K" and config.identity is None:
        return NO_IDENTITY
    return None
