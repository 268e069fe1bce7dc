"""The Linux side of :mod:`udptcp.tools.losslab`: kernel TCP between two network namespaces.

:func:`run_linux` makes the namespaces, joins them with :class:`udptcp.tools.tunpair.TunPair`
(every IP packet through the relay's impairment pipeline), moves a case's bytes with the
chosen congestion control and collects the sender's ``TCP_INFO``, its ``ss -tin`` line and
the namespace's ``TcpExt`` counters. The namespaces are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from .losslab_common import (
    CHUNK,
    LINUX_STACKS,
    NETNS_PREFIX,
    START_TIMEOUT,
    Case,
    Transfer,
    _finish,
    _json_line,
    _load,
    _python,
    _spawn,
    _wire_summary,
    payload_for,
)

__all__ = ["run_linux"]

ADDRESSES = ("10.200.9.1", "10.200.9.2")

#: TcpExt counters worth showing beside the sender's recovery figures.
TCPEXT_KEYS = (
    "TCPSackRecovery",
    "TCPRenoRecovery",
    "TCPSackRecoveryFail",
    "TCPLossProbes",
    "TCPLossProbeRecovery",
    "TCPTimeouts",
    "TCPSpuriousRTOs",
    "TCPLostRetransmit",
    "TCPFastRetrans",
    "TCPSlowStartRetrans",
    "TCPDSACKRecv",
    "TCPDSACKUndo",
    "TCPFullUndo",
    "TCPPartialUndo",
    "TCPLossUndo",
    "TCPSACKReorder",
    "TCPTSReorder",
)

# struct tcp_info (linux/tcp.h) up to tcpi_reord_seen: 8 u8, 24 u32, 4 u64, 6 u32, 4 u64,
# 2 u32, 2 u64, 2 u32.
_TCP_INFO = struct.Struct("=8B24I4Q6I4Q2I2Q2I")
_TCP_INFO_FIELDS = (
    "state ca_state retransmits probes backoff options wscale flags "
    "rto ato snd_mss rcv_mss unacked sacked lost retrans fackets last_data_sent "
    "last_ack_sent last_data_recv last_ack_recv pmtu rcv_ssthresh rtt rttvar snd_ssthresh "
    "snd_cwnd advmss reordering rcv_rtt rcv_space total_retrans pacing_rate "
    "max_pacing_rate bytes_acked bytes_received segs_out segs_in notsent_bytes min_rtt "
    "data_segs_in data_segs_out delivery_rate busy_time rwnd_limited sndbuf_limited "
    "delivered delivered_ce bytes_sent bytes_retrans dsack_dups reord_seen"
).split()
_TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)


async def _json_lines(
    proc: asyncio.subprocess.Process, keys: tuple[str, str], timeout: float
) -> tuple[Any, Any]:
    """Two values from the next JSON line carrying the first key."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), max(deadline - time.monotonic(), 0))
        if not line:
            raise RuntimeError("child exited before reporting")
        with contextlib.suppress(json.JSONDecodeError):
            message = json.loads(line)
            if keys[0] in message:
                return message[keys[0]], message.get(keys[1])


# ---------------------------------------------------------------------- Linux


def _in_netns(netns: str, fn: Callable[[], Any]) -> Any:
    from .tunbridge import call_in_netns

    return call_in_netns(netns, fn)


def _tcp_ext(netns: str) -> dict[str, int]:
    """The namespace's TcpExt and Tcp counters."""

    def read() -> dict[str, int]:
        out: dict[str, int] = {}
        for path in ("/proc/thread-self/net/netstat", "/proc/thread-self/net/snmp"):
            with open(path) as f:
                lines = f.read().splitlines()
            for head, values in zip(lines[::2], lines[1::2]):
                prefix, names = head.split(":", 1)
                if prefix in ("TcpExt", "Tcp"):
                    for name, value in zip(names.split(), values.split(":", 1)[1].split()):
                        out[name if prefix == "TcpExt" else f"Tcp{name}"] = int(value)
        return out

    result: dict[str, int] = _in_netns(netns, read)
    return result


