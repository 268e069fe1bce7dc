"""Fixtures for the NAT traversal tests.

Async tests run on both loops, as in ``tests/aio``, except those marked ``one_loop`` (the
slow ones: relays, timeouts, the kernel lab), which run on the default loop only. Tests
that need coturn, aioice, root or nftables skip with the reason where they are missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import uvloop

from udptcp.aio.endpoint import close_endpoints

pytest.importorskip("aioice", reason="NAT traversal needs the nat extra (aioice)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "one_loop: run on the default asyncio loop only")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    if item.get_closest_marker("one_loop") is not None:
        return {"asyncio": asyncio.new_event_loop}
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest_asyncio.fixture(autouse=True, loop_scope="function")
async def _close_endpoints() -> AsyncIterator[None]:
    """Close whatever a test left open (TIME-WAIT connections keep endpoints alive)."""
    yield
    close_endpoints()
