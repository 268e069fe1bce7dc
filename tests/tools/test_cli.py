"""``python -m udptcp`` / ``udptcp``: every subcommand, run as the user runs it (subprocesses
on 127.0.0.1), with help, usage errors and failures that never print a traceback.

``rendezvous`` runs for real in tests/nat/test_rendezvous.py and ``nat-check`` in
tests/nat/test_kernel_lab.py (it needs a STUN server behind a NAT); here, their help and
usage errors.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from udptcp.cli import COMMANDS
from udptcp.tools.pcap import read_trace

SEED = 14
UDPTCP = [sys.executable, "-m", "udptcp"]
TIMEOUT = 60  # a hang guard only


def _run(*args: str, stdin: bytes = b"", timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*UDPTCP, *args], input=stdin, capture_output=True, timeout=timeout, cwd=_root()
    )


def _root() -> str:
    return str(Path(__file__).resolve().parents[2])


class Background:
    """A udptcp subcommand running in the background; stopped (by its pid) at the end."""

    def __init__(self, *args: str, stdin: Path | None = None, stdout: Path | None = None):
        self.stdin = open(stdin if stdin is not None else os.devnull, "rb")  # noqa: SIM115
        self.stdout = open(stdout if stdout is not None else os.devnull, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*UDPTCP, *args],
            stdin=self.stdin,
            stdout=self.stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=_root(),
            text=False,
        )

    def line_matching(self, pattern: str, stream: str = "stderr") -> re.Match[bytes]:
        """Read lines until one matches ``pattern`` (the process announcing its port)."""
        pipe = getattr(self.proc, stream)
        seen = []
        while True:
            line = pipe.readline()
            if not line:
                raise AssertionError(f"no line matching {pattern!r}; got {seen!r}")
            seen.append(line)
            match = re.search(pattern.encode(), line)
            if match:
                return match

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        self.stdin.close()
        self.stdout.close()


@pytest.fixture
def background() -> Iterator[list[Background]]:
    started: list[Background] = []
    yield started
    for proc in started:
        proc.stop()


def _start(started: list[Background], *args: str, **kw: Path) -> Background:
    proc = Background(*args, **kw)
    started.append(proc)
    return proc


def _no_traceback(result: subprocess.CompletedProcess) -> str:
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------ help, usage


def test_help_lists_every_subcommand() -> None:
    result = _run("--help")
    assert result.returncode == 0
    out = result.stdout.decode()
    assert out.startswith("usage: udptcp ")
    for name, help_text, _, _ in COMMANDS:
        assert name in out and help_text[:30] in " ".join(out.split())


@pytest.mark.parametrize("name", [c[0] for c in COMMANDS])
def test_each_subcommand_has_help(name: str) -> None:
    result = _run(name, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith(f"usage: udptcp {name} ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "the following arguments are required: COMMAND"),
        (("bogus",), "invalid choice: 'bogus'"),
        (("cat",), "give HOST PORT to connect, or -l PORT to listen"),
        (("cat", "127.0.0.1"), "give HOST PORT"),
        (("cat", "127.0.0.1", "http"), "not a port number: 'http'"),
        (("cat", "127.0.0.1", "70000"), "port out of range"),
        (("cat", "-l", "5000", "127.0.0.1"), "with -l, give no HOST PORT"),
        (("cat", "--progress", "--no-progress", "h", "1"), "not allowed with argument"),
        (("relay",), "the following arguments are required: --target"),
        (("relay", "--target", "127.0.0.1:9", "--both", "delay=10"), "'10' needs a unit"),
        (("relay", "--target", "no-such-host.invalid:9"), "cannot resolve --target host"),
        (("trace",), "the following arguments are required: FILE"),
        (("trace", "/nonexistent/trace.jsonl"), "cannot read /nonexistent/trace.jsonl"),
        (("rendezvous",), "the following arguments are required: --listen"),
        (("nat-check",), "the following arguments are required: --stun"),
    ],
)
def test_usage_errors_exit_2_with_a_message(args: tuple[str, ...], message: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    err = _no_traceback(result)
    assert err.startswith("usage: udptcp"), err
    assert message in err


def test_a_name_that_does_not_resolve_is_one_line(tmp_path: Path) -> None:
    result = _run("cat", "no-such-host.invalid", "9000")
    assert result.returncode == 2
    assert _no_traceback(result).strip() == (
        "udptcp cat: error: cannot resolve the host: Name or service not known"
    )


def test_a_refused_connection_is_one_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _run("cat", "127.0.0.1", str(port))  # nothing listens: ICMP port unreachable
    assert result.returncode == 1
    err = _no_traceback(result).strip()
    assert err.startswith("udptcp cat: error: Connect call failed") and "refused" in err


# ------------------------------------------------------------------------------ cat


def _listen(started: list[Background], out: Path, *extra: str, stdin: Path | None = None) -> int:
    server = _start(started, "cat", "-l", "0", "-v", *extra, stdout=out, stdin=stdin)
    return int(server.line_matching(r"listening on [\d.]+:(\d+)").group(1))


def _summary(err: str) -> tuple[int, int, float]:
    match = re.search(r"sent .* \((\d+) bytes\), received .* \((\d+) bytes\) in ([\d.]+) s: ", err)
    assert match is not None, err
    return int(match.group(1)), int(match.group(2)), float(match.group(3))


def test_cat_carries_both_directions_and_half_closes(
    tmp_path: Path, background: list[Background]
) -> None:
    server_in = tmp_path / "server_in"
    server_in.write_bytes(b"hello from the listener\n")
    server_out = tmp_path / "server_out"
    port = _listen(background, server_out, stdin=server_in)
    result = _run("cat", "127.0.0.1", str(port), stdin=b"hello from the client\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello from the listener\n"
    assert _summary(_no_traceback(result))[:2] == (22, 24)
    server = background[0]
    assert server.proc.wait(TIMEOUT) == 0
    assert server_out.read_bytes() == b"hello from the client\n"
    assert _summary(server.proc.stderr.read().decode())[:2] == (24, 22)  # type: ignore[union-attr]


def test_cat_ten_megabytes_through_the_relay_at_five_percent_loss(
    tmp_path: Path, background: list[Background]
) -> None:
    size = 10_000_000
    data = random.Random(SEED).randbytes(size)
    source, sink, trace = tmp_path / "source", tmp_path / "sink", tmp_path / "client.jsonl"
    source.write_bytes(data)
    port = _listen(background, sink)
    relay = _start(
        background,
        "relay",
        "--target",
        f"127.0.0.1:{port}",
        "--both",
        "loss=5%",
        "--seed",
        str(SEED),
    )
    relay_port = int(relay.line_matching(r"relay [\d.]+:(\d+) ->", "stdout").group(1))
    client = subprocess.run(
        [
            *UDPTCP,
            "cat",
            "127.0.0.1",
            str(relay_port),
            "--progress",
            "--stats",
            "--trace",
            str(trace),
        ],
        stdin=source.open("rb"),
        capture_output=True,
        timeout=TIMEOUT,
        cwd=_root(),
    )
    assert client.returncode == 0, client.stderr
    assert background[0].proc.wait(TIMEOUT) == 0
    assert hashlib.sha256(sink.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    err = _no_traceback(client)
    sent, received, seconds = _summary(err)
    assert (sent, received) == (size, 0)
    print(f"10 MB through 5% loss each way: {seconds:.2f} s ({size / seconds / 1e6:.2f} MB/s)")
    assert "10.0M/10.0M" in err  # tqdm's bar, total from the file's size
    stats = err.splitlines()[-2]  # --stats: the ss -ti style line before the summary
    retrans = int(re.search(r" retrans:\d+/(\d+)", stats).group(1))  # type: ignore[union-attr]
    bytes_sent = int(re.search(r" bytes_sent:(\d+)", stats).group(1))  # type: ignore[union-attr]
    assert retrans > 100 and size < bytes_sent <= size + retrans * 1440
    assert f"bytes_acked:{size + 1} " in stats  # every byte and the FIN
    with trace.open() as f:
        events = read_trace(f)
    resent = sum(1 for e in events if e["event"] == "segment_sent" and e["len"]) - -(-size // 1440)
    assert resent >= retrans - 5  # the trace holds the retransmissions too (TLPs may be new data)


def test_cat_without_tqdm_has_no_bar_but_the_summary(
    tmp_path: Path, background: list[Background]
) -> None:
    port = _listen(background, tmp_path / "out")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    (tmp_path / "tqdm.py").write_text("raise ImportError('no tqdm here')\n")
    result = subprocess.run(
        [*UDPTCP, "cat", "127.0.0.1", str(port), "--progress"],
        input=b"x" * 100_000,
        capture_output=True,
        timeout=TIMEOUT,
        cwd=_root(),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    err = _no_traceback(result)
    assert "it/s" not in err and "B/s]" not in err  # no tqdm bar
    assert _summary(err)[0] == 100_000


# ------------------------------------------------------------------------------ relay


def test_relay_runs_and_prints_its_counters() -> None:
    result = _run("relay", "--target", "127.0.0.1:9", "--both", "delay=1ms", "--duration", "0.2")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "forward[delay=0.001]" in out and "[final] forward:" in out


def test_relay_help_states_the_units() -> None:
    out = " ".join(_run("relay", "--help").stdout.decode().split())
    assert "Times need a unit (us, ms, s)" in out and "loss=5%," in out and "%%" not in out


# ------------------------------------------------------------------------------ trace


@pytest.fixture(scope="module")
def a_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A client trace of a small cat session."""
    tmp = tmp_path_factory.mktemp("trace")
    started: list[Background] = []
    try:
        port = _listen(started, tmp / "out")
        trace = tmp / "client.jsonl"
        result = _run("cat", "127.0.0.1", str(port), "--trace", str(trace), stdin=b"x" * 5000)
        assert result.returncode == 0, result.stderr
        assert started[0].proc.wait(TIMEOUT) == 0
    finally:
        for proc in started:
            proc.stop()
    return trace


