"""examples/nat_chat: two peers behind (emulated) NATs chat over one punched connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import udptcp
from examples.nat_chat.chat import chat
from udptcp.tools import natemu
from udptcp.tools.natcases import EmulatorEnv

ALICE = udptcp.Identity.from_private_bytes(bytes(range(1, 33)))
BOB = udptcp.Identity.from_private_bytes(bytes(range(101, 133)))


@pytest.mark.parametrize("secure", [False, True])
async def test_two_peers_chat_through_their_nats(secure: bool) -> None:
    keys: dict[str, dict[str, Any]] = {"alice": {}, "bob": {}}
    if secure:
        keys = {
            "alice": {"identity": ALICE, "peer_key": BOB.public_key},
            "bob": {"identity": BOB, "peer_key": ALICE.public_key},
        }
    async with EmulatorEnv(natemu.CONE, natemu.CONE) as env:
        shown: dict[str, list[str]] = {"alice": [], "bob": []}
        heard = {name: asyncio.Event() for name in shown}

        def show(name: str):  # type: ignore[no-untyped-def]
            def add(line: str) -> None:
                shown[name].append(line)
                if ":" in line and not line.startswith("*"):
                    heard[name].set()

            return add

        async def lines(name: str, other: str) -> AsyncIterator[str]:
            yield f"hello from {name}\n"
            await heard[name].wait()  # stay until the other side's line arrived

        paths = await asyncio.wait_for(
            asyncio.gather(
                chat(
                    "tea",
                    env.rendezvous,
                    lines("alice", "bob"),
                    show("alice"),
                    name="alice",
                    sock=env.peer_socket(1),
                    timeout=5,
                    **keys["alice"],
                ),
                chat(
                    "tea",
                    env.rendezvous,
                    lines("bob", "alice"),
                    show("bob"),
                    name="bob",
                    sock=env.peer_socket(2),
                    timeout=5,
                    **keys["bob"],
                ),
            ),  # fmt: skip
            10,
        )
    assert paths == ["direct", "direct"]
    assert "bob: hello from bob" in shown["alice"]
    assert "alice: hello from alice" in shown["bob"]
    assert shown["alice"][0].startswith("* connected (direct")
    assert ("secure (IK)" in shown["alice"][0]) is secure
    assert shown["alice"][-1] == "* the other peer left"
