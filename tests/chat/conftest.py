"""Fixtures for the chat example's tests: every async test runs on both loops.

The chat lives in ``examples/chat`` (an example, not part of the installed package), so the
repository root goes on ``sys.path`` for ``import examples.chat``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvloop

from udptcp.aio.endpoint import close_endpoints

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest_asyncio.fixture(autouse=True, loop_scope="function")
async def _close_endpoints() -> AsyncIterator[None]:
    """Close whatever a test left open (clients' TIME-WAIT connections keep endpoints)."""
    yield
    close_endpoints()
