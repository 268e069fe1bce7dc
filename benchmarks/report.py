"""Turn the collected samples into ``results.md`` (one table per scenario, median and
min-max of the repeats) and ``results.json`` (every raw sample), and put ``results.md``
into README.md between the bench markers."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from .peers import PEERS, rawudp
from .runner import (
    LINUX_PATHS,
    LINUX_STACK,
    MATHIS_MSS,
    MATHIS_RTT,
    RELAY_DELAY,
    SCENARIOS,
    Case,
    Settings,
    mathis,
)

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
PACKAGES = ("udptcp", "uvloop", "aioquic", "kcp")


def load_average() -> str:
    """The 1-minute load average."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    try:
        import udptcp

        codec = "compiled codec" if udptcp.__speedups__ else "pure-Python codec"
        compiled = getattr(udptcp, "__compiled__", None)  # None: a tree from before mypyc
        engine = {True: "compiled engine", False: "pure-Python engine"}.get(compiled)
        speedups = f"{codec} and {engine}" if engine else codec
    except Exception:  # an older tree, or udptcp not importable here
        speedups = "codec unknown"
    return {
        "speedups": speedups,
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "kernel": f"{platform.system()} {platform.release()}",
        **{f"version_{k}": v for k, v in versions.items()},
    }


# --------------------------------------------------------------------------- cells


def _values(case: Case | None, key: str) -> tuple[list[float], list[str]]:
    if case is None:
        return [], []
    good = [float(s[key]) for s in case.samples if "error" not in s and key in s]
    bad = [str(s["error"]) for s in case.samples if "error" in s]
    return good, bad


def num(value: float, unit: str = "") -> str:
    if value >= 100:
        text = f"{value:,.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    elif value >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return text + unit


def cell(case: Case | None, key: str, scale: float = 1.0, fmt: Callable[[float], str] = num) -> str:
    """``median (min–max)`` of one measurement over the repeats, or why there is none."""
    if case is None:
        return "—"
    if case.not_applicable is not None:
        return "not installed" if case.not_applicable.startswith("not installed") else "n/a"
    good, bad = _values(case, key)
    if not good:
        return f"failed: {bad[0]}" if bad else "—"
    good = [v * scale for v in good]
    text = fmt(statistics.median(good))
    if len(good) > 1:
        text += f" ({fmt(min(good))}–{fmt(max(good))})"
    if bad:
        text += f" [{len(bad)} failed: {bad[0][:60]}]"
    return text


def median(case: Case | None, key: str) -> float | None:
    good, _ = _values(case, key)
    return statistics.median(good) if good else None


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


class Results:
    """Cases indexed for the tables."""

    def __init__(self, cases: list[Case], settings: Settings) -> None:
        self.cases = cases
        self.settings = settings
        self.loops = list(settings.loops)
        self._index = {(c.scenario, c.peer, c.loop, c.loss, c.path): c for c in cases}

    def get(
        self,
        scenario: str,
        peer: str,
        loop: str,
        loss: float | None = None,
        path: str | None = None,
    ) -> Case | None:
        return self._index.get((scenario, peer, loop, loss, path))

    def peers(self, scenario: str) -> list[str]:
        return list(dict.fromkeys(c.peer for c in self.cases if c.scenario == scenario))

    def has(self, scenario: str) -> bool:
        return any(c.scenario == scenario for c in self.cases)

    def stops(self, scenario: str) -> list[str]:
        """Runs that ended early (``stopped`` in a sample), one line per peer and loop."""
        lines = []
        for c in self.cases:
            reasons = [s["stopped"] for s in c.samples if s.get("stopped")]
            if c.scenario == scenario and reasons:
                lines.append(f"- {PEERS[c.peer].label}, {c.loop}: stopped early, {reasons[0]}.")
        return lines

    def notes(self, scenarios: Iterable[str]) -> list[str]:
        """One line per peer that is n/a or not installed in these scenarios."""
        seen: dict[tuple[str, str], None] = {}
        for c in self.cases:
            if c.scenario in scenarios and c.not_applicable is not None:
                seen[(c.peer, c.not_applicable)] = None
        return [f"- {PEERS[p].label}: {reason}." for p, reason in seen]