def _tcp_info(sock: socket.socket) -> dict[str, int]:
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO.size)
    raw = raw.ljust(_TCP_INFO.size, b"\0")
    return dict(zip(_TCP_INFO_FIELDS, _TCP_INFO.unpack(raw)))


class _KernelReceiver(threading.Thread):
    """Accept one connection, read ``expect`` bytes (or until EOF or ``stop``), hash them,
    close. (The receiver closes first, so the sender's socket stays out of TIME-WAIT and
    ``ss`` still shows its figures.)"""

    def __init__(self, listener: socket.socket, stop: threading.Event, expect: int) -> None:
        super().__init__(daemon=True, name="losslab receiver")
        self.listener = listener
        self.stop = stop
        self.expect = expect
        self.received = 0
        self.digest = hashlib.sha256()
        self.last = 0.0
        self.eof = False
        self.error = ""

    def run(self) -> None:
        try:
            self.listener.settimeout(START_TIMEOUT)
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(0.2)
                buf = bytearray(1 << 20)
                view = memoryview(buf)
                while not self.stop.is_set() and self.received < self.expect:
                    try:
                        n = conn.recv_into(buf)
                    except TimeoutError:
                        continue
                    if not n:
                        self.eof = True
                        break
                    self.last = time.monotonic()
                    self.received += n
                    self.digest.update(view[:n])
        except OSError as exc:
            self.error = f"receiver: {exc}"


class _KernelTracer(threading.Thread):
    """Sample the sending socket's TCP_INFO every ``every`` seconds until ``stop``."""

    def __init__(self, sock: socket.socket, every: float, start: float) -> None:
        super().__init__(daemon=True, name="losslab tracer")
        self.sock, self.every, self.start_time = sock, every, start
        self.stop = threading.Event()
        self.samples: list[dict[str, float]] = []

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                info = _tcp_info(self.sock)
            except OSError:
                return
            self.samples.append(
                {
                    "t": round(time.monotonic() - self.start_time, 4),
                    "cwnd": info["snd_cwnd"],
                    "ssthresh": min(info["snd_ssthresh"], 1 << 20),
                    "retrans": info["total_retrans"],
                    "ca_state": info["ca_state"],
                    "rtt_ms": info["rtt"] / 1000,
                    "acked": info["bytes_acked"],
                }
            )


