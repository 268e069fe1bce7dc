"""A registered congestion controller owns its window: only its own methods write it.

Loss recovery tells it what happened (ACK, loss, partial ACK, further duplicate ACKs,
proportional rate reduction, timeouts, undo, handshake loss, a new segment size, RTT
samples) and never writes ``cwnd`` or ``ssthresh`` itself.
"""

from __future__ import annotations

import ast
import pathlib
import sys
from typing import Any

import pytest

from udptcp.core.config import Config
from udptcp.core.congestion import CongestionControl, Cubic, NewReno, register
from udptcp.core.connection import Connection
from udptcp.tools.simnet import connected_pair

UDPTCP = pathlib.Path(__file__).resolve().parents[2] / "udptcp"


def test_no_module_but_congestion_writes_a_controllers_window() -> None:
    writes = []
    for path in sorted(UDPTCP.rglob("*.py")):
        if path.name == "congestion.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for t in targets:
                if isinstance(t, ast.Attribute) and t.attr in ("cwnd", "ssthresh"):
                    writes.append(f"{path.relative_to(UDPTCP)}:{node.lineno}")
    assert writes == []


def _guarded(base: type[CongestionControl]) -> type[CongestionControl]:
    """``base`` with cwnd/ssthresh as properties that note which file wrote them, and every
    ``on_*`` call counted."""

    class Guarded(base):  # type: ignore[valid-type,misc]
        writers: set[str] = set()
        calls: dict[str, int] = {}

        def _note(self) -> None:
            Guarded.writers.add(pathlib.Path(sys._getframe(2).f_code.co_filename).name)

        @property  # type: ignore[override]
        def cwnd(self) -> int:
            return self._w

        @cwnd.setter
        def cwnd(self, value: int) -> None:
            self._note()
            self._w = value

        @property  # type: ignore[override]
        def ssthresh(self) -> int:
            return self._s

        @ssthresh.setter
        def ssthresh(self, value: int) -> None:
            self._note()
            self._s = value

        def __getattribute__(self, name: str) -> Any:
            if name.startswith("on_"):
                calls = Guarded.calls
                calls[name] = calls.get(name, 0) + 1
            return super().__getattribute__(name)

    return Guarded


def _lossy_transfer(config: Config, total: int, drop: set[int]) -> tuple[Connection, Connection]:
    """``total`` bytes from a to b; the data segments numbered in ``drop`` are lost once."""
    a, b = connected_pair(config)
    now = 0.0
    a.send(b"x" * total, now)
    got = 0
    n = 0
    for _ in range(100_000):
        out = []
        for seg in a.take_segments():
            if seg.payload:
                n += 1
                if n in drop:
                    continue
            out.append(seg)
        for seg in out:
            b.receive(seg, now)
        got += sum(len(getattr(ev, "data", b"")) for ev in b.take_events())
        back = b.take_segments()
        for seg in back:
            a.receive(seg, now)
        if got >= total:
            break
        if not out and not back:
            deadlines = [t for t in (a.get_timer(), b.get_timer()) if t is not None]
            now = max(now + 0.001, min(deadlines)) if deadlines else now + 0.001
            a.handle_timer(now)
            b.handle_timer(now)
        else:
            now += 0.001
    assert got == total, f"{got} of {total} delivered"
    return a, b


@pytest.mark.parametrize("base", [NewReno, Cubic], ids=["newreno", "cubic"])
@pytest.mark.parametrize("sack", [True, False], ids=["sack", "nosack"])
def test_recovery_moves_the_window_only_through_the_controller(
    base: type[CongestionControl], sack: bool
) -> None:
    guarded = _guarded(base)
    name = f"guarded-{base.name}"
    register(name, guarded)
    config = Config(congestion_control=name, sack=sack, receive_buffer=1 << 20)
    # Single losses, a burst, and (a long way on) a loss of a retransmission's neighbours.
    _lossy_transfer(config, 3_000_000, {30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 400, 900})
    assert guarded.writers == {"congestion.py"}, guarded.writers
    assert guarded.calls.get("on_loss", 0) >= 1
    assert guarded.calls.get("on_ack", 0) >= 1
    assert guarded.calls.get("on_rtt_sample", 0) >= 1
    if sack:
        assert guarded.calls.get("on_recovery_window", 0) >= 1
    else:
        assert guarded.calls.get("on_partial_ack", 0) + guarded.calls.get("on_timeout", 0) >= 1


def test_a_path_mtu_step_reaches_the_controller_as_a_new_segment_size() -> None:
    guarded = _guarded(NewReno)
    register("guarded-pmtu", guarded)
    config = Config(congestion_control="guarded-pmtu", pmtu_max=9000, receive_buffer=1 << 20)
    a, _b = _lossy_transfer(config, 2_000_000, set())
    assert guarded.calls.get("on_mss_change", 0) >= 1
    assert a.cc.mss == a.stats()["mss"]
    assert guarded.writers == {"congestion.py"}, guarded.writers
