"""examples/secure_echo.py runs, shows the handshake's outcome, and hides the message."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_secure_example_hides_the_message_and_exits_by_itself(
    loop: str, tmp_path: Path
) -> None:
    key = tmp_path / "server.key"
    argv = [sys.executable, str(ROOT / "examples" / "secure_echo.py"), "--key", str(key)]
    if loop == "uvloop":
        argv.append("--uvloop")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for run in range(2):  # the first run makes the key file, the second loads it
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        assert ("saved a new identity" in out) is (run == 0)
        assert "client: handshake NK, datagrams sealed with ChaCha20-Poly1305" in out
        assert "echoed back b'the eagle lands at midnight'" in out
        assert "the message in them: False" in out
        assert "SecureHandshakeError: secure handshake refused: " in out
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
