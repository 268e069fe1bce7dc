"""What both sides of :mod:`udptcp.tools.losslab` share: the cases, the results, the
seeded payload and the subprocess plumbing (children report in JSON lines)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "CHUNK",
    "LINUX_STACKS",
    "NETNS_PREFIX",
    "START_TIMEOUT",
    "Case",
    "Transfer",
    "lab_unavailable",
    "payload_for",
]

#: Prefix of the namespaces a Linux run creates (the rest is random).
NETNS_PREFIX = "udptcp-lab-"
#: Linux stacks by name: the congestion control set on the sending socket.
LINUX_STACKS = {"linux-cubic": "cubic", "linux-reno": "reno", "linux-bbr": "bbr"}
CHUNK = 64 * 1024
START_TIMEOUT = 20.0


@dataclass(frozen=True)
class Case:
    """One path and transfer. ``impairment`` applies to both directions (relay syntax)."""

    name: str
    impairment: str
    size: int = 20_000_000
    cap: float = 60.0
    seed: int = 1
    trace: float = 0.0
    """Seconds between samples of the sender's window and counters (0: none)."""


@dataclass
class Transfer:
    """What one stack did on one case (rates in bytes/s, times in seconds)."""

    case: str
    stack: str
    size: int
    received: int = 0
    seconds: float = 0.0
    complete: bool = False
    intact: bool = False
    retransmits: int = 0
    recoveries: int = 0
    rtos: int = 0
    tail_loss_probes: int = 0
    cwnd_segments: float = 0.0
    srtt_ms: float = 0.0
    counters: dict[str, Any] = field(default_factory=dict)
    wire: dict[str, Any] = field(default_factory=dict)
    load: str = ""
    error: str = ""
    trace: list[dict[str, float]] = field(default_factory=list)
    """Samples over time (``Case.trace``): t, cwnd and ssthresh in segments, retransmissions,
    recovery state."""

    @property
    def goodput(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "goodput": self.goodput}


def payload_for(case: Case) -> bytes:
    """The bytes both stacks send on ``case``: seeded, so every run sends the same."""
    return random.Random(f"udptcp.losslab:{case.seed}").randbytes(case.size)


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def lab_unavailable() -> str | None:
    """Why the Linux half cannot run here, or None."""
    if sys.platform != "linux":
        return "the Linux reference needs Linux"
    if os.geteuid() != 0:
        return "the Linux reference needs root (network namespaces, TUN devices)"
    if not os.path.exists("/dev/net/tun"):
        return "the Linux reference needs /dev/net/tun"
    try:
        subprocess.run(["ip", "-V"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return "the Linux reference needs the ip command (iproute2)"
    return None


# ---------------------------------------------------------------------- subprocesses


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


async def _spawn(argv: list[str]) -> asyncio.subprocess.Process:
    env = dict(os.environ)
    # The child imports the same udptcp as this process, wherever it came from.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def _json_line(proc: asyncio.subprocess.Process, key: str, timeout: float) -> Any:
    """The value under ``key`` in the next JSON line carrying it; raises on exit or error."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), max(deadline - time.monotonic(), 0))
        if not line:
            err = b""
            if proc.stderr is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    err = await asyncio.wait_for(proc.stderr.read(), 2)
            raise RuntimeError(f"child exited: {err.decode(errors='replace')[-800:]}")
        with contextlib.suppress(json.JSONDecodeError):
            message = json.loads(line)
            if key in message:
                return message[key]
            if "error" in message:
                raise RuntimeError(message["error"])


async def _finish(proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    if proc.returncode is None:
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


def _wire_summary(stats: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("forward", "backward"):
        d = stats[name]
        out[name] = {
            "packets": d["received"],
            "lost": d["dropped_loss"],
            "loss_rate": d["dropped_loss"] / d["received"] if d["received"] else 0.0,
            **({"largest": d["wire_largest"]} if "wire_largest" in d else {}),
            **({"over_mtu": d["wire_over_mtu"]} if "wire_over_mtu" in d else {}),
            **({"data_segments": d["wire_tcp_data_segments"]} if "wire_largest" in d else {}),
            **({"data_segments_lost": d["wire_tcp_data_lost"]} if "wire_largest" in d else {}),
        }
    return out
