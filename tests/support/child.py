"""Other processes for tests: a udptcp echo server of its own (for tests that kill it), and a
Python snippet run under a chosen ``UDPTCP_PURE`` that answers in JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Prints its port, then serves until killed.
_CHILD_SERVER = """
import asyncio, udptcp

async def main():
    async def echo(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)

    server = await udptcp.start_server(echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def echo_server_process() -> AsyncIterator[int]:
    """Start the server, yield its UDP port, and kill it on the way out: no FIN, no RST,
    so its port answers ICMP port unreachable from then on."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD_SERVER, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        yield int(await asyncio.wait_for(child.stdout.readline(), 20))
    finally:
        child.kill()
        await child.wait()


def python_json(code: str, *args: str, pure: str) -> Any:
    """Run ``code`` (with ``args`` in ``sys.argv``) in a new interpreter from the repository
    root, ``UDPTCP_PURE`` set to ``pure`` ("1": the pure-Python twins, "": what is built),
    and return the JSON it prints."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, "UDPTCP_PURE": pure},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return json.loads(out)
