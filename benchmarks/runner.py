"""The runner: plans the measurements, starts the worker processes for each (server, client,
relay, UDP blaster), enforces timeouts, and collects the samples.

Every measurement runs its server and its client in separate processes (each gets a core of
its own, as the two ends of a kernel TCP connection do). Repeats are interleaved: within a
scenario, every case runs once before any runs a second time. A measurement that fails or
times out is recorded as ``{"error": ...}``; its processes are killed whatever happens
(they also get SIGKILL if the runner dies: ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import math
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .peers import PEERS, PeerSpec, rawudp
from .peers.base import Unsupported

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_GRACE = 5.0

#: Scenario keys in run order, with a title for the report.
SCENARIOS: dict[str, str] = {
    "bulk": "Bulk transfer, Protocol API",
    "bulk-streams": "Bulk transfer, streams API",
    "raw": "Raw UDP receive ceiling",
    "pingpong": "1-byte ping-pong",
    "connect": "Connect + close",
    "reqresp": "Connect + 100-B request + 100-B response + close",
    "loss": "Goodput vs loss (20 ms RTT)",
    "linux-loss": "Lossy paths beside Linux TCP (CUBIC)",
    "idle": "Idle established connections",
    "holes": "A peer leaving one-byte holes",
    "multicore": "Two server processes on one port (SO_REUSEPORT) against one",
}
#: Peers that can run each scenario (before n/a reasons and availability).
SCENARIO_PEERS: dict[str, tuple[str, ...]] = {
    "bulk": (
        "udptcp",
        "udptcp-pure",
        "udptcp-secure",
        "udptcp-pmtu",
        "udptcp-nooffload",
        "tcp",
        "quic",
        "kcp",
    ),
    "bulk-streams": (
        "udptcp",
        "udptcp-secure",
        "udptcp-pmtu",
        "udptcp-nooffload",
        "tcp",
        "quic",
        "kcp",
    ),
    "pingpong": (
        "udp",
        "udptcp",
        "udptcp-pure",
        "udptcp-secure",
        "udptcp-nooffload",
        "tcp",
        "quic",
        "kcp",
    ),
    "connect": ("udptcp", "udptcp-pure", "udptcp-secure", "tcp", "quic", "kcp"),
    "reqresp": ("udptcp", "udptcp-secure", "tcp", "quic", "kcp"),
    # (udptcp-pmtu is left out: the relay has no MTU, so it would probe up to 64 KB
    # datagrams, which no 20 ms path carries.)
    "loss": ("udptcp", "tcp", "quic", "kcp"),
    # Kernel TCP between two network namespaces (udptcp.tools.losslab), udptcp through the
    # relay, both with the same seeded impairment.
    "linux-loss": ("tcp", "udptcp"),
    "idle": ("udptcp", "tcp", "quic", "kcp"),
    # benchmarks/holes.py: udptcp's own receive path under a hostile sender.
    "holes": ("udptcp",),
    # benchmarks/multicore.py: 1 vs 2 udptcp server processes, 4 client processes.
    "multicore": ("udptcp",),
}
RELAY_DELAY = "10ms"
#: The paths of the linux-loss scenario: (label, impairment applied to both directions).
LINUX_PATHS: tuple[tuple[str, str], ...] = (
    ("no impairment: the wire's ceiling", ""),
    ("no loss, 20 ms", "delay=10ms"),
    ("no loss, 100 ms", "delay=50ms"),
    ("0.1% random, 20 ms", "loss=0.1%,delay=10ms"),
    ("1% random, 20 ms", "loss=1%,delay=10ms"),
    ("5% random, 20 ms", "loss=5%,delay=10ms"),
    ("0.1% random, 100 ms", "loss=0.1%,delay=50ms"),
    ("1% random, 100 ms", "loss=1%,delay=50ms"),
    ("5% random, 100 ms", "loss=5%,delay=50ms"),
    ("1% in bursts of 4, 20 ms", "loss=1%,burst=4,delay=10ms"),
    ("1% in bursts of 4, 100 ms", "loss=1%,burst=4,delay=50ms"),
    # Below the udptcp path's own ceiling (Python relay and endpoints, ~20-45 MB/s on the
    # 2-core machine), so that a bottleneck both stacks share sets the pace, not the relay.
    ("0.1% random, 100 ms, 80 Mbit/s bottleneck", "loss=0.1%,delay=50ms,rate=80mbit"),
)
#: The kernel's congestion control in linux-loss (set per socket: a new namespace inherits
#: the host's default, which may be BBR).
LINUX_STACK = "linux-cubic"
MATHIS_MSS = 1400
MATHIS_RTT = 0.020


def mathis(loss: float) -> float | None:
    """Mathis et al. TCP throughput bound, MB/s: MSS/RTT * 1.22/sqrt(p)."""
    if loss <= 0:
        return None
    return MATHIS_MSS / MATHIS_RTT * 1.22 / math.sqrt(loss) / 1e6


@dataclass
class Settings:
    repeat: int = 3
    bulk_size: int = 100_000_000
    bulk_seconds: float = 4.0
    rounds: int = 5000
    warmup: int = 500
    rate_seconds: float = 2.0
    loss_rates: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.05)
    loss_seconds: float = 4.0
    loss_repeat: int = 2
    linux_paths: tuple[str, ...] = tuple(spec for _, spec in LINUX_PATHS)
    linux_size: int = 20_000_000
    linux_cap: float = 45.0
    linux_repeat: int = 1
    idle_connections: int = 10_000
    #: aioquic handshakes run at a few hundred per second (with tracemalloc on, fewer).
    idle_connections_quic: int = 1000
    idle_concurrency: int = 50
    idle_seconds: float = 10.0
    idle_repeat: int = 1
    raw_seconds: float = 1.5
    holes: int = 10_000
    multicore_seconds: float = 2.0
    seed: int = 1
    loops: tuple[str, ...] = ("asyncio", "uvloop")

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            repeat=1,
            bulk_size=10_000_000,
            bulk_seconds=1.0,
            rounds=500,
            warmup=50,
            rate_seconds=0.5,
            loss_rates=(0.0, 0.02),
            loss_seconds=1.5,
            loss_repeat=1,
            linux_paths=("", "loss=1%,delay=10ms"),
            linux_size=2_000_000,
            linux_cap=20.0,
            idle_connections=500,
            idle_connections_quic=100,
            idle_seconds=1.0,
            raw_seconds=0.5,
            holes=2000,
            multicore_seconds=0.5,
        )

    def repeats(self, scenario: str) -> int:
        if scenario == "loss":
            return min(self.repeat, self.loss_repeat)
        if scenario == "linux-loss":
            return min(self.repeat, self.linux_repeat)
        if scenario == "idle":
            return min(self.repeat, self.idle_repeat)
        if scenario == "multicore":
            return 1  # benchmarks.multicore repeats (and alternates) its cases itself
        return self.repeat


@dataclass
class Case:
    scenario: str
    peer: str  # a PEERS key, or a raw UDP mode
    loop: str
    loss: float | None = None
    not_applicable: str | None = None
    #: linux-loss: the impairment both directions get (relay syntax).
    path: str | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        parts = [self.scenario, self.peer, self.loop]
        if self.loss is not None:
            parts.append(f"loss={self.loss:.1%}")
        if self.path is not None:
            parts.append(self.path or "no impairment")
        return " ".join(parts)


def plan(scenarios: list[str], peers: list[str], settings: Settings) -> list[Case]:
    """Every case of the run, in scenario order; n/a and unavailable ones included (with the
    reason) so the report can say so."""
    from .peers import unavailable

    missing = {key: unavailable(PEERS[key]) for key in peers}
    cases: list[Case] = []
    for scenario in scenarios:
        if scenario == "raw":
            cases += [Case("raw", mode, loop) for mode in rawudp.MODES for loop in settings.loops]
            continue
        if scenario == "linux-loss":
            from udptcp.tools.losslab import lab_unavailable

            why = lab_unavailable()
            for path in settings.linux_paths:
                for key in SCENARIO_PEERS[scenario]:
                    if key in peers:
                        # The lab runs every process on uvloop.
                        reason = why if key == "tcp" else None
                        cases.append(
                            Case(scenario, key, "uvloop", not_applicable=reason, path=path)
                        )
            continue
        for key in SCENARIO_PEERS[scenario]:
            if key not in peers:
                continue
            spec = PEERS[key]
            reason = spec.not_applicable.get(scenario) or missing[key]
            losses: list[float | None] = list(settings.loss_rates) if scenario == "loss" else [None]
            for loss in losses:
                for loop in settings.loops:
                    cases.append(Case(scenario, key, loop, loss, not_applicable=reason))
    return cases


# --------------------------------------------------------------------------- processes


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGKILL this child when the runner exits (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class WorkerError(Exception):
    pass


class Worker:
    """A child process speaking JSON lines on stdout (or plain text, for the relay)."""

    live: set[Worker] = set()

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self._stderr: IO[bytes] | None = None
        #: Stopped with SIGTERM (the relay, the blaster) rather than by closing stdin.
        self.stop_by_signal = False

    @classmethod
    def python(cls, name: str, args: list[str], env: dict[str, str] | None = None) -> Worker:
        return cls(name, [sys.executable, *args], env)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> Worker:
        self._stderr = tempfile.TemporaryFile()
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            env=self.env,
            cwd=ROOT,
            preexec_fn=_die_with_parent,
        )
        Worker.live.add(self)
        return self

    def stderr_tail(self, lines: int = 6) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    async def line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise WorkerError(f"{self.name}: no answer within {timeout:.0f} s") from None
        if not raw:
            code = await asyncio.wait_for(self.proc.wait(), STOP_GRACE)
            raise WorkerError(f"{self.name} exited ({code}): {self.stderr_tail()}")
        return raw.decode(errors="replace").rstrip("\n")

    async def message(self, key: str, timeout: float) -> dict[str, Any]:
        """The next JSON message carrying ``key``; the worker's own error becomes a
        WorkerError."""
        deadline = time.monotonic() + timeout
        while True:
            text = await self.line(max(0.0, deadline - time.monotonic()))
            try:
                message = json.loads(text)
            except json.JSONDecodeError:
                continue
            if key in message:
                return dict(message)
            if "unsupported" in message:
                raise Unsupported(message["unsupported"])
            if "error" in message:
                raise WorkerError(f"{self.name}: {message['error']}")

    async def send(self, command: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """End of stdin (or SIGTERM) first, SIGKILL after ``grace`` seconds."""
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.returncode is None:
                if self.stop_by_signal:
                    proc.terminate()
                elif proc.stdin is not None and not proc.stdin.is_closing():
                    proc.stdin.close()
                try:
                    await asyncio.wait_for(proc.wait(), grace)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        Worker.live.discard(self)
        if self._stderr is not None and self.proc is not None and self.proc.returncode is not None:
            self._stderr.close()
            self._stderr = None

    @classmethod
    def kill_all(cls) -> None:
        for worker in list(cls.live):
            worker.kill()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- measurements


class Runner:
    def __init__(self, settings: Settings, profile_dir: Path | None = None) -> None:
        self.settings = settings
        self.profile_dir = profile_dir

    def params(self, case: Case) -> dict[str, Any]:
        s = self.settings
        if case.scenario in ("bulk", "bulk-streams"):
            return {"size": s.bulk_size, "seconds": s.bulk_seconds}
        if case.scenario == "pingpong":
            return {"rounds": s.rounds, "warmup": s.warmup}
        if case.scenario in ("connect", "reqresp"):
            return {"seconds": s.rate_seconds}
        if case.scenario == "idle":
            total = s.idle_connections_quic if case.peer == "quic" else s.idle_connections
            return {"connections": total, "concurrency": s.idle_concurrency}
        return {}

    def timeout(self, case: Case) -> float:
        s = self.settings
        return (
            60.0
            + {
                "bulk": s.bulk_seconds * 3,
                "bulk-streams": s.bulk_seconds * 3,
                "loss": s.loss_seconds,
                "linux-loss": s.linux_cap,
                "pingpong": s.rounds / 1000,
                "connect": s.rate_seconds,
                "reqresp": s.rate_seconds,
                "idle": 240 + s.idle_seconds,
                "raw": s.raw_seconds,
                "holes": 240 + s.holes / 50,
                "multicore": 4 * s.repeat * (30 + 2 * s.multicore_seconds),
            }[case.scenario]
        )

    async def measure(self, case: Case, repeat: int) -> dict[str, Any]:
        """One sample; never raises (a failure is returned as ``{"error": ...}``)."""
        started = time.monotonic()
        try:
            if case.scenario == "raw":
                coro = self._raw(case)
            elif case.scenario == "idle":
                coro = self._idle(case)
            elif case.scenario == "loss":
                coro = self._loss(case, repeat)
            elif case.scenario == "linux-loss":
                coro = self._linux_loss(case, repeat)
            elif case.scenario == "holes":
                coro = self._holes(case)
            elif case.scenario == "multicore":
                coro = self._multicore(case)
            else:
                coro = self._pair(case)
            sample: dict[str, Any] = await asyncio.wait_for(coro, self.timeout(case))
        except asyncio.TimeoutError:
            sample = {"error": f"timed out after {self.timeout(case):.0f} s"}
        except Unsupported as exc:
            sample = {"error": f"unsupported: {exc}"}
        except Exception as exc:
            sample = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        finally:
            Worker.kill_all()  # nothing outlives its measurement
        sample["wall_s"] = round(time.monotonic() - started, 3)
        return sample

    def _env(self, spec: PeerSpec) -> dict[str, str]:
        return dict(spec.env)

    def _profile_args(self, side: str) -> list[str]:
        if self.profile_dir is None:
            return []
        return ["--profile", str(self.profile_dir / f"{side}.txt")]

    async def _server(self, case: Case, tracemalloc: bool = False) -> tuple[Worker, dict[str, Any]]:
        spec = PEERS[case.peer]
        args = ["-m", "benchmarks.worker", "serve", case.peer, "--loop", case.loop]
        args += ["--tracemalloc"] if tracemalloc else []
        args += self._profile_args("server")
        server = await Worker.python("server", args, self._env(spec)).start()
        return server, await server.message("ready", START_TIMEOUT)

    def _client(self, case: Case, ready: dict[str, Any], port: int) -> Worker:
        spec = PEERS[case.peer]
        args = ["-m", "benchmarks.worker", "client", case.peer, case.scenario]
        args += ["--loop", case.loop, "--port", str(port)]
        args += ["--stream-port", str(ready.get("stream_port") or 0)]
        args += ["--params", json.dumps(self.params(case))]
        args += self._profile_args("client")
        return Worker.python("client", args, self._env(spec))

    async def _pair(self, case: Case) -> dict[str, Any]:
        workers: list[Worker] = []
        try:
            server, ready = await self._server(case)
            workers.append(server)
            client = await self._client(case, ready, int(ready["port"])).start()
            workers.append(client)
            result: dict[str, Any] = (await client.message("result", self.timeout(case)))["result"]
            return result
        finally:
            for worker in reversed(workers):
                await worker.stop()

    async def _stats(self, server: Worker) -> dict[str, Any]:
        await server.send("stats")
        stats: dict[str, Any] = (await server.message("stats", 30))["stats"]
        return stats

    async def _loss(self, case: Case, repeat: int) -> dict[str, Any]:
        """Goodput through the relay: the server's byte count over a fixed window while the
        client sends without end."""
        workers: list[Worker] = []
        try:
            server, ready = await self._server(case)
            workers.append(server)
            relay, port, relay_info = await self._relay(case, int(ready["port"]), repeat)
            workers.append(relay)
            client = await self._client(case, ready, port).start()
            workers.append(client)
            await client.message("ready", START_TIMEOUT)
            first = await self._stats(server)
            await asyncio.sleep(self.settings.loss_seconds)
            last = await self._stats(server)
            assert client.proc is not None
            if client.proc.returncode is not None:
                raise WorkerError(
                    f"client exited ({client.proc.returncode}): {client.stderr_tail()}"
                )
            received = last["received"] - first["received"]
            seconds = last["time"] - first["time"]
            await client.stop()
            relay_info["stats"] = await self._stop_relay(relay)
            return {
                "mbps": received / seconds / 1e6,
                "bytes": received,
                "seconds": seconds,
                "relay": relay_info,
            }
        finally:
            for worker in reversed(workers):
                await worker.stop()

    async def _linux_loss(self, case: Case, repeat: int) -> dict[str, Any]:
        """One stack on one path through ``udptcp.tools.losslab`` (which starts its own
        processes: the TUN wire or the relay, and the receiver)."""
        assert case.path is not None
        s = self.settings
        seed = s.seed + repeat
        stack = LINUX_STACK if case.peer == "tcp" else "udptcp"
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "lab.json"
            args = ["-m", "udptcp.tools.losslab", "--case", case.path, "--stacks", stack]
            args += ["--size", str(s.linux_size), "--cap", str(s.linux_cap)]
            args += ["--seed", str(seed), "--json", str(out)]
            lab = await Worker.python("lab", args).start()
            assert lab.proc is not None
            await lab.proc.wait()
            if not out.exists():
                raise WorkerError(f"lab exited ({lab.proc.returncode}): {lab.stderr_tail()}")
            (t,) = json.loads(out.read_text())
        if t["error"] or not t["intact"]:
            raise WorkerError(t["error"] or "the bytes received differ from those sent")
        wire = t["wire"]
        return {
            "mbps": t["goodput"] / 1e6,
            "bytes": t["received"],
            "seconds": t["seconds"],
            "complete": t["complete"],
            "retransmits": t["retransmits"],
            "recoveries": t["recoveries"],
            "rtos": t["rtos"],
            "tlps": t["tail_loss_probes"],
            "cwnd": t["cwnd_segments"],
            "loss_forward": wire["forward"]["loss_rate"],
            "loss_backward": wire["backward"]["loss_rate"],
            "largest_packet": wire["forward"].get("largest"),
            "seed": seed,
            "load": t["load"],
        }

    async def _relay(self, case: Case, target: int, repeat: int) -> tuple[Worker, int, Any]:
        assert case.loss is not None
        seed = self.settings.seed + repeat
        spec = f"delay={RELAY_DELAY}" + (f",loss={case.loss * 100:g}%" if case.loss else "")
        args = ["-m", "udptcp.tools.relay", "--target", f"127.0.0.1:{target}"]
        args += ["--both", spec, "--seed", str(seed), "--uvloop"]
        relay = Worker.python("relay", args)
        relay.stop_by_signal = True
        await relay.start()
        while True:
            text = await relay.line(START_TIMEOUT)
            match = re.match(r"relay \S+:(\d+) ->", text)
            if match:
                return relay, int(match.group(1)), {"seed": seed, "both": spec}

    async def _stop_relay(self, relay: Worker) -> list[str]:
        """SIGTERM; the relay prints its final per-direction counters."""
        assert relay.proc is not None and relay.proc.stdout is not None
        relay.proc.terminate()
        out = await asyncio.wait_for(relay.proc.stdout.read(), STOP_GRACE)
        return [line for line in out.decode().splitlines() if line.startswith("[final]")]

    async def _idle(self, case: Case) -> dict[str, Any]:
        workers: list[Worker] = []
        try:
            server, ready = await self._server(case, tracemalloc=True)
            workers.append(server)
            await server.send("memory")
            before = (await server.message("memory", 60))["memory"]
            client = await self._client(case, ready, int(ready["port"])).start()
            workers.append(client)
            info = (await client.message("ready", self.timeout(case)))["ready"]
            # The client is done when its handshakes are; the server may still be taking in
            # the last connections' first byte (KCP: creating their sessions).
            deadline = time.monotonic() + 60
            while True:
                live = (await self._stats(server))["live"]
                if live >= info["connections"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            # Memory first, then CPU with tracemalloc off (tracing every allocation would
            # make any work done while idle, such as udptcp's keepalive probes 25 s after a
            # connection's last segment, look several times dearer).
            await server.send("memory")
            after = (await server.message("memory", 120))["memory"]
            await server.send("untrace")
            await server.message("untraced", 60)
            cpu = [cpu_seconds(server.pid), cpu_seconds(client.pid)]
            t0 = time.monotonic()
            await asyncio.sleep(self.settings.idle_seconds)
            elapsed = time.monotonic() - t0
            cpu = [cpu_seconds(server.pid) - cpu[0], cpu_seconds(client.pid) - cpu[1]]
            live = int(after["live"])
            if live <= 0:
                raise WorkerError(f"server counted {live} live connections")
            overhead = after["tracemalloc_overhead"] - before["tracemalloc_overhead"]
            return {
                "connections": live,
                "client_connections": info["connections"],
                "establish_s": info["establish_s"],
                "rss_per_conn": (after["rss"] - before["rss"] - overhead) / live,
                "traced_per_conn": (after["traced"] - before["traced"]) / live,
                "server_cpu_pct": 100 * cpu[0] / elapsed,
                "client_cpu_pct": 100 * cpu[1] / elapsed,
            }
        finally:
            for worker in reversed(workers):
                await worker.stop(grace=10)

    async def _multicore(self, case: Case) -> dict[str, Any]:
        """``benchmarks/multicore.py`` once: medians of its repeats, one sample."""
        s = self.settings
        args = ["-m", "benchmarks.multicore", "--json", "--loop", case.loop]
        args += ["--repeat", str(s.repeat), "--seconds", str(s.multicore_seconds)]
        worker = await Worker.python("multicore", args).start()
        try:
            found = (await worker.message("multicore", self.timeout(case)))["multicore"]
        finally:
            await worker.stop()
        sample: dict[str, Any] = {}
        for scenario, figures in found.items():
            for key, value in figures.items():
                sample[f"{scenario}_{key}"] = value
        return sample

    async def _holes(self, case: Case) -> dict[str, Any]:
        """``benchmarks/holes.py`` once (its core and UDP parts), flattened to one sample."""
        args = ["-m", "benchmarks.holes", "all", "--json", "--repeat", "3", "--udp-repeat", "1"]
        args += ["--holes", str(self.settings.holes), "--loop", case.loop]
        worker = await Worker.python("holes", args).start()
        try:
            found = await worker.message("core", self.timeout(case))
        finally:
            await worker.stop()
        core, udp = found["core"], found["udp"]
        roomy, defaults = core["memory"]
        return {
            "core_first_us": core["costs"][0]["first_us"],
            "core_worst_ratio": max(c["max_over_first"] for c in core["costs"]),
            "udp_first_us": udp["first_us"],
            "udp_worst_ratio": udp["max_over_first"],
            "echo_p99_ms": udp["echo_during_ms"]["p99"],
            "echo_max_ms": udp["echo_during_ms"]["max"],
            "held_pct_of_buffer": 100 * roomy["traced_over_buffer"],
            "traced_per_piece": roomy["traced_per_piece"],
            "defaults_admitted": defaults["pieces_admitted"],
            "defaults_dropped": defaults["reassembly_dropped"],
        }

    async def _raw(self, case: Case) -> dict[str, Any]:
        workers: list[Worker] = []
        s = self.settings
        try:
            args = ["-m", "benchmarks.worker", "rawrecv", case.peer, "--loop", case.loop]
            args += ["--seconds", str(s.raw_seconds), *self._profile_args("server")]
            receiver = await Worker.python("receiver", args).start()
            workers.append(receiver)
            ready = await receiver.message("ready", START_TIMEOUT)
            args = ["-m", "benchmarks.worker", "blast", "--port", str(ready["port"])]
            args += ["--seconds", str(s.raw_seconds + 2)]
            args += ["--gso"] if case.peer == "gro" else []
            args += self._profile_args("client")
            blaster = Worker.python("blaster", args)
            blaster.stop_by_signal = True
            await blaster.start()
            workers.append(blaster)
            result: dict[str, Any] = (await receiver.message("result", self.timeout(case)))[
                "result"
            ]
            sent = (await blaster.message("result", self.timeout(case)))["result"]
            result["sent_per_s"] = sent["sent_per_s"]
            return result
        finally:
            for worker in reversed(workers):
                await worker.stop()


async def run_cases(
    runner: Runner,
    cases: list[Case],
    progress: Callable[[str], None] = print,
) -> None:
    """Run every applicable case, scenario by scenario, repeats interleaved."""
    order = list(dict.fromkeys(case.scenario for case in cases))
    todo = [
        (scenario, repeat, case)
        for scenario in order
        for repeat in range(runner.settings.repeats(scenario))
        for case in cases
        if case.scenario == scenario and case.not_applicable is None
    ]
    for number, (_scenario, repeat, case) in enumerate(todo, 1):
        sample = await runner.measure(case, repeat)
        case.samples.append(sample)
        progress(f"[{number}/{len(todo)}] {case.label} #{repeat + 1}: {describe(sample)}")


def describe(sample: dict[str, Any]) -> str:
    """A one-line summary of a sample for the progress log."""
    if "error" in sample:
        return f"FAILED {sample['error']}"
    keys = ("mbps", "p50_us", "p99_us", "per_s", "rss_per_conn", "server_cpu_pct")
    keys += ("core_worst_ratio", "udp_worst_ratio", "echo_max_ms")
    shown = ", ".join(f"{k}={sample[k]:.4g}" for k in keys if k in sample)
    if "relay" in sample:
        shown += f", relay seed={sample['relay']['seed']}"
    return f"{shown} ({sample.get('wall_s', 0):.1f} s)"