def _linux_transfer(pair_ns: tuple[str, str], case: Case, cc: str, data: bytes) -> dict[str, Any]:
    """Blocking: one kernel transfer from namespace A to B; returns figures and counters."""
    listener = _in_netns(pair_ns[1], lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sender = _in_netns(pair_ns[0], lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    stop = threading.Event()
    with listener, sender:
        listener.bind((ADDRESSES[1], 0))
        listener.listen(1)
        receiver = _KernelReceiver(listener, stop, len(data))
        receiver.start()
        sender.setsockopt(socket.IPPROTO_TCP, _TCP_CONGESTION, cc.encode())
        before = _tcp_ext(pair_ns[0])
        sender.settimeout(START_TIMEOUT)
        sender.connect((ADDRESSES[1], listener.getsockname()[1]))
        sender.settimeout(0.2)
        view = memoryview(data)
        start = time.monotonic()
        deadline = start + case.cap
        tracer = _KernelTracer(sender, case.trace, start) if case.trace else None
        if tracer is not None:
            tracer.start()
        sent = 0
        while sent < len(data) and time.monotonic() < deadline:
            try:
                sent += sender.send(view[sent : sent + CHUNK])
            except TimeoutError:
                continue
        while receiver.is_alive() and time.monotonic() < deadline:
            receiver.join(0.1)
        stop.set()
        receiver.join(5)
        if tracer is not None:
            tracer.stop.set()
            tracer.join(5)
        complete = receiver.received == len(data)
        if complete:
            # The receiver's FIN follows its last read: wait for it, so the counters hold
            # the whole transfer (the last ACKs included).
            end_wait = time.monotonic() + 5
            with contextlib.suppress(OSError):
                while time.monotonic() < end_wait and sender.recv(1):
                    pass
        info = _tcp_info(sender)
        ss = _ss(pair_ns[0])
        after = _tcp_ext(pair_ns[0])
    end = receiver.last if complete else deadline
    return {
        "received": receiver.received,
        "seconds": max(end - start, 1e-9),
        "complete": complete,
        "intact": receiver.digest.hexdigest()
        == hashlib.sha256(data[: receiver.received]).hexdigest(),
        "info": info,
        "ss": ss,
        "tcpext": {k: after.get(k, 0) - before.get(k, 0) for k in after},
        "error": receiver.error,
        "trace": tracer.samples if tracer is not None else [],
    }


def _ss(netns: str) -> str:
    try:
        out = subprocess.run(
            ["ip", "netns", "exec", netns, "ss", "-tinH", "dst", ADDRESSES[1]],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return " ".join(out.split())


async def run_linux(case: Case, stack: str = "linux-cubic") -> Transfer:
    """``case`` over the kernel's TCP between two fresh namespaces (see the module docs)."""
    cc = LINUX_STACKS[stack]
    result = Transfer(case.name, stack, case.size, load=_load())
    data = payload_for(case)
    tag = secrets.token_hex(4)
    netns = (f"{NETNS_PREFIX}{tag}-a", f"{NETNS_PREFIX}{tag}-b")
    made: list[str] = []
    result.counters["netns"] = list(netns)
    wire: asyncio.subprocess.Process | None = None
    try:
        for name in netns:
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
            made.append(name)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        argv = _python("udptcp.tools.tunpair", "--netns", *netns, "--addresses", *ADDRESSES)
        argv += ["--both", case.impairment, "--seed", str(case.seed), "--uvloop"]
        wire = await _spawn(argv)
        await _json_line(wire, "ready", START_TIMEOUT)
        figures = await asyncio.to_thread(_linux_transfer, netns, case, cc, data)
        assert wire.stdin is not None
        wire.stdin.close()
        stats, devices = await _json_lines(wire, ("stats", "devices"), START_TIMEOUT)
        info, ext = figures["info"], figures["tcpext"]
        result.received = figures["received"]
        result.seconds = figures["seconds"]
        result.complete = figures["complete"]
        result.intact = figures["intact"]
        result.retransmits = info["total_retrans"]
        result.recoveries = ext.get("TCPSackRecovery", 0) + ext.get("TCPRenoRecovery", 0)
        result.rtos = ext.get("TCPTimeouts", 0)
        result.tail_loss_probes = ext.get("TCPLossProbes", 0)
        result.cwnd_segments = info["snd_cwnd"]
        result.srtt_ms = info["rtt"] / 1000
        result.counters = {
            "tcp_info": {
                k: info[k]
                for k in (
                    "snd_cwnd",
                    "snd_ssthresh",
                    "rtt",
                    "min_rtt",
                    "snd_mss",
                    "total_retrans",
                    "data_segs_out",
                    "bytes_retrans",
                    "dsack_dups",
                    "reord_seen",
                    "rwnd_limited",
                    "sndbuf_limited",
                    "busy_time",
                )
            },
            "tcpext": {k: ext.get(k, 0) for k in TCPEXT_KEYS},
            "TcpRetransSegs": ext.get("TcpRetransSegs", 0),
            "ss": figures["ss"],
            "congestion_control": cc,
            "netns": list(netns),
        }
        result.wire = _wire_summary(stats)
        result.wire["data_segments_sent"] = info["data_segs_out"]
        result.wire["devices"] = devices
        result.error = figures["error"]
        result.trace = figures["trace"]
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        if wire is not None:
            await _finish(wire)
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return result
