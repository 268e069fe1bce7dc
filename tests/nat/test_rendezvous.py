"""The rendezvous service: pairing by session, a third peer refused, malformed datagrams
dropped and counted, sessions expiring, a lost "start" repeated, the start synchronised by
the measured RTTs."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from udptcp.nat import rendezvous as rv


class FakePeer:
    """A peer speaking the rendezvous protocol on a plain UDP socket."""

    def __init__(self, server: tuple[str, int], ident: str, *, pong_delay: float = 0.0):
        self.server = server
        self.ident = ident
        self.pong_delay = pong_delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.messages: list[tuple[float, dict[str, Any]]] = []
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sock.fileno(), self._on_readable)
        self.loop = loop

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendto(json.dumps({"v": 1, **message}).encode(), self.server)

    def register(self, session: str = "s", **candidates: Any) -> None:
        self.send(
            {
                "op": "register",
                "session": session,
                "peer": self.ident,
                "candidates": candidates or {"host": [["10.0.0.1", 4000]]},
            }
        )

    def _on_readable(self) -> None:
        data, _ = self.sock.recvfrom(4096)
        message = json.loads(data)
        self.messages.append((self.loop.time(), message))
        if message["op"] == "ping":
            self.loop.call_later(
                self.pong_delay, self.send, {"op": "pong", "nonce": message["nonce"]}
            )

    def ops(self) -> list[str]:
        return [m["op"] for _, m in self.messages]

    async def wait_for(self, op: str, timeout: float = 3.0) -> dict[str, Any]:
        deadline = self.loop.time() + timeout
        while True:
            for _, m in self.messages:
                if m["op"] == op:
                    return m
            assert self.loop.time() < deadline, f"no {op!r} in {self.ops()}"
            await asyncio.sleep(0.005)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


@pytest_asyncio.fixture(loop_scope="function")
async def server() -> AsyncIterator[tuple[tuple[str, int], rv.RendezvousServer]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: rv.RendezvousServer(ttl=0.5, seed=1), local_addr=("127.0.0.1", 0)
    )
    yield transport.get_extra_info("sockname"), protocol
    transport.close()


async def test_two_peers_of_a_session_are_paired_and_started(server: Any) -> None:
    addr, protocol = server
    a, b = FakePeer(addr, "peer-a"), FakePeer(addr, "peer-b")
    a.register(srflx=["192.0.2.1", 5000])
    assert (await a.wait_for("waiting"))["session"] == "s"
    b.register(relay=["198.51.100.1", 6000])
    start_a, start_b = await a.wait_for("start"), await b.wait_for("start")
    assert (start_a["role"], start_b["role"]) == ("a", "b")
    assert start_a["vports"] == start_b["vports"][::-1]
    assert start_a["vports"][0] != start_a["vports"][1]
    # Each hears the other's candidates and the address the rendezvous saw it at.
    assert start_a["peer"]["observed"] == list(b.sock.getsockname())
    assert start_a["peer"]["relay"] == ["198.51.100.1", 6000]
    assert start_b["peer"]["srflx"] == ["192.0.2.1", 5000]
    assert start_b["you"] == list(b.sock.getsockname())
    assert protocol.stats["paired"] == 1 and protocol.stats["started"] == 1
    a.close()
    b.close()


async def test_a_third_peer_is_refused(server: Any) -> None:
    addr, protocol = server
    peers = [FakePeer(addr, f"p{i}") for i in range(3)]
    peers[0].register()
    peers[1].register()
    await peers[1].wait_for("start")
    peers[2].register()
    error = await peers[2].wait_for("error")
    assert error["reason"] == "session full"
    assert "start" not in peers[2].ops()
    assert protocol.stats["refused"] == 1
    for p in peers:
        p.close()


async def test_malformed_datagrams_are_dropped_and_counted(server: Any) -> None:
    addr, protocol = server
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bad = [
        b"not json",
        b"\xff\xfe",
        json.dumps({"v": 2, "op": "register"}).encode(),
        json.dumps({"v": 1, "op": "explode"}).encode(),
        json.dumps({"v": 1, "op": "register", "session": "", "peer": "x"}).encode(),
        json.dumps({"v": 1, "op": "register", "session": "s", "peer": "x" * 65}).encode(),
        json.dumps(
            {
                "v": 1,
                "op": "register",
                "session": "s",
                "peer": "x",
                "candidates": {"host": [["nope", 1]]},
            }
        ).encode(),
        json.dumps(
            {
                "v": 1,
                "op": "register",
                "session": "s",
                "peer": "x",
                "candidates": {"srflx": ["1.2.3.4", 0]},
            }
        ).encode(),
        b"[" * 5000,
        json.dumps([1, 2, 3]).encode(),
    ]
    for data in bad:
        junk.sendto(data, addr)
    for _ in range(200):
        if protocol.stats["malformed"] == len(bad):
            break
        await asyncio.sleep(0.005)
    assert protocol.stats["malformed"] == len(bad)
    assert protocol.sessions == {}
    junk.close()


async def test_a_waiting_session_expires(server: Any) -> None:
    addr, protocol = server
    a = FakePeer(addr, "a")
    a.register()
    await a.wait_for("waiting")
    assert "s" in protocol.sessions
    for _ in range(300):
        if "s" not in protocol.sessions:
            break
        await asyncio.sleep(0.01)
    assert "s" not in protocol.sessions and protocol.stats["expired"] == 1
    # The name is free again: two new peers pair under it.
    b, c = FakePeer(addr, "b"), FakePeer(addr, "c")
    b.register()
    c.register()
    assert (await c.wait_for("start"))["role"] == "b"
    for p in (a, b, c):
        p.close()


async def test_a_lost_start_is_repeated_on_the_next_register(server: Any) -> None:
    addr, _ = server
    a, b = FakePeer(addr, "a"), FakePeer(addr, "b")
    a.register()
    b.register()
    first = await b.wait_for("start")
    b.messages.clear()
    b.register()
    again = await b.wait_for("start")
    assert again == first
    a.close()
    b.close()


async def test_the_start_reaches_both_peers_together(server: Any) -> None:
    """The peer with the shorter RTT gets its start (RTT_long - RTT_short) / 2 later."""
    addr, _ = server
    near = FakePeer(addr, "near")
    far = FakePeer(addr, "far", pong_delay=0.2)  # answers pings 200 ms late: a long RTT
    near.register()
    far.register()
    await near.wait_for("start")
    await far.wait_for("start")
    t_near = next(t for t, m in near.messages if m["op"] == "start")
    t_far = next(t for t, m in far.messages if m["op"] == "start")
    # Sent to "far" at once, to "near" ~100 ms later: on a real path far's start would take
    # its RTT/2 longer to arrive, so both would get it at the same moment.
    assert 0.06 <= t_near - t_far <= 0.3
    near.close()
    far.close()


def test_candidates_are_checked() -> None:
    assert rv.parse_candidates({"host": [["::1", 5]], "srflx": None}) == {
        "host": [["::1", 5]],
        "srflx": None,
        "relay": None,
    }
    for bad in (
        {"host": [["1.2.3.4", 70000]]},
        {"host": [["1.2.3.4", 5]] * 9},
        {"relay": ["example.org", 5]},
        {"host": "1.2.3.4"},
        [],
    ):
        with pytest.raises(rv.Malformed):
            rv.parse_candidates(bad)


async def test_python_m_udptcp_rendezvous_pairs_peers_and_stops_on_sigterm() -> None:
    import os
    import signal
    import sys

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "udptcp", "rendezvous", "--listen", f"127.0.0.1:{port}",
        "--stats-interval", "0.1",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), 10)
        assert b"rendezvous listening on" in first
        a, b = FakePeer(("127.0.0.1", port), "a"), FakePeer(("127.0.0.1", port), "b")
        a.register()
        b.register()
        assert (await a.wait_for("start"))["peer"]["observed"] == list(b.sock.getsockname())
        a.close()
        b.close()
        while b"'started': 1" not in (line := await asyncio.wait_for(process.stdout.readline(), 5)):
            assert line, "the rendezvous ended without printing its counters"
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 10)
    assert code == 0


async def test_without_aioice_a_peer_connection_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    import udptcp

    for name in ("aioice", "aioice.stun", "aioice.turn"):
        monkeypatch.setitem(sys.modules, name, None)  # "import aioice" now fails
    with pytest.raises(ImportError, match=r"pip install 'udptcp\[nat\]'"):
        await udptcp.open_peer_connection("s", "127.0.0.1:9")