# --------------------------------------------------------------------------- markdown


def render(results: Results, meta: dict[str, Any], plots: str = "") -> str:
    """The Markdown report; ``plots`` is the path prefix of the PNG links."""
    s = results.settings
    loops = results.loops
    out: list[str] = []
    versions = ", ".join(f"{p} {meta[f'version_{p}']}" for p in PACKAGES)
    out += [
        f"Measured {meta['date']} with `{meta['command']}` "
        f"(wall time {meta['wall_time_min']:.1f} min).",
        "",
        f"- Machine: {meta['cpu']}, {meta['cores']} cores; Python {meta['python']}; "
        f"{meta['kernel']}; load average {meta.get('load_start', '?')} at the start, "
        f"{meta.get('load_end', '?')} at the end (other work on the machine shows up as "
        "noise)",
        f"- Versions: {versions} ({meta.get('speedups', 'codec unknown')} unless a row says "
        "otherwise)",
        f"- Every figure is the median (min–max) of {s.repeat} run(s) unless noted, repeats "
        "interleaved across peers; server and client are separate processes on 127.0.0.1, "
        "both on the loop named in the column.",
        "- Peers: udptcp with `Config()` defaults (CUBIC, SACK, timestamps, 1 MiB receive "
        "buffer), and with `Config(pmtu_max=65507)` on both sides for the probed-MSS row "
        "(path MTU probing finds loopback's 64 KiB MTU: segments of up to ~65 KB); "
        "kernel TCP through asyncio's `loop.create_connection`/`create_server` (Linux "
        "defaults, TCP_NODELAY as asyncio sets it); aioquic with one bidirectional stream, "
        "TLS 1.3 with a self-signed P-256 certificate, 1472-byte datagrams, CUBIC, default "
        "1 MiB flow-control windows; KCP in fast mode (nodelay=1, interval=10 ms, resend=2, "
        "nc=1: no congestion control), 1024-segment windows, 1472-byte datagrams, through "
        "the asyncio adapter in `benchmarks/peers/kcp_peer.py`.",
        "",
    ]

    def peer_rows(scenario: str, columns: list[tuple[str, str, str]], key: str) -> list[str]:
        rows = []
        for peer in results.peers(scenario):
            row = [PEERS[peer].label]
            for scen, loop, _ in columns:
                row.append(cell(results.get(scen, peer, loop), key))
            rows.append(row)
        return table(["peer", *[title for _, _, title in columns]], rows)

    if results.has("bulk") or results.has("bulk-streams"):
        columns = [
            (scen, loop, f"{loop} {api}")
            for loop in loops
            for scen, api in (("bulk", "Protocol"), ("bulk-streams", "streams"))
            if results.has(scen)
        ]
        peers = results.peers("bulk") or results.peers("bulk-streams")
        rows = [
            [PEERS[p].label, *[cell(results.get(sc, p, lp), "mbps") for sc, lp, _ in columns]]
            for p in peers
        ]
        out += [f"### {SCENARIOS['bulk']} and streams API (MB/s)", ""]
        out += table(["peer", *[t for _, _, t in columns]], rows)
        out += [
            "",
            f"{s.bulk_size / 1e6:g} MB one way (or as much as fits in {s.bulk_seconds:g} s), "
            "64 KiB writes, connection set-up excluded; the receiver's byte count over the "
            "time from the first write until that count is back at the sender.",
            *results.notes(("bulk", "bulk-streams")),
            "",
        ]

    if results.has("raw"):
        rows = []
        for mode, title in rawudp.MODES.items():
            row = [title]
            for loop in loops:
                case = results.get("raw", mode, loop)
                row.append(cell(case, "mbps"))
                row.append(cell(case, "datagrams_per_s", 1e-3, lambda v: f"{v:,.0f}"))
            rows.append(row)
        header = ["receiver"]
        for loop in loops:
            header += [f"{loop} MB/s", f"{loop} kdatagrams/s"]
        out += [f"### {SCENARIOS['raw']} ({rawudp.DATAGRAM}-byte datagrams)", ""]
        out += table(header, rows)
        out += [
            "",
            "Another process sends as fast as it can (plain `send`, or 64 KB UDP GSO sends "
            "for the GRO row); the figure is what one asyncio process takes in: the ceiling "
            "for any protocol over UDP read this way.",
            "",
        ]

    if results.has("pingpong"):
        columns = [("pingpong", loop, "") for loop in loops]
        rows = []
        for peer in results.peers("pingpong"):
            row = [PEERS[peer].label]
            for _, loop, _ in columns:
                case = results.get("pingpong", peer, loop)
                row += [cell(case, "p50_us"), cell(case, "p99_us")]
            rows.append(row)
        header = ["peer"] + [f"{loop} {q} µs" for loop in loops for q in ("p50", "p99")]
        out += [f"### {SCENARIOS['pingpong']} round trip (µs)", ""]
        out += table(header, rows)
        out += [
            "",
            f"{s.rounds} rounds after {s.warmup} warm-up rounds, one byte each way, one at a time.",
            *results.notes(("pingpong",)),
            "",
        ]

    for scenario in ("connect", "reqresp"):
        if not results.has(scenario):
            continue
        cols = [(scenario, loop, f"{loop} /s") for loop in loops]
        out += [f"### {SCENARIOS[scenario]} (per second)", ""]
        out += peer_rows(scenario, cols, "per_s")
        out += [
            "",
            f"Sequential, one connection at a time, for {s.rate_seconds:g} s; `close()` is "
            "not waited for (as with a kernel socket, the closing handshake finishes in the "
            "background).",
            *results.notes((scenario,)),
            *results.stops(scenario),
            "",
        ]

    if results.has("loss"):
        peers = [
            p
            for p in results.peers("loss")
            if any(
                c.not_applicable is None
                for c in results.cases
                if c.peer == p and c.scenario == "loss"
            )
        ]
        header = ["loss each way", "Mathis MB/s"] + [
            f"{PEERS[p].label.split(' (')[0]} {loop}" for p in peers for loop in loops
        ]
        rows = []
        for loss in s.loss_rates:
            bound = mathis(loss)
            row = [f"{loss:.1%}", num(bound) if bound else "—"]
            row += [
                cell(results.get("loss", p, loop, loss), "mbps") for p in peers for loop in loops
            ]
            rows.append(row)
        seeds = sorted(
            {
                sample["relay"]["seed"]
                for c in results.cases
                for sample in c.samples
                if "relay" in sample
            }
        )
        out += [f"### {SCENARIOS['loss']}: goodput MB/s through the impairment relay", ""]
        out += table(header, rows)
        out += [
            "",
            f"`python -m udptcp.tools.relay --both delay={RELAY_DELAY},loss=P --uvloop` "
            f"(relay seeds {', '.join(map(str, seeds)) or '—'}) between client and server: "
            f"{RELAY_DELAY} each way, loss P each way. The client sends without end (with "
            "flow control); the figure is the server's byte count over a "
            f"{s.loss_seconds:g} s window from the moment the connection is up (slow start "
            f"included), {s.repeats('loss')} run(s). Mathis: MSS/RTT × 1.22/√p "
            f"with MSS {MATHIS_MSS} B, RTT {MATHIS_RTT * 1000:g} ms. At 0% loss the relay "
            "itself (one Python process) may be the limit.",
            *results.notes(("loss",)),
            "",
        ]

    if results.has("linux-loss"):
        out += linux_loss_section(results)

    if results.has("idle"):
        rows = []
        for peer in results.peers("idle"):
            for loop in loops:
                case = results.get("idle", peer, loop)
                rows.append(
                    [
                        PEERS[peer].label,
                        loop,
                        cell(case, "connections", fmt=lambda v: f"{v:,.0f}"),
                        cell(case, "establish_s"),
                        cell(case, "rss_per_conn", 1 / 1024),
                        cell(case, "traced_per_conn", 1 / 1024),
                        cell(case, "server_cpu_pct"),
                        cell(case, "client_cpu_pct"),
                    ]
                )
        header = [
            "peer",
            "loop",
            "connections",
            "set-up s",
            "server RSS KiB/conn",
            "server tracemalloc KiB/conn",
            "server idle CPU %",
            "client idle CPU %",
        ]
        out += [f"### {SCENARIOS['idle']}", ""]
        out += table(header, rows)
        out += [
            "",
            f"{s.idle_connections:,} connections ({s.idle_connections_quic:,} for aioquic, "
            f"whose handshakes are slow), opened {s.idle_concurrency} at a time, each sent "
            "one byte. Memory: server process after everything is established and "
            "`gc.collect()`, minus before, per connection (RSS minus tracemalloc's own "
            "memory; tracemalloc sees Python allocations only, not KCP's C heap nor the "
            f"kernel's socket buffers). CPU: utime+stime over {s.idle_seconds:g} s of idling, "
            "% of one core. Clients: udptcp and KCP open every connection over one UDP "
            "socket; TCP and aioquic use one socket per connection. The CPU window starts "
            "once every connection is up and memory is measured, with tracemalloc stopped; "
            "udptcp's client sends one NAT binding keepalive per socket and server address "
            "every 25 s (`Config.path_keepalive`), and TCP keepalive probes an idle "
            "connection after 5 minutes (`Config.keepalive_idle`; one probe and one ACK per "
            "connection per period), so a 10 s window misses both (`--idle-seconds 360` "
            "takes them in). KCP connections count once their "
            "first message is acknowledged; its adapter runs no timer for a session with "
            "nothing in flight. "
            f"{s.repeats('idle')} run(s).",
            *results.notes(("idle",)),
            "",
        ]

    if results.has("multicore"):
        rows = []
        for loop in loops:
            case = results.get("multicore", "udptcp", loop)
            rows.append(
                [
                    loop,
                    cell(case, "connect_one"),
                    cell(case, "connect_many"),
                    cell(case, "connect_ratio", fmt=lambda v: f"{v:.2f}×"),
                    cell(case, "bulk_one"),
                    cell(case, "bulk_many"),
                    cell(case, "bulk_ratio", fmt=lambda v: f"{v:.2f}×"),
                ]
            )
        header = [
            "loop",
            "connect+close /s, 1 worker",
            "2 workers",
            "ratio",
            "bulk MB/s (4 clients), 1 worker",
            "2 workers",
            "ratio",
        ]
        out += [f"### {SCENARIOS['multicore']}", ""]
        out += table(header, rows)
        out += [
            "",
            "`python -m benchmarks.multicore`: 4 client processes (each its own UDP socket) "
            "run the connect+close or the bulk scenario at once against one udptcp server "
            "process, or against two sharing the port with `create_server(..., "
            "reuse_port=True)`; figures are the sum over the clients, median of "
            f"{s.repeat} run(s) each. The kernel hashes each client socket to one server "
            "process, so the spread is the hash's. Servers and clients share this machine's "
            "cores: on 2 cores, two servers compete with four clients.",
            "",
        ]

    if results.has("holes"):
        rows = []
        for loop in loops:
            case = results.get("holes", "udptcp", loop)
            rows.append(
                [
                    loop,
                    cell(case, "core_first_us"),
                    cell(case, "core_worst_ratio"),
                    cell(case, "udp_first_us"),
                    cell(case, "udp_worst_ratio"),
                    cell(case, "echo_p99_ms"),
                    cell(case, "echo_max_ms"),
                    cell(case, "held_pct_of_buffer"),
                    cell(case, "defaults_admitted", fmt=lambda v: f"{v:,.0f}"),
                ]
            )
        header = [
            "loop",
            "core µs/segment (first 1k)",
            "core dearest 1k / first",
            "UDP server µs/segment (first 1k)",
            "UDP dearest 1k / first",
            "other connection's echo p99 ms",
            "echo max ms",
            "held, % of buffer",
            "defaults: pieces admitted",
        ]
        out += [f"### {SCENARIOS['holes']}", ""]
        out += table(header, rows)
        out += [
            "",
            f"`python -m benchmarks.holes` ({s.holes:,} holes): a peer sends one-byte "
            "segments that each leave a one-byte hole, then the fillers, with "
            "`Config(receive_buffer=16 MiB, max_reassembly_pieces=20000)` so every piece is "
            "admitted. Core: two connections without sockets, CPU per bucket of 1,000 "
            "segments (decode, process, encode the ACK), each bucket the least of three "
            "runs; the ratio is the dearest bucket's over the first's, worst of four arrival "
            "orders. UDP (one run per sample): a raw-UDP attacker that "
            "made its own handshake against a udptcp server on 127.0.0.1 (server CPU from "
            "/proc/PID/schedstat, echo work included) while another connection pings 1 byte "
            "every 5 ms through the server's echo. Held: tracemalloc over the held pieces. "
            "With the defaults (1 MiB buffer) the charge admits about 4,080 one-byte "
            "pieces; any more are dropped and counted (`reassembly_dropped`).",
            "",
        ]

    shown = {
        "bulk": results.has("bulk") or results.has("raw"),
        "pingpong": results.has("pingpong"),
        "loss": results.has("loss"),
        "connections": results.has("connect") or results.has("reqresp"),
    }
    if any(shown.values()):
        links = [f"[{name}]({plots}{name}.png)" for name, show in shown.items() if show]
        out.append("Plots: " + ", ".join(links) + ".")
    return "\n".join(out) + "\n"


