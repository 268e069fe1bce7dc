"""The README tells the truth: its commands are what CI runs, and the demo works."""

from __future__ import annotations

import re
from pathlib import Path

from support.demo import run_demo

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
    out = run_demo("--loss", "0.1", "--seed", "3")
    # The handshake and release fields, named x, y, u, w as the legend explains.
    assert re.search(r"client -> server  SYN +seq=x\b", out)
    assert re.search(r"server -> client  SYN,ACK +seq=y  ack=x\+1\b", out)
    assert re.search(r"client -> server  ACK +seq=x\+1  ack=y\+1\b", out)
    assert re.search(r"client -> server  FIN,ACK +seq=u\b", out)
    assert re.search(r"server -> client  ACK +seq=y\+89  ack=u\+1\b", out)
    assert re.search(r"server -> client  FIN,ACK +seq=w  ack=u\+1\b", out)
    assert re.search(r"client -> server  ACK +seq=u\+1  ack=w\+1\b", out)
    assert "x = the client's initial sequence number" in out  # the legend
    # Both sides' states, the passive side's included.
    for side, change in [
        ("server", "LISTEN -> SYN-RECEIVED"),
        ("server", "SYN-RECEIVED -> ESTABLISHED"),
        ("server", "ESTABLISHED -> CLOSE-WAIT"),
        ("server", "CLOSE-WAIT -> LAST-ACK"),
        ("server", "LAST-ACK -> CLOSED"),
        ("client", "CLOSED -> SYN-SENT"),
        ("client", "SYN-SENT -> ESTABLISHED"),
        ("client", "ESTABLISHED -> FIN-WAIT-1"),
        ("client", "FIN-WAIT-1 -> FIN-WAIT-2"),
        ("client", "FIN-WAIT-2 -> TIME-WAIT"),
        ("client", "TIME-WAIT -> CLOSED"),
    ]:
        assert re.search(rf"\ds  {side}: {change}\n", out), change
    # SYN options, the shortened timers, the loss and its repair, TIME-WAIT's length.
    assert "options: MSS 1452, window scale" in out
    assert "RTO 300 ms at first and never below 50 ms" in out
    assert "TIME-WAIT lasts 2×MSL = 2 s" in out
    assert "LOST by the relay" in out
    assert "(resent: no ACK before the retransmission timer (RTO) expired)" in out
    assert "TIME-WAIT lasted 2.00 s" in out
    assert "server says: goodbye!" in out
    assert "seed notes" not in out and "DESIGN " not in out


def test_demo_prints_the_same_transcript_for_the_same_seed():
    args = ("--loss", "0.3", "--seed", "2", "--verbose")
    first, second = run_demo(*args), run_demo(*args)
    assert first == second
    # --verbose shows the chat's data and ACKs, and this seed's losses repair themselves.
    assert re.search(r"client -> server  PSH,ACK +seq=x\+1  ack=y\+1  len=14\b", first)
    assert "tail-loss probe" in first and "duplicate ACK: answers a repeated FIN" in first
    assert run_demo("--loss", "0.3", "--seed", "4") != first
