"""Fixtures for the drop-in loop and TLS API tests.

Async tests here run on the two *plain* loops (``[asyncio]``, ``[uvloop]``): they exercise
``udptcp.create_connection(ssl=...)`` and friends directly, or build drop-in loops of their
own. Loops are closed by pytest-asyncio's runner, which closes their udptcp endpoints.
The certificate helpers are shared with the conformance suite.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "conformance"))
from conformance_helpers import Certs, make_certs  # noqa: E402


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A throwaway CA and a certificate for localhost / 127.0.0.1."""
    return make_certs(tmp_path_factory.mktemp("certs"))
