"""Shared fixtures for the asyncio end-to-end tests: every test runs on both loops.

pytest-asyncio 1.x parametrizes each async test over the loop factories this hook returns,
so every test id ends in ``[asyncio]`` or ``[uvloop]``. Helpers live in ``aio_helpers``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import uvloop

from udptcp.aio.endpoint import close_endpoints


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest_asyncio.fixture(autouse=True, loop_scope="function")
async def _close_endpoints() -> AsyncIterator[None]:
    """Close whatever a test left open (TIME-WAIT connections keep endpoints alive)."""
    yield
    close_endpoints()
