"""Punching on its own (no rendezvous): one simultaneous open fanned out to candidates,
bound to the peer's first plausible handshake segment, deaf to strangers."""

from __future__ import annotations

import asyncio
import socket

import pytest

import udptcp
from udptcp.aio.endpoint import Endpoint
from udptcp.core.segment import SYN, Segment, encode
from udptcp.nat.errors import Attempt
from udptcp.nat.punch import Punch
from udptcp.tools import natemu
from udptcp.tools.natcases import EmulatorEnv, connect_pair


def endpoint_on(ip: str) -> tuple[Endpoint, socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, 0))
    return Endpoint.for_socket(asyncio.get_running_loop(), sock), sock


def punch(endpoint: Endpoint, role: str, vports: tuple[int, int], *peers: tuple[str, int]) -> Punch:
    return Punch(
        endpoint,
        role=role,
        local_vport=vports[0],
        remote_vport=vports[1],
        direct=[Attempt("host", p) for p in peers],
        relayed=[],
        relay_delay=1.0,
        config=udptcp.Config(),
        protocol_factory=asyncio.Protocol,
    )


async def test_the_first_live_candidate_wins_and_dead_ones_are_reported() -> None:
    (ea, sa), (eb, sb) = endpoint_on("127.0.0.1"), endpoint_on("127.0.0.1")
    dead = ("127.0.0.1", 9)  # discard port: nothing answers
    pa = punch(ea, "a", (50000, 50001), dead, sb.getsockname())
    pb = punch(eb, "b", (50001, 50000), sa.getsockname())
    ta, tb = pa.start(), pb.start()
    assert ta._waiter is not None and tb._waiter is not None
    await asyncio.wait_for(asyncio.gather(ta._waiter, tb._waiter), 5)
    pa.stop()
    pb.stop()
    assert ta.get_extra_info("peername") == sb.getsockname()
    assert tb.get_extra_info("peername") == sa.getsockname()
    chosen = pa.chosen()
    assert chosen is not None and chosen.address == sb.getsockname()
    assert [a.outcome for a in pa.attempts] == ["no answer", "chosen"]
    assert pa.attempts[0].sent >= 1
    ta.abort()
    tb.abort()


async def test_a_stranger_with_the_right_virtual_ports_is_ignored() -> None:
    (ea, sa), (eb, sb) = endpoint_on("127.0.0.1"), endpoint_on("127.0.0.1")
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))  # not a candidate IP address
    stranger.setblocking(False)
    pa = punch(ea, "a", (50010, 50011), sb.getsockname())
    ta = pa.start()
    stranger.sendto(encode(Segment(50011, 50010, 1234, 0, SYN, 65535)), sa.getsockname())
    for _ in range(100):
        if ea.statistics().get("punch_foreign"):
            break
        await asyncio.sleep(0.01)
    # (b, not punching yet, answers our SYN with RST: dropped too, never refusing us.)
    assert ea.statistics()["punch_foreign"] == 1 and ea.statistics()["punch_dropped"] >= 1
    assert pa.bound is None
    with pytest.raises(BlockingIOError):
        stranger.recvfrom(100)  # no RST, no SYN,ACK: nothing at all
    # The real peer still gets through.
    pb = punch(eb, "b", (50011, 50010), sa.getsockname())
    tb = pb.start()
    assert ta._waiter is not None
    await asyncio.wait_for(ta._waiter, 5)
    pa.stop()
    pb.stop()
    assert ta.get_extra_info("peername") == sb.getsockname()
    ta.abort()
    tb.abort()
    stranger.close()


@pytest.mark.parametrize("other", ["symmetric", "cone"])
async def test_a_full_cone_nat_lets_even_a_symmetric_peer_in(other: str) -> None:
    full_cone = natemu.Behaviour(filtering="endpoint-independent")
    presets = {"symmetric": natemu.SYMMETRIC, "cone": natemu.CONE}
    async with EmulatorEnv(full_cone, presets[other]) as env:
        a, b = await connect_pair(env, payload=1000, timeout=5)
    assert (a.path, b.path) == ("direct", "direct"), (a.error, b.error)
    if other == "symmetric":
        # The full-cone side learned the symmetric side's new mapping (peer-reflexive).
        assert any(line.startswith("prflx") and "chosen" in line for line in a.nat["attempts"])