def _counts(case: Case | None) -> str:
    """``retransmissions / recovery episodes / RTOs / tail loss probes`` (medians)."""
    values = [median(case, key) for key in ("retransmits", "recoveries", "rtos", "tlps")]
    if case is None or any(v is None for v in values):
        return "—"
    return " / ".join(f"{v:.0f}" for v in values if v is not None)


def _ratio(mine: Case | None, theirs: Case | None) -> str:
    a, b = median(mine, "mbps"), median(theirs, "mbps")
    return f"{a / b:.2f}" if a is not None and b else "—"


def _measured_loss(case: Case | None) -> str:
    fwd, back = median(case, "loss_forward"), median(case, "loss_backward")
    if fwd is None or back is None:
        return "—"
    return f"{fwd:.2%} / {back:.2%}"


def linux_loss_section(results: Results) -> list[str]:
    """The linux-loss table: one row per path, Linux and udptcp side by side."""
    s = results.settings
    labels = dict((spec, label) for label, spec in LINUX_PATHS)
    rows = []
    for path in s.linux_paths:
        tcp = results.get("linux-loss", "tcp", "uvloop", path=path)
        mine = results.get("linux-loss", "udptcp", "uvloop", path=path)
        rows.append(
            [
                labels.get(path, path or "no impairment"),
                f"`{path}`" if path else "—",
                cell(tcp, "mbps"),
                cell(mine, "mbps"),
                _ratio(mine, tcp),
                _counts(tcp),
                _counts(mine),
                f"{_measured_loss(tcp)}; {_measured_loss(mine)}",
            ]
        )
    header = [
        "path",
        "impairment, each way",
        f"Linux ({LINUX_STACK.split('-')[1].upper()}) MB/s",
        "udptcp MB/s",
        "udptcp / Linux",
        "Linux retx / recoveries / RTOs / TLPs",
        "udptcp retx / recoveries / RTOs / TLPs",
        "loss measured fwd / back: Linux; udptcp",
    ]
    seeds = sorted({x["seed"] for c in results.cases for x in c.samples if "seed" in x})
    return [
        f"### {SCENARIOS['linux-loss']}",
        "",
        *table(header, rows),
        "",
        f"`python -m udptcp.tools.losslab` (seeds {', '.join(map(str, seeds)) or '—'}): "
        f"{s.linux_size / 1e6:g} MB one way, or as much as arrives in {s.linux_cap:g} s. "
        "Kernel TCP runs between two network namespaces joined by TUN devices through a "
        "user-space wire (`udptcp.tools.tunpair`) that applies the relay's impairment "
        "pipeline to every IP packet, one packet per segment (no offloads; the largest "
        "packet and the kernel's own segment count are checked); the sending socket's "
        "congestion control is set to CUBIC explicitly, since a new namespace inherits the "
        "host's default (BBR on this machine). udptcp (defaults) runs through "
        "`udptcp.tools.relay` with the same impairment and seed, receiver in its own process. "
        "Goodput: bytes delivered over the time from the first write to the last byte "
        "(slow start included). Counters: the kernel's `TCP_INFO` total_retrans and "
        "`TcpExt` TCPSackRecovery + TCPRenoRecovery, TCPTimeouts, TCPLossProbes of the "
        "sending namespace; udptcp's retransmits, sack_recoveries, timeouts, "
        "tail_loss_probes. The first row has no impairment at all: the ceiling of the "
        "Python wire (kernel) and of the relay with udptcp's own processes; a figure near "
        "it is the wire's, not the stack's. The no-loss rows show what the delay line and "
        "the receive windows allow (udptcp's default receive buffer, 1 MiB, caps it at "
        "10 MB/s on 100 ms; the kernel's autotuning goes to its tcp_rmem maximum). The "
        "last row puts an 80 Mbit/s bottleneck (relay `rate`, 1000-datagram drop-tail "
        "queue) under the udptcp path's ceiling.",
        *results.notes(("linux-loss",)),
        "",
    ]