def test_trace_prints_the_ladder(a_trace: Path) -> None:
    result = _run("trace", str(a_trace))
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    lines = out.splitlines()
    assert lines[0].startswith("A 127.0.0.1:") and " B 127.0.0.1:" in lines[0]
    assert "CLOSED -> SYN-SENT" in lines[1]
    assert re.search(r"  SYN seq=x <mss \d+,wscale \d+,sackOK,TS>  ------>$", lines[2])
    assert re.search(r"  <------  SYN,ACK seq=y ack=x\+1 <mss", lines[3])
    assert "ACK seq=x+1 ack=y+1 win=" in lines[4]
    assert "FIN,ACK seq=x+5001" in out
    # The listener's stdin is empty, so its FIN may well come first.
    assert "-> TIME-WAIT" in out or "LAST-ACK -> CLOSED" in out


def test_trace_writes_a_pcap(a_trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "client.pcap"
    result = _run("trace", str(a_trace), "--pcap", str(out))
    assert result.returncode == 0, result.stderr
    with a_trace.open() as f:
        segments = sum(e["event"].startswith("segment_") for e in read_trace(f))
    assert result.stderr.decode().strip() == f"{segments} segments written to {out}"
    assert result.stdout == b""  # no ladder unless asked
    raw = out.read_bytes()
    assert raw[:4] == (0xA1B2C3D4).to_bytes(4, "little") and len(raw) > 24 + 16 * segments


def test_trace_reads_standard_input_and_rejects_what_is_not_a_trace(a_trace: Path) -> None:
    result = _run("trace", "-", stdin=a_trace.read_bytes())
    assert result.returncode == 0 and b"SYN seq=x" in result.stdout
    bad = _run("trace", "-", stdin=b'{"event": "trace_start"}\nnot json\n')
    assert bad.returncode == 2
    assert "- is not a udptcp trace: line 2: not JSON" in _no_traceback(bad)


def test_cat_prints_ss_style_statistics_on_sigusr1(
    tmp_path: Path, background: list[Background]
) -> None:
    server = _start(background, "cat", "-l", "0", "-v", "-q", stdout=tmp_path / "out")
    port = int(server.line_matching(r"listening on [\d.]+:(\d+)").group(1))
    client = subprocess.Popen(
        [*UDPTCP, "cat", "-v", "-q", "127.0.0.1", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=_root(),
    )
    try:
        assert client.stdin is not None and client.stderr is not None
        assert client.stderr.readline().startswith(b"connected to 127.0.0.1:")
        client.stdin.write(b"z" * 10_000)
        client.stdin.flush()
        server.line_matching(r"connection from 127\.0\.0\.1:")
        os.kill(client.pid, signal.SIGUSR1)
        line = client.stderr.readline().decode()
        # (The listener's stdin is empty: it may have half-closed already.)
        assert re.match(r"(ESTABLISHED|CLOSE-WAIT) cubic wscale:5,5 rto:\d+ ", line), line
        assert re.search(r" mss:\d+ pmtu:\d+ cwnd:\d+ ", line) and " segs_out:" in line
        client.stdin.close()  # EOF: half-close, then both ends finish
        assert client.wait(TIMEOUT) == 0 and server.proc.wait(TIMEOUT) == 0
        assert client.stderr.read() == b""  # -q: no summary line
        assert (tmp_path / "out").read_bytes() == b"z" * 10_000
    finally:
        if client.poll() is None:
            os.kill(client.pid, signal.SIGKILL)
            client.wait()
        client.stderr.close()  # type: ignore[union-attr]
