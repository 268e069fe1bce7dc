"""Secure peer connections (identity/peer_key or psk on open_peer_connection) through the
user-space NAT emulator (no root): the intended peer connects, anyone else fails the
handshake on both sides with SecureHandshakeError, quickly and saying why."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

import udptcp
from udptcp.aio.endpoint import Endpoint
from udptcp.core.connection import State
from udptcp.nat.errors import Attempt
from udptcp.nat.punch import Punch
from udptcp.tools import natemu
from udptcp.tools.natcases import EmulatorEnv, connect_pair, coturn_unavailable

ALICE = udptcp.Identity.from_private_bytes(bytes(range(1, 33)))
BOB = udptcp.Identity.from_private_bytes(bytes(range(101, 133)))
MALLORY = udptcp.Identity.from_private_bytes(bytes(range(151, 183)))
PSK = bytes(range(200, 232))
ALICE_KW = {"identity": ALICE, "peer_key": BOB.public_key}
BOB_KW = {"identity": BOB, "peer_key": ALICE.public_key}
#: Peer 2 calls this late, so peer 1 registers first and is role a (the Noise responder).
LATE = 0.2


@pytest.mark.parametrize("responder", ["alice", "bob"])
async def test_peers_pinning_each_others_keys_connect_mutually_authenticated(
    responder: str,
) -> None:
    kwargs: tuple[dict[str, Any], dict[str, Any]] = (ALICE_KW, BOB_KW)
    if responder == "bob":
        kwargs = (BOB_KW, ALICE_KW)
    async with EmulatorEnv(natemu.CONE, natemu.CONE) as env:
        first, second = await connect_pair(
            env, payload=100_000, timeout=5, late=LATE, peer_kwargs=kwargs
        )
    for r in (first, second):
        assert r.error is None, r.error
        assert r.path == "direct" and r.intact
        assert r.secure == ("IK", "ChaCha20-Poly1305")
    assert first.nat["role"] == "a" and second.nat["role"] == "b"
    # Each learned, and proved, the other's key.
    alice, bob = (first, second) if responder == "alice" else (second, first)
    assert alice.peer_key == BOB.public_key and bob.peer_key == ALICE.public_key


@pytest.mark.parametrize(
    ("keys", "pattern"),
    [({"psk": PSK}, "NNpsk0"), ({"psk": PSK, **ALICE_KW}, "IKpsk2")],
)
async def test_psk_peers_connect(keys: dict[str, Any], pattern: str) -> None:
    other = keys if "identity" not in keys else {**keys, **BOB_KW}
    async with EmulatorEnv(natemu.CONE, natemu.CONE) as env:
        a, b = await connect_pair(env, payload=10_000, timeout=5, peer_kwargs=(keys, other))
    for r in (a, b):
        assert r.error is None, r.error
        assert r.intact and r.secure is not None and r.secure.pattern == pattern
    if pattern == "NNpsk0":
        assert a.peer_key is None and b.peer_key is None  # the psk, not a key, says who


async def test_a_secure_connection_keeps_the_handshake_off_the_byte_stream() -> None:
    pairs: list[Any] = []
    async with EmulatorEnv(natemu.CONE, natemu.CONE) as env:
        a, b = await connect_pair(env, timeout=5, keep=pairs, peer_kwargs=(ALICE_KW, BOB_KW))
        assert a.error is None and b.error is None
        (ra, wa), (rb, wb) = pairs
        assert wa.get_extra_info("secure_handshake_hash") == wb.get_extra_info(
            "secure_handshake_hash"
        )
        wa.write(b"first line\n")
        assert await asyncio.wait_for(rb.readline(), 5) == b"first line\n"
        sender = wa.transport.get_extra_info("udptcp_connection")
        receiver = wb.transport.get_extra_info("udptcp_connection")
        # The first byte was ISS + 1: no handshake bytes counted as sequence space.
        assert receiver.rcv_nxt == (sender.iss + 1 + len(b"first line\n")) & 0xFFFFFFFF
        for _, writer in pairs:
            writer.close()


async def wrong(
    kwargs: tuple[dict[str, Any], dict[str, Any]], timeout: float = 3.0
) -> tuple[Any, Any]:
    async with EmulatorEnv(natemu.CONE, natemu.CONE) as env:
        first, second = await connect_pair(
            env, payload=100, timeout=timeout, late=LATE, peer_kwargs=kwargs
        )
    for r in (first, second):
        assert r.path is None, "a peer connected that should not have"
        assert r.elapsed < timeout
    return first, second


@pytest.mark.parametrize("impostor_role", ["a", "b"])
async def test_an_impostor_in_the_session_fails_the_handshake_on_both_sides(
    impostor_role: str,
) -> None:
    """Mallory joins Alice's session at the rendezvous (before Bob does) with its own
    identity, knowing Alice's public key: it never connects, and Alice learns why."""
    mallory = {"identity": MALLORY, "peer_key": ALICE.public_key}
    kwargs = (ALICE_KW, mallory) if impostor_role == "b" else (mallory, ALICE_KW)
    first, second = await wrong(kwargs)
    alice, impostor = (first, second) if impostor_role == "b" else (second, first)
    for r in (alice, impostor):
        assert isinstance(r.error, udptcp.SecureHandshakeError), r.error
        assert isinstance(r.error, ConnectionError)
    if impostor_role == "b":
        # The key message 1 revealed is not the one pinned.
        assert "not the one pinned" in str(alice.error)
        assert "expected someone else" in str(impostor.error)
    else:
        # Alice's message 1 is sealed to Bob's key: Mallory cannot read it.
        assert "does not authenticate" in str(impostor.error)
        assert "refused the handshake" in str(alice.error)
    assert "session 'case'" in str(alice.error)


