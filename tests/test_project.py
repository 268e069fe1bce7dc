"""The README tells the truth: its commands are what CI runs, and the demo works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(python3 -m venv[^\n]*)\n```", text)


def test_readme_has_three_one_line_commands_and_ci_runs_the_test_one_verbatim():
    commands = _readme_commands()
    assert len(commands) == 3, commands
    demo, tests, bench = commands
    assert "examples/demo.py" in demo and "pytest" in tests and "-m benchmarks" in bench
    assert tests in (ROOT / ".ci" / "run").read_text()
    assert "'.[bench]'" in bench  # the peers come from the bench extra


def test_demo_shows_the_seed_sequences_and_exits_by_itself():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--loss", "0.1", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    # The seed's fields, named as the seed names them.
    assert re.search(r"client -> server  SYN +seq=x\b", out)
    assert re.search(r"server -> client  SYN,ACK +seq=y  ack=x\+1\b", out)
    assert re.search(r"client -> server  ACK +seq=x\+1  ack=y\+1\b", out)
    assert re.search(r"client -> server  FIN,ACK +seq=u\b", out)
    assert re.search(r"server -> client  ACK +seq=\S+  ack=u\+1\b", out)
    assert re.search(r"server -> client  FIN,ACK +seq=w  ack=u\+1\b", out)
    assert re.search(r"client -> server  ACK +seq=u\+1  ack=w\+1\b", out)
    assert "FIN-WAIT-1 -> FIN-WAIT-2 -> TIME-WAIT" in out
    assert "reaches CLOSED" in out
    assert "server: goodbye!" in out
    assert "lost by the relay" in out  # the demo's relay really loses segments
