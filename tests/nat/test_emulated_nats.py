"""Peer connections through the user-space NAT emulator (no root): every kernel-lab case
on loopback, plus the NAT behaviours the kernel lab cannot easily make."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.protocols import Echo, Recorder

import udptcp
from udptcp.aio.endpoint import Endpoint
from udptcp.tools import natemu
from udptcp.tools.natcases import EmulatorEnv, connect_pair, coturn_unavailable, idle_then_message

needs_coturn = pytest.mark.skipif(
    coturn_unavailable() is not None, reason=str(coturn_unavailable())
)

EIM = "endpoint-independent"
ADM = "address-dependent"
APDM = "address-and-port-dependent"


async def test_cone_nats_connect_directly_and_carry_data_intact() -> None:
    async with EmulatorEnv(natemu.CONE, natemu.CONE) as env:
        a, b = await connect_pair(env, payload=200_000, timeout=5)
    for r in (a, b):
        assert r.error is None and r.path == "direct" and r.intact
    assert {a.nat["role"], b.nat["role"]} == {"a", "b"}
    # Each saw its own public mapping (127.0.<n>.1), as the rendezvous did.
    assert a.nat["observed_address"][0] == "127.0.1.1"
    assert b.nat["observed_address"][0] == "127.0.2.1"
    assert "chosen" in " ".join(a.nat["attempts"])


async def test_a_late_peer_still_connects_directly() -> None:
    async with EmulatorEnv(natemu.CONE, natemu.CONE) as env:
        a, b = await connect_pair(env, late=0.5, payload=10_000, timeout=5)
    assert (a.path, b.path) == ("direct", "direct") and a.intact and b.intact
    assert a.elapsed >= 0.5  # a waited at the rendezvous for b


@pytest.mark.parametrize(
    ("mapping", "filtering"),
    [(EIM, EIM), (EIM, ADM), (EIM, APDM)],
)
async def test_nats_with_endpoint_independent_mapping_open_directly(
    mapping: str, filtering: str
) -> None:
    behaviour = natemu.Behaviour(mapping=mapping, filtering=filtering, port="random")
    async with EmulatorEnv(behaviour, behaviour) as env:
        a, b = await connect_pair(env, payload=1000, timeout=5)
    assert (a.path, b.path) == ("direct", "direct"), (a.error, b.error)


@pytest.mark.one_loop
async def test_symmetric_nats_without_turn_fail_within_the_timeout_naming_candidates() -> None:
    async with EmulatorEnv(natemu.SYMMETRIC, natemu.SYMMETRIC) as env:
        a, b = await connect_pair(env, timeout=2.0)
    for r in (a, b):
        assert isinstance(r.error, udptcp.NATTraversalError)
        assert isinstance(r.error, ConnectionError)
        assert r.elapsed <= 2.0
        assert r.error.stage == "punching"
        kinds = {attempt.kind for attempt in r.error.attempts}
        assert {"host", "observed"} <= kinds
        assert all(attempt.outcome == "no answer" for attempt in r.error.attempts)
        assert "no TURN server" in str(r.error)
        assert "observed 127.0." in str(r.error)


@pytest.mark.one_loop
@needs_coturn
@pytest.mark.parametrize(
    "kinds", [("symmetric", "symmetric"), ("cone", "symmetric"), ("symmetric", "cone")]
)
async def test_a_turn_relay_carries_what_no_direct_path_can(kinds: tuple[str, str]) -> None:
    presets = {"cone": natemu.CONE, "symmetric": natemu.SYMMETRIC}
    async with EmulatorEnv(presets[kinds[0]], presets[kinds[1]], turn=True) as env:
        a, b = await connect_pair(env, payload=300_000, timeout=6)
    for r, kind in zip((a, b), kinds):
        assert r.error is None, r.error
        assert r.path == "relayed" and r.intact
        # The STUN server's view and the rendezvous' differ behind a symmetric NAT.
        if kind == "symmetric":
            assert "address-and-port-dependent" in r.nat["mapping"]
        else:
            assert r.nat["mapping"] == "endpoint-independent"
    # Exactly one allocation is used: role a's (roles follow the order of registration).
    first, second = sorted((a, b), key=lambda r: r.nat["role"])
    assert "relayed_address" in first.nat and "relayed_address" not in second.nat


@pytest.mark.one_loop
@needs_coturn
async def test_with_turn_configured_cone_nats_still_connect_directly() -> None:
    async with EmulatorEnv(natemu.CONE, natemu.CONE, turn=True) as env:
        a, b = await connect_pair(env, payload=1000, timeout=5)
    assert (a.path, b.path) == ("direct", "direct")
    assert "mapped_address" in a.nat  # what the STUN server saw
    assert a.nat["mapping"] == b.nat["mapping"] == "endpoint-independent"


@pytest.mark.one_loop
async def test_binding_maintenance_keeps_an_idle_connection_through_a_short_nat_timeout() -> None:
    short = natemu.Behaviour(timeout=1.0)
    config = udptcp.Config(nat_keepalive=0.4)
    async with EmulatorEnv(short, short) as env:
        pairs: list[object] = []
        a, b = await connect_pair(env, timeout=5, config=config, keep=pairs)
        assert (a.path, b.path) == ("direct", "direct")
        arrived, latency = await idle_then_message(pairs, idle=3.0)
        assert arrived == [True, True]
        assert all(t is not None and t < 0.1 for t in latency)
        assert sum(nat.stats["expired"] for nat in env.nats) == 0
        for _, writer in pairs:  # type: ignore[misc]
            writer.close()


@pytest.mark.one_loop
async def test_without_binding_maintenance_the_nat_forgets_the_idle_connection() -> None:
    """The control for the test above: the same idle kills it when keepalives are rare."""
    # (A random port: a new mapping is a new address, as the old connection sees it.)
    short = natemu.Behaviour(timeout=1.0, port="random")
    config = udptcp.Config(nat_keepalive=60.0)
    async with EmulatorEnv(short, short) as env:
        pairs: list[object] = []
        await connect_pair(env, timeout=5, config=config, keep=pairs)
        await asyncio.sleep(2.0)
        assert sum(nat.stats["expired"] for nat in env.nats) >= 1
        arrived, _ = await idle_then_message(pairs, idle=0, patience=0.5)
        assert arrived == [False, False]
        for _, writer in pairs:  # type: ignore[misc]
            writer.transport.abort()


@pytest.mark.one_loop
async def test_an_unreachable_stun_and_turn_server_costs_only_its_share_of_the_timeout() -> None:
    async with EmulatorEnv(natemu.CONE, natemu.CONE) as env:
        env.stun = env.turn = "127.0.0.1:9"  # nothing answers there
        a, b = await connect_pair(env, timeout=4)
    for r in (a, b):
        assert r.error is None and r.path == "direct"
        assert "no answer" in r.nat["stun_error"] and "no allocation" in r.nat["turn_error"]
        assert r.elapsed < 4


async def _client_behind_a_nat_idles(path_keepalive: float | None) -> tuple[list[bool], Any]:
    """Three client connections over one socket behind a NAT that forgets a binding after
    1 s, to a server with a public address; 3 s of silence, then each sends a message.
    Returns whether each echo came back, and the NAT."""
    network = natemu.NatNetwork(seed=3)
    nat = network.nat(natemu.Behaviour(timeout=1.0, port="random"))
    server = await udptcp.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sock = network.host_socket()
    endpoint = Endpoint.for_socket(asyncio.get_running_loop(), sock)
    nat.attach(endpoint)
    # TCP keepalive far off: only the path keepalive can keep the binding.
    config = udptcp.Config(path_keepalive=path_keepalive, keepalive_idle=3600.0)
    opened = [
        await udptcp.create_connection(Recorder, "127.0.0.1", port, sock=sock, config=config)
        for _ in range(3)
    ]
    try:
        await asyncio.sleep(3.0)  # the idle period under test, not a race
        for transport, _ in opened:
            transport.write(b"ping")
        arrived = []
        for _, protocol in opened:
            try:
                arrived.append(await protocol.received(4, timeout=1.0) == b"ping")
            except TimeoutError:
                arrived.append(False)
        return arrived, (nat, endpoint.statistics())
    finally:
        for transport, _ in opened:
            transport.abort()
        server.close()
        network.close()


@pytest.mark.one_loop
async def test_the_path_keepalive_keeps_a_clients_binding_for_all_its_connections() -> None:
    arrived, (nat, stats) = await _client_behind_a_nat_idles(0.4)
    assert arrived == [True, True, True]
    assert nat.stats["expired"] == 0
    # One request per interval for the path, not one per connection: ~8 in 3.3 s.
    assert 5 <= stats["nat_keepalives_sent"] <= 10


@pytest.mark.one_loop
async def test_without_the_path_keepalive_the_nat_forgets_the_idle_clients() -> None:
    """The control for the test above."""
    arrived, (nat, stats) = await _client_behind_a_nat_idles(None)
    assert nat.stats["expired"] >= 1
    assert arrived == [False, False, False]
    assert stats.get("nat_keepalives_sent", 0) == 0
