"""``udptcp cat``: netcat over udptcp. Standard input goes to the connection, what arrives
goes to standard output.

``udptcp cat HOST PORT`` connects; ``udptcp cat -l PORT`` listens and takes one connection.
When standard input ends, the connection is half-closed (FIN, as ``nc -N``); the program
ends once the peer has closed its side too. A progress bar (from ``tqdm``, the ``cli``
extra; none without it) counts the bytes moved when standard error is a terminal or with
``--progress``; a last line gives the bytes, time and throughput (``-q`` leaves it out).
SIGUSR1 prints the connection's statistics in ``ss -ti`` style, as ``dd`` prints its
progress.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import stat
import sys
import time
from typing import IO, Any

import udptcp
from udptcp.core.connection import Connection, State
from udptcp.core.stats import ConnectionStats

__all__ = ["add_arguments", "run", "ss_line"]

CHUNK = 256 * 1024
#: How often the end of an upload looks whether the peer acknowledged everything.
ACK_POLL = 0.005
#: How often TIME-WAIT at the end looks whether the peer spoke again.
LINGER_POLL = 0.05


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``udptcp cat``'s options."""
    parser.add_argument("host", nargs="?", metavar="HOST", help="host to connect to (not with -l)")
    parser.add_argument(
        "port", nargs="?", type=_port, metavar="PORT", help="its UDP port (not with -l)"
    )
    parser.add_argument(
        "-l",
        "--listen",
        type=_port,
        metavar="PORT",
        help="listen on this UDP port (0: any free one) and take one connection",
    )
    parser.add_argument(
        "-s", "--bind", default=None, metavar="HOST", help="local address to listen on (-l)"
    )
    parser.add_argument(
        "--vport",
        type=_port,
        default=None,
        metavar="N",
        help="destination virtual port (default: the UDP port)",
    )
    parser.add_argument(
        "--trace", metavar="FILE", help="write the connection's segments as JSON lines"
    )
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress", action="store_true", help="show the progress bar even if not on a terminal"
    )
    bar.add_argument("--no-progress", action="store_true", help="never show the progress bar")
    parser.add_argument(
        "--stats", action="store_true", help="print the connection's statistics at the end"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar, no summary line"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="say where it listens or connects"
    )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value}")
    return value


def check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Usage errors: the right positional arguments for the mode."""
    if args.listen is not None:
        if args.host is not None:
            parser.error("with -l, give no HOST PORT (the port is -l's)")
    elif args.host is None or args.port is None:
        parser.error("give HOST PORT to connect, or -l PORT to listen")
    elif args.port == 0:
        parser.error("port 0 is not a destination")


def ss_line(st: ConnectionStats) -> str:
    """One connection's statistics in the style of ``ss -ti``."""
    ms = 1000.0
    parts = [st.state, st.congestion_control]
    if st.snd_wscale or st.rcv_wscale:
        parts.append(f"wscale:{st.snd_wscale},{st.rcv_wscale}")
    parts.append(f"rto:{st.rto * ms:.0f}")
    if st.srtt is not None and st.rttvar is not None:
        parts.append(f"rtt:{st.srtt * ms:.3f}/{st.rttvar * ms:.3f}")
    parts += [f"mss:{st.mss}", f"pmtu:{st.pmtu}", f"cwnd:{st.cwnd // max(st.mss, 1)}"]
    if st.ssthresh < 1 << 30:
        parts.append(f"ssthresh:{st.ssthresh // max(st.mss, 1)}")
    parts += [
        f"bytes_sent:{st.bytes_sent}",
        f"bytes_acked:{st.bytes_acked}",
        f"bytes_received:{st.bytes_received}",
        f"segs_out:{st.segments_sent}",
        f"segs_in:{st.segments_received}",
        f"unacked:{st.bytes_in_flight}B",
        f"retrans:{st.rto_backoffs}/{st.retransmits}",
        f"timeouts:{st.timeouts}",
        f"sack_recoveries:{st.sack_recoveries}",
        f"tlp:{st.tail_loss_probes}",
        f"dsack_dups:{st.dsacks_received}",
        f"rcv_ooo:{st.out_of_order_segments}",
        f"snd_wnd:{st.snd_wnd}",
        f"rcv_wnd:{st.rcv_wnd}",
    ]
    if st.pacing_rate is not None:
        parts.append(f"pacing_rate:{st.pacing_rate * 8 / 1e6:.1f}Mbps")
    return " ".join(parts)


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"  # pragma: no cover - the loop returns


class _Progress:
    """A tqdm bar on standard error, or nothing."""

    def __init__(self, show: bool, total: int | None) -> None:
        self._bar: Any = None
        if show:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1000,
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
            )

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _stdin_size(fd: int) -> int | None:
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