async def test_a_wrong_psk_fails_on_both_sides_saying_so() -> None:
    first, second = await wrong(({"psk": PSK}, {"psk": bytes(32)}))
    for r in (first, second):
        assert isinstance(r.error, udptcp.SecureHandshakeError), r.error
        assert "psks differ" in str(r.error)
    # No retries spent on a definite failure: the responder (first) fails as the offer
    # arrives, the initiator one round trip later; neither waits out the timeout.
    assert second.elapsed < 1.0


async def test_a_peer_without_secure_mode_is_refused() -> None:
    first, second = await wrong(({"psk": PSK}, {}))
    assert isinstance(first.error, udptcp.SecureHandshakeError)
    assert "without secure mode" in str(first.error)
    # The plain peer is refused too (as plain TCP reports it).
    assert isinstance(second.error, udptcp.NATTraversalError)


async def test_peers_with_keys_of_different_kinds_are_told_so() -> None:
    first, second = await wrong(({"psk": PSK}, BOB_KW))
    for r in (first, second):
        assert isinstance(r.error, udptcp.SecureHandshakeError)
    assert "we run NNpsk0" in str(first.error) or "different kinds" in str(first.error)
    assert "it runs NNpsk0" in str(second.error)


async def test_one_sided_or_fallback_keywords_are_refused_before_anything_is_sent() -> None:
    for kw in (
        {"peer_key": BOB.public_key},
        {"identity": ALICE},
        {"psk": PSK, "config": udptcp.Config(allow_plain=True)},
    ):
        with pytest.raises(ValueError):
            await udptcp.open_peer_connection("s", "127.0.0.1:9", timeout=1, **kw)


def endpoint_on(ip: str) -> tuple[Endpoint, socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, 0))
    return Endpoint.for_socket(asyncio.get_running_loop(), sock), sock


def punch(endpoint: Endpoint, role: str, config: udptcp.Config, peer: Any) -> Punch:
    vports = (50100, 50101) if role == "a" else (50101, 50100)
    return Punch(
        endpoint,
        role=role,
        local_vport=vports[0],
        remote_vport=vports[1],
        direct=[Attempt("host", peer)],
        relayed=[],
        relay_delay=1.0,
        config=config,
        protocol_factory=asyncio.Protocol,
    )


async def test_the_initiator_answers_the_responders_syn_with_its_offer() -> None:
    """The initiator punches first; its SYN finds nobody. Then the responder's WAIT SYN
    arrives: the initiator's TCP never sees it (no simultaneous open on its side), and its
    session answers with the offer at once."""
    (ea, sa), (eb, sb) = endpoint_on("127.0.0.1"), endpoint_on("127.0.0.1")
    pb = punch(eb, "b", udptcp.Config(**BOB_KW), sa.getsockname())
    tb = pb.start()
    for _ in range(100):
        if ea.statistics().get("rst_sent"):
            break
        await asyncio.sleep(0.01)  # the initiator's first SYN met a closed port
    pa = punch(ea, "a", udptcp.Config(**ALICE_KW), sb.getsockname())
    ta = pa.start()
    assert ta._waiter is not None and tb._waiter is not None
    await asyncio.wait_for(asyncio.gather(ta._waiter, tb._waiter), 5)
    pa.stop()
    pb.stop()
    assert eb.statistics()["secure_peer_waits"] >= 1
    assert tb.conn.state is ta.conn.state is State.ESTABLISHED
    assert tb.get_extra_info("peer_key") == ALICE.public_key
    assert ta.get_extra_info("peer_key") == BOB.public_key
    ta.abort()
    tb.abort()


@pytest.mark.one_loop
@pytest.mark.skipif(coturn_unavailable() is not None, reason=str(coturn_unavailable()))
async def test_a_relayed_secure_connection_through_turn() -> None:
    async with EmulatorEnv(natemu.SYMMETRIC, natemu.SYMMETRIC, turn=True) as env:
        a, b = await connect_pair(env, payload=50_000, timeout=6, peer_kwargs=(ALICE_KW, BOB_KW))
    for r in (a, b):
        assert r.error is None, r.error
        assert r.path == "relayed" and r.intact and r.secure is not None
