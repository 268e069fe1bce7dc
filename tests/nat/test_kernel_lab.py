"""Peer connections through real kernel NATs: nftables masquerade in network namespaces
(``udptcp.tools.natlab``), coturn as the STUN/TURN server.

Short versions of the acceptance cases (the full 20-run ones: ``python -m
benchmarks.natlab``). Each test builds its lab and removes it; the host namespace is
checked before and after: no lab namespace, link, address, route or process is left.
Skipped with the reason without root, ``ip netns`` or ``nft`` (and without coturn where a
TURN server is needed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

import udptcp
from udptcp.tools.natcases import KernelEnv, connect_pair, idle_then_message
from udptcp.tools.natlab import PREFIX, NatLab, coturn_unavailable, lab_unavailable

_why = lab_unavailable()
pytestmark = [
    pytest.mark.skipif(_why is not None, reason=str(_why)),
    pytest.mark.one_loop,
]
needs_coturn = pytest.mark.skipif(
    coturn_unavailable() is not None, reason=str(coturn_unavailable())
)


def host_view() -> list[str]:
    """What the host shows that a NAT lab could leave behind: lab namespaces, any link,
    address or route in the labs' 10.201.0.0/16, and turnserver processes."""
    view = []
    for command in (
        ("ip", "netns", "list"),
        ("ip", "-o", "link", "show"),
        ("ip", "-o", "addr", "show"),
        ("ip", "route", "show", "table", "all"),
    ):
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        view += [
            f"{command}: {line}" for line in out.splitlines() if PREFIX in line or "10.201." in line
        ]
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    view += [line for line in out.splitlines() if "turnserver" in line and "udptcp.lab" in line]
    return view


@pytest.fixture(scope="module")
def host_baseline() -> list[str]:
    return host_view()


@pytest_asyncio.fixture(loop_scope="function")
async def make_lab(host_baseline: list[str]) -> AsyncIterator[Callable[..., KernelEnv]]:
    """``make_lab(nat1, nat2, binding_timeout=None, turn=False)`` -> an entered KernelEnv."""
    labs: list[NatLab] = []
    envs: list[KernelEnv] = []

    def make(nat1: str, nat2: str, **kw: object) -> KernelEnv:
        lab = NatLab(nat1, nat2, **kw)  # type: ignore[arg-type]
        labs.append(lab)
        lab.up()
        env = KernelEnv(lab)
        envs.append(env)
        return env

    try:
        yield make
    finally:
        for env in envs:
            await env.__aexit__(None, None, None)
        for lab in labs:
            lab.down()
        assert host_view() == host_baseline, "the NAT lab left something in the host"


async def test_cone_nats_connect_directly(make_lab: Callable[..., KernelEnv]) -> None:
    env = await make_lab("cone", "cone").__aenter__()
    a, b = await connect_pair(env, payload=1_000_000, timeout=5)
    for r in (a, b):
        assert r.error is None and r.path == "direct" and r.intact
        assert r.nat["observed_address"][0] in ("10.201.0.11", "10.201.0.12")
    print(f"cone/cone: established {max(a.setup or 0, b.setup or 0):.3f} s after both called")


async def test_cone_nats_connect_directly_with_one_peer_a_second_late(
    make_lab: Callable[..., KernelEnv],
) -> None:
    env = await make_lab("cone", "cone").__aenter__()
    a, b = await connect_pair(env, late=1.0, payload=100_000, timeout=5)
    assert (a.path, b.path) == ("direct", "direct") and a.intact and b.intact