async def _session(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    args: argparse.Namespace,
    stdin_fd: int,
    stdout: IO[bytes],
    hello: str,
) -> tuple[int, int, float, Connection]:
    """Copy both ways until both ends are done; returns (sent, received, seconds, the
    connection).
    ``hello`` (with ``-v``) is printed once SIGUSR1 is handled, so a script that waits for
    it may send the signal."""
    loop = asyncio.get_running_loop()
    show = not args.quiet and not args.no_progress and (args.progress or sys.stderr.isatty())
    progress = _Progress(show, _stdin_size(stdin_fd))
    transport = writer.transport
    counts = [0, 0]
    started = time.monotonic()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
        loop.add_signal_handler(
            signal.SIGUSR1,
            lambda: print(ss_line(transport.get_extra_info("stats")), file=sys.stderr, flush=True),
        )
    if args.verbose:
        print(hello, file=sys.stderr, flush=True)

    async def upload() -> None:
        while True:
            chunk = await loop.run_in_executor(None, os.read, stdin_fd, CHUNK)
            if not chunk:
                break
            writer.write(chunk)
            counts[0] += len(chunk)
            progress.update(len(chunk))
            await writer.drain()
        if not transport.is_closing():
            writer.write_eof()

    async def download() -> None:
        while True:
            chunk = await reader.read(CHUNK)
            if not chunk:
                break
            stdout.write(chunk)
            stdout.flush()
            counts[1] += len(chunk)
            progress.update(len(chunk))

    sending = asyncio.ensure_future(upload())
    try:
        await download()
        # The peer closed its side: what we still have to say goes out, unless the
        # connection is gone (then there is nobody to say it to).
        if not transport.is_closing():
            await sending
        else:
            sending.cancel()
    finally:
        if not sending.done():
            sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sending
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
            loop.remove_signal_handler(signal.SIGUSR1)
        progress.close()
    # Sent means acknowledged: wait for the peer's ACK of our last byte and FIN (at most
    # as long as the loop's shutdown would linger for them anyway).
    deadline = time.monotonic() + transport.get_extra_info("udptcp_connection").config.exit_linger
    while counts[0] and time.monotonic() < deadline:
        st = transport.get_extra_info("stats")
        if st.bytes_acked >= counts[0] or st.state in ("CLOSED", "TIME-WAIT"):
            break
        await asyncio.sleep(ACK_POLL)
    elapsed = time.monotonic() - started
    if args.stats:
        print(ss_line(transport.get_extra_info("stats")), file=sys.stderr)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return counts[0], counts[1], elapsed, transport.get_extra_info("udptcp_connection")


async def _linger_in_time_wait(conn: Connection) -> None:
    """Stay while the connection is in TIME-WAIT until the peer has been silent for three
    retransmission timeouts (at least a second).

    Kernel TCP keeps TIME-WAIT after the process exits; ours ends with the process. If our
    last ACK was lost, the peer sends its FIN again after its RTO, and someone must answer
    it, or the peer is left in LAST-ACK retransmitting to a closed port (RFC 9293
    §3.10.7.4: TIME-WAIT re-acknowledges a retransmitted FIN).
    """
    loop = asyncio.get_running_loop()
    quiet = max(1.0, 3 * conn.rtt.rto)
    heard = conn.stats_counters["segments_received"]
    since = loop.time()
    while conn.state is State.TIME_WAIT and loop.time() - since < quiet:
        await asyncio.sleep(LINGER_POLL)
        if conn.stats_counters["segments_received"] != heard:
            heard = conn.stats_counters["segments_received"]
            since = loop.time()


async def _main(args: argparse.Namespace) -> int:
    config = udptcp.Config(trace=args.trace)
    stdin_fd = sys.stdin.fileno()
    stdout = sys.stdout.buffer
    if args.listen is not None:
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        accepted = asyncio.get_running_loop().create_future()

        def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if accepted.done():
                writer.transport.abort()  # one connection, as nc -l
            else:
                accepted.set_result((reader, writer))

        server = await udptcp.start_server(take, args.bind or "0.0.0.0", args.listen, config=config)
        if args.verbose:
            host, port = server.sockets[0].getsockname()[:2]
            print(f"listening on {host}:{port}", file=sys.stderr, flush=True)
        try:
            reader, writer = await accepted
            server.close()  # take no more connections
            peer = writer.get_extra_info("peername")
            hello = f"connection from {peer[0]}:{peer[1]}"
            sent, received, elapsed, conn = await _session(
                reader, writer, args, stdin_fd, stdout, hello
            )
        finally:
            server.close()
    else:
        reader, writer = await udptcp.open_connection(
            args.host, args.port, config=config, vport=args.vport
        )
        peer = writer.get_extra_info("peername")
        hello = f"connected to {peer[0]}:{peer[1]}"
        sent, received, elapsed, conn = await _session(
            reader, writer, args, stdin_fd, stdout, hello
        )
    if not args.quiet:
        rate = (sent + received) / elapsed if elapsed > 0 else 0.0
        print(
            f"sent {_size(sent)} ({sent} bytes), received {_size(received)} ({received} bytes) "
            f"in {elapsed:.2f} s: {_size(rate)}/s",
            file=sys.stderr,
            flush=True,
        )
    await _linger_in_time_wait(conn)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``udptcp cat`` with parsed ``args``; returns the exit status."""
    return asyncio.run(_main(args))
