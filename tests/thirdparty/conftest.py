"""Fixtures for the third-party library tests: every async test runs on a drop-in loop.

pytest-asyncio parametrizes each async test over the loop factories this hook returns, so
each test runs twice, ids ending in ``[asyncio]`` (the drop-in loop on asyncio's selector
loop) and ``[uvloop]`` (the drop-in loop on uvloop). The libraries under test are used
through their public APIs only, exactly as an application uses them over TCP: the loop alone
moves their traffic onto udptcp. Closing the loop (pytest-asyncio's runner does it) closes
its udptcp endpoints. Helpers live in ``thirdparty_helpers``.
"""

from __future__ import annotations

from typing import Any

import pytest
from thirdparty_helpers import CONFIG

import udptcp


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    return {
        "asyncio": udptcp.loop_factory(config=CONFIG),
        "uvloop": udptcp.uvloop_factory(config=CONFIG),
    }
