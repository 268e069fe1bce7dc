"""The asyncio adapter (the second of three layers): endpoint, transport, server and streams."""

from __future__ import annotations

from .api import create_connection, create_server, open_connection, start_server
from .endpoint import Endpoint, close_endpoints, open_endpoints
from .server import Server
from .transport import Transport

__all__ = [
    "Endpoint",
    "Server",
    "Transport",
    "close_endpoints",
    "create_connection",
    "create_server",
    "open_connection",
    "open_endpoints",
    "start_server",
]
