"""examples/tls_echo.py runs on both loops: TLS verified, the message hidden, a stranger refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_tls_example_echoes_over_verified_tls_and_exits_by_itself(loop: str) -> None:
    argv = [sys.executable, str(ROOT / "examples" / "tls_echo.py")]
    if loop == "uvloop":
        argv.append("--uvloop")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "client: TLSv1." in out and "server certificate verified" in out
    assert "(('commonName', 'localhost'),)" in out
    assert "client: echoed back b'hello over TLS over TCP over UDP'" in out
    assert "the message in the clear in any: False" in out
    assert "SSLCertVerificationError: self-signed certificate" in out