async def test_secure_peers_connect_and_an_impostor_does_not(
    make_lab: Callable[..., KernelEnv],
) -> None:
    """Both peers pin each other's key (Noise IK) through real NATs; then a third identity
    takes the second peer's place in the session and fails the handshake on both sides."""
    alice, bob, mallory = (udptcp.Identity.generate() for _ in range(3))
    env = await make_lab("cone", "cone").__aenter__()
    mutual = (
        {"identity": alice, "peer_key": bob.public_key},
        {"identity": bob, "peer_key": alice.public_key},
    )
    a, b = await connect_pair(env, payload=200_000, timeout=5, peer_kwargs=mutual)
    for r in (a, b):
        assert r.error is None and r.path == "direct" and r.intact
        assert r.secure is not None and r.secure.pattern == "IK"
    assert (a.peer_key, b.peer_key) == (bob.public_key, alice.public_key)
    impostor = (mutual[0], {"identity": mallory, "peer_key": alice.public_key})
    a, b = await connect_pair(env, session="taken", timeout=3, peer_kwargs=impostor)
    for r in (a, b):
        assert isinstance(r.error, udptcp.SecureHandshakeError), r.error
        assert r.elapsed < 3


async def test_symmetric_nats_without_turn_fail_within_the_timeout(
    make_lab: Callable[..., KernelEnv],
) -> None:
    env = await make_lab("symmetric", "symmetric").__aenter__()
    a, b = await connect_pair(env, timeout=2.0)
    for r in (a, b):
        assert isinstance(r.error, udptcp.NATTraversalError)
        assert r.elapsed <= 2.0
        named = {(x.kind, x.address[0]) for x in r.error.attempts}
        assert ("observed", "10.201.0.11") in named or ("observed", "10.201.0.12") in named
        assert all(x.outcome == "no answer" and x.sent > 1 for x in r.error.attempts)


@needs_coturn
@pytest.mark.parametrize("kinds", [("symmetric", "symmetric"), ("cone", "symmetric")])
async def test_turn_relays_when_no_direct_path_opens(
    make_lab: Callable[..., KernelEnv], kinds: tuple[str, str]
) -> None:
    env = await make_lab(*kinds, turn=True).__aenter__()
    a, b = await connect_pair(env, payload=500_000, timeout=6)
    for r in (a, b):
        assert r.error is None, r.error
        assert r.path == "relayed" and r.intact


@needs_coturn
async def test_cone_nats_with_turn_configured_still_go_direct(
    make_lab: Callable[..., KernelEnv],
) -> None:
    env = await make_lab("cone", "cone", turn=True).__aenter__()
    a, b = await connect_pair(env, payload=10_000, timeout=5)
    assert (a.path, b.path) == ("direct", "direct")
    assert a.nat["mapped_address"][0] in ("10.201.0.11", "10.201.0.12")  # STUN's view


async def test_an_idle_connection_outlives_the_nat_binding_timeout(
    make_lab: Callable[..., KernelEnv],
) -> None:
    """conntrack forgets an idle UDP flow after 2 s here; binding maintenance (every 0.8 s)
    keeps it, on both sides, through 5 s of silence."""
    env = await make_lab("cone", "cone", binding_timeout=2).__aenter__()
    pairs: list[object] = []
    a, b = await connect_pair(env, timeout=5, config=udptcp.Config(nat_keepalive=0.8), keep=pairs)
    assert (a.path, b.path) == ("direct", "direct")
    arrived, latency = await idle_then_message(pairs, idle=5.0)
    assert arrived == [True, True]
    print(f"after 5 s idle: next message in {latency[0]:.4f} s / {latency[1]:.4f} s")
    for _, writer in pairs:  # type: ignore[misc]
        writer.close()


@needs_coturn
def test_nat_check_reports_mapping_and_filtering(make_lab: Callable[..., KernelEnv]) -> None:
    """``python -m udptcp nat-check`` from behind each kind of NAT (coturn listens on two
    addresses, so it runs the RFC 5780 tests)."""
    for kind, mapping in (
        ("cone", "endpoint-independent"),
        ("symmetric", "address-and-port-dependent"),
    ):
        env = make_lab(kind, "cone", turn=True)
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                env.lab.peers[0],
                sys.executable,
                "-m",
                "udptcp",
                "nat-check",
                "--stun",
                env.lab.stun,
                "--timeout",
                "0.5",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["mapped"][0] == "10.201.0.11"
        assert report["mapping"] == mapping
        assert report["filtering"] == "address-and-port-dependent"