def write(out_dir: Path, cases: list[Case], settings: Settings, meta: dict[str, Any]) -> Path:
    """Write results.md and results.json into ``out_dir``; return results.md's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.md"
    path.write_text(render(Results(cases, settings), meta))
    raw = {
        "meta": meta,
        "settings": {k: v for k, v in vars(settings).items()},
        "cases": [
            {
                "scenario": c.scenario,
                "peer": c.peer,
                "loop": c.loop,
                "loss": c.loss,
                "path": c.path,
                "not_applicable": c.not_applicable,
                "samples": c.samples,
            }
            for c in cases
        ],
    }
    (out_dir / "results.json").write_text(json.dumps(raw, indent=1) + "\n")
    return path


README_KEEP = "<!-- bench:keep -->"
README_KEEP_END = "<!-- bench:keep-end -->"


def _kept_sections(text: str) -> dict[str, str]:
    """The README's hand-kept blocks by their ``### `` heading: measurements made with more
    repeats than a full run affords (the six-transfer Linux-loss table), which a full run
    must not overwrite with its single transfers."""
    kept: dict[str, str] = {}
    pos = 0
    while (start := text.find(README_KEEP, pos)) >= 0:
        end = text.find(README_KEEP_END, start)
        if end < 0:
            raise ValueError(f"{README_KEEP} without {README_KEEP_END}")
        block = text[start : end + len(README_KEEP_END)]
        heading = next((line for line in block.splitlines() if line.startswith("### ")), None)
        if heading is None:
            raise ValueError(f"a {README_KEEP} block has no ### heading")
        kept[heading] = block
        pos = end + len(README_KEEP_END)
    return kept


def _keep_sections(markdown: str, kept: dict[str, str]) -> str:
    """``markdown`` with each section whose heading has a kept block replaced by that block,
    followed by this run's own section folded away under a ``<details>`` element."""
    lines = markdown.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line not in kept:
            out.append(line)
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("### "):
            j += 1
        fresh = lines[i + 1 : j]
        while fresh and not fresh[-1].strip():
            fresh.pop()
        while fresh and not fresh[0].strip():
            fresh.pop(0)
        out += [
            kept[line],
            "",
            "<details><summary>This run's own figures for the same paths</summary>",
            "",
            *fresh,
            "",
            "</details>",
            "",
        ]
        i = j
    return "\n".join(out)


def update_readme(readme: Path, markdown: str) -> None:
    """Replace what is between the bench markers (which must exist) with ``markdown``,
    keeping any section the README wraps in ``<!-- bench:keep -->`` ...
    ``<!-- bench:keep-end -->`` (this run's version of it goes under it, folded)."""
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} markers")
    kept = _kept_sections(text[start:end])
    if kept:
        markdown = _keep_sections(markdown, kept)
    head = text[: start + len(README_START)]
    readme.write_text(head + "\n" + markdown.rstrip("\n") + "\n" + text[end:])
