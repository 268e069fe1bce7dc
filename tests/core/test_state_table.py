"""The (state, cause) table of ``udptcp.core.state`` decides every transition.

An illegal move raises in every build, ``python -O`` included (an ``assert`` would vanish
there); the connection records each move with its cause; and no code in the core assigns
``state`` except the one transition function (and the constructor's starting state).
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

from udptcp.core.config import Config
from udptcp.core.connection import Connection
from udptcp.core.state import (
    TABLE,
    TRANSITIONS,
    Cause,
    IllegalTransition,
    LocalProtocolError,
    State,
    next_state,
)
from udptcp.tools.simnet import connected_pair

S, C = State, Cause
CORE = pathlib.Path(__file__).resolve().parents[2] / "udptcp" / "core"


def test_figure_5_arrows_are_in_the_table() -> None:
    assert next_state(S.CLOSED, C.ACTIVE_OPEN) is S.SYN_SENT
    assert next_state(S.LISTEN, C.RCV_SYN) is S.SYN_RECEIVED
    assert next_state(S.SYN_SENT, C.RCV_SYN_ACK) is S.ESTABLISHED
    assert next_state(S.SYN_SENT, C.RCV_SYN) is S.SYN_RECEIVED  # simultaneous open
    assert next_state(S.SYN_RECEIVED, C.RCV_ACK_OF_SYN) is S.ESTABLISHED
    assert next_state(S.ESTABLISHED, C.CLOSE) is S.FIN_WAIT_1
    assert next_state(S.ESTABLISHED, C.RCV_FIN) is S.CLOSE_WAIT
    assert next_state(S.FIN_WAIT_1, C.RCV_ACK_OF_FIN) is S.FIN_WAIT_2
    assert next_state(S.FIN_WAIT_1, C.RCV_FIN) is S.CLOSING  # simultaneous close
    assert next_state(S.FIN_WAIT_2, C.RCV_FIN) is S.TIME_WAIT
    assert next_state(S.CLOSING, C.RCV_ACK_OF_FIN) is S.TIME_WAIT
    assert next_state(S.CLOSE_WAIT, C.CLOSE) is S.LAST_ACK
    assert next_state(S.LAST_ACK, C.RCV_ACK_OF_FIN) is S.CLOSED
    assert next_state(S.TIME_WAIT, C.TIMEOUT) is S.CLOSED


def test_time_wait_ignores_rst_and_closed_goes_nowhere_but_syn_sent() -> None:
    with pytest.raises(IllegalTransition):
        next_state(S.TIME_WAIT, C.RCV_RST)  # RFC 1337
    assert TRANSITIONS[S.CLOSED] == {S.SYN_SENT}
    assert all(old is not S.CLOSED or new is S.SYN_SENT for (old, _c), new in TABLE.items())


def test_an_illegal_move_is_a_local_protocol_error_naming_state_and_cause() -> None:
    with pytest.raises(LocalProtocolError, match="SYN-SENT.*rcv FIN") as info:
        next_state(S.SYN_SENT, C.RCV_FIN)
    assert isinstance(info.value, IllegalTransition)
    assert (info.value.state, info.value.cause) == (S.SYN_SENT, C.RCV_FIN)


def test_a_connection_records_each_move_with_its_cause() -> None:
    a, b = connected_pair(Config())
    a.close(0.0)
    for seg in a.take_segments():
        b.receive(seg, 0.0)
    b.close(0.0)
    for seg in b.take_segments():
        a.receive(seg, 0.0)
    for seg in a.take_segments():
        b.receive(seg, 0.0)
    assert a.transitions == [
        (S.CLOSED, None),
        (S.SYN_SENT, C.ACTIVE_OPEN),
        (S.ESTABLISHED, C.RCV_SYN_ACK),
        (S.FIN_WAIT_1, C.CLOSE),
        (S.FIN_WAIT_2, C.RCV_ACK_OF_FIN),
        (S.TIME_WAIT, C.RCV_FIN),
    ]
    assert b.transitions == [
        (S.LISTEN, C.PASSIVE_OPEN),
        (S.SYN_RECEIVED, C.RCV_SYN),
        (S.ESTABLISHED, C.RCV_ACK_OF_SYN),
        (S.CLOSE_WAIT, C.RCV_FIN),
        (S.LAST_ACK, C.CLOSE),
        (S.CLOSED, C.RCV_ACK_OF_FIN),
    ]
    # state_history keeps its old shape: the states alone.
    assert a.state_history == [s for s, _ in a.transitions]
    assert b.state_history == [s for s, _ in b.transitions]


_FORCE_ILLEGAL = """
import sys
assert False, "asserts must be off here"
from udptcp.core.config import Config
from udptcp.core.connection import Connection, IllegalTransition, Cause
conn = Connection.connect(Config(), local_port=1, remote_port=2, iss=7, mss=1400, now=0.0)
try:
    conn._transition(Cause.RCV_FIN)  # SYN-SENT has no FIN arrow
except IllegalTransition as exc:
    print("raised:", exc, conn.state.value)
    sys.exit(0)
print("no error:", conn.state.value)
sys.exit(1)
"""


def test_an_illegal_transition_raises_under_python_dash_o() -> None:
    root = CORE.parents[1]
    proc = subprocess.run(
        [sys.executable, "-O", "-c", _FORCE_ILLEGAL],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "raised: no transition from SYN-SENT on 'rcv FIN' SYN-SENT" in proc.stdout


def _state_writes(path: pathlib.Path) -> list[str]:
    """Functions in ``path`` that assign to an attribute named ``state``/``state_history``."""
    tree = ast.parse(path.read_text())
    found: list[str] = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for t in targets:
                if isinstance(t, ast.Attribute) and t.attr in ("state", "state_history"):
                    found.append(f"{path.name}:{func.name}")
    return found


def test_only_the_transition_function_moves_the_state() -> None:
    writes = sorted({w for p in sorted(CORE.glob("*.py")) for w in _state_writes(p)})
    # The constructor sets the starting state; _transition makes every move after it.
    assert {w.split(":")[1] for w in writes} == {"__init__", "_transition"}, writes
    assert len([w for w in writes if w.endswith(":_transition")]) == 1, writes


def test_accept_starts_in_listen_without_writing_the_state() -> None:
    from udptcp.core.segment import SYN, Options, Segment

    syn = Segment(80, 4000, 300, 0, SYN, 65535, Options(mss=1400))
    conn = Connection.accept(Config(), syn, iss=100, mss=1400, now=0.0)
    assert conn.transitions[:2] == [(S.LISTEN, C.PASSIVE_OPEN), (S.SYN_RECEIVED, C.RCV_SYN)]


def test_time_wait_deadline_is_readable_under_its_former_name() -> None:
    a, b = connected_pair(Config(msl=30.0))
    a.close(5.0)
    for seg in a.take_segments():
        b.receive(seg, 5.0)
    b.close(5.0)
    for seg in b.take_segments():
        a.receive(seg, 5.0)
    assert a.state is S.TIME_WAIT
    assert a._close_deadline == a.timers.close == 5.0 + 2 * 30.0
