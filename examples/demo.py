"""udptcp demo: TCP's handshake, release and TIME-WAIT, segment by segment, over UDP.

A server and a client run on 127.0.0.1; every datagram between them passes an impairment
relay that loses some of them. The demo prints each segment of the three-way handshake and
the four-way release as it is sent (flags, sequence and acknowledgment numbers, SYN
options), what the relay did to it, why a segment was sent again, and every state change
on both sides (LISTEN, SYN-SENT, SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2,
CLOSE-WAIT, LAST-ACK, TIME-WAIT, CLOSED); then the client's TIME-WAIT and its statistics.

It runs on a virtual clock (udptcp.tools.vclock): times are what the two stacks saw, the
run takes well under a second, and the same seed prints the same transcript every time.

    python examples/demo.py [--loss 0.1] [--seed 3] [--verbose] [--uvloop]

--loss     fraction of datagrams the relay drops in each direction (default 0.1)
--seed     the relay's random seed: which datagrams are lost (default 3)
--verbose  also print the chat's data segments and their ACKs
--uvloop   run on uvloop in real time (times, and under load retransmissions, then vary)
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from dataclasses import dataclass, field

import udptcp
from udptcp.aio.endpoint import Endpoint
from udptcp.core.connection import Connection, State
from udptcp.core.segment import FIN, SYN, MalformedSegment, Segment, decode
from udptcp.core.seq import seq_add, seq_lt
from udptcp.tools.relay import Impairment, Record, Relay
from udptcp.tools.vclock import VirtualClockLoop

# Shortened timers, so that a lost segment is resent quickly and TIME-WAIT ends while you
# watch. The delayed ACK is shortened with the RTO floor: a lone segment's tail-loss probe
# fires at min(2 SRTT + delayed-ACK allowance, RTO) (RFC 8985 §7.2), and a 40 ms delayed ACK
# crossing a 10 ms round trip would arrive at the 50 ms floor exactly.
CONFIG = udptcp.Config(msl=1.0, rto_initial=0.3, rto_min=0.05, delayed_ack=0.02)
DELAY = 0.005  # the relay's one-way delay
LINES = ["hello, server", "how is the weather in UDP land?", "bye for now"]

LEGEND = """\
How to read it: each segment line is "time  sender -> receiver  FLAGS  seq=..  ack=..".
  x = the client's initial sequence number, y = the server's (each side picks its own);
  u = the sequence number of the client's FIN, w = that of the server's FIN; x+1 is one
  past x, y+89 is 89 past y: the SYN took one sequence number and each data byte one more.
  A SYN and a FIN each use up one sequence number, so the answer to seq=x is ack=x+1:
  "ack=" names the next sequence number its sender expects, everything before it received.
  "ack=" is shown only when the ACK flag is set; len= counts data bytes. A SYN's
  options: MSS = the most data per segment its sender accepts, window scale = the shift
  applied to its window field, SACK permitted = it can report what arrived past a hole,
  timestamps = each segment carries a clock value (RTT on every ACK, old segments told apart).
  Lines without an arrow are state changes; times are seconds since the server started."""


@dataclass
class Side:
    """What the transcript remembers about one side's connection."""

    name: str  # "client" or "server"
    peer: str
    endpoint: Endpoint
    conn: Connection | None = None
    printed_states: int = 0
    sent_end: int | None = None  # one past the highest sequence number sent
    received_end: int | None = None  # one past the highest sequence number received
    last_ack: tuple[int, int] | None = None  # (seq, ack) of the last segment without data
    counters: dict[str, int] = field(default_factory=dict)
    repeat_in: str | None = None  # a repeated segment just received: what it was
    left_time_wait: bool = False  # its TIME-WAIT record has been forgotten


@dataclass
class Line:
    """One sent segment, printed once the relay has decided its fate."""

    time: float
    side: Side
    seg: Segment
    note: str
    lost: bool = False


class Transcript:
    """Prints what both endpoints send, what the relay does, and both sides' states."""

    def __init__(self, loop: asyncio.AbstractEventLoop, verbose: bool) -> None:
        self.loop = loop
        # How long after a send its line is printed: by then the relay has read the datagram
        # and decided its fate. On the virtual clock the relay reads it before any timer
        # runs; in real time (uvloop) give it a couple of milliseconds.
        self.flush_delay = 1e-6 if isinstance(loop, VirtualClockLoop) else 0.002
        self.start = loop.time()
        self.verbose = verbose
        self.show = True  # False during the chat unless verbose
        self.hidden = 0
        self.names: dict[int, str] = {}
        self.sides: list[Side] = []
        self.pending: list[Line] = []

    # ---------------------------------------------------------------- what to watch

    def watch(self, name: str, peer: str, endpoint: Endpoint) -> None:
        """Trace every segment ``endpoint`` sends and receives, as ``name``."""
        side = Side(name, peer, endpoint)
        self.sides.append(side)

        def trace(direction: str, _addr: object, seg: Segment) -> None:
            if direction == "out":
                self._sent(side, seg)
            else:
                self._received(side, seg)

        endpoint.trace = trace

    async def note(self, text: str) -> None:
        """Print an event of the program itself (a call it made, what it read)."""
        now = self._t()
        while self.pending:  # segments sent just before are printed first
            await asyncio.sleep(self.flush_delay)
        self.states()
        print(f"{now}  {text}")

    def states(self) -> None:
        """Print every state change not printed yet, on both sides."""
        for side in self.sides:
            if side.conn is None:
                for transport in side.endpoint.connections():
                    side.conn = transport.get_extra_info("udptcp_connection")
                    break
            if side.conn is None:
                continue
            history = side.conn.state_history
            if side.printed_states == 0:
                side.printed_states = 1
            while side.printed_states < len(history):
                before, after = history[side.printed_states - 1], history[side.printed_states]
                side.printed_states += 1
                if self.show:
                    print(f"{self._t()}  {side.name}: {before.value} -> {after.value}")
            if history[-1] is State.TIME_WAIT and not side.left_time_wait:
                if not self.in_time_wait(side):
                    side.left_time_wait = True
                    print(f"{self._t()}  {side.name}: TIME-WAIT -> CLOSED")

    def in_time_wait(self, side: Side) -> bool:
        """Whether ``side``'s connection is still in TIME-WAIT. The endpoint keeps a closed
        connection's TIME-WAIT as a small record (``Endpoint.time_waits()``) instead of the
        connection itself, so its state history ends at TIME-WAIT."""
        conn = side.conn
        if conn is None or conn.state is not State.TIME_WAIT:
            return False
        if any(t.get_extra_info("udptcp_connection") is conn for t in side.endpoint.connections()):
            return True
        return bool(side.endpoint.time_waits())

    # ---------------------------------------------------------------- segments

    def _t(self) -> str:
        return f"{self.loop.time() - self.start:7.3f}s"

    def _received(self, side: Side, seg: Segment) -> None:
        # A segment whose sequence space was all received before is a repeat: the peer
        # resent it, or the relay delivered it twice. Our answer is then a duplicate.
        end = _seq_end(seg)
        if end != seg.seq and side.received_end is not None and not seq_lt(side.received_end, end):
            side.repeat_in = f"a repeated {_kind(seg)}"
        elif end != seg.seq:
            side.received_end = end
        self.loop.call_soon(self.states)  # after the endpoint has handled it

    def _sent(self, side: Side, seg: Segment) -> None:
        self.states()
        if side.conn is None:
            return
        counters = dict(side.conn.stats_counters)
        grew = {k for k, v in counters.items() if v > side.counters.get(k, 0)}
        side.counters = counters
        note = ""
        end = _seq_end(seg)
        if end != seg.seq:  # SYN, FIN or data: takes sequence space
            if side.sent_end is not None and seq_lt(seg.seq, side.sent_end):
                note = "resent: " + _why_resent(grew, side, seg)
            if side.sent_end is None or seq_lt(side.sent_end, end):
                side.sent_end = end
        elif side.last_ack == (seg.seq, seg.ack) and side.repeat_in is not None:
            note = f"duplicate ACK: answers {side.repeat_in}"
        if end == seg.seq:
            side.last_ack = (seg.seq, seg.ack)
        side.repeat_in = None
        if not self.show:
            self.hidden += 1
            return
        line = Line(self.loop.time(), side, seg, note)
        self.pending.append(line)
        # The relay reads the datagram in the loop's next turn; print after it has.
        self.loop.call_later(self.flush_delay, self._flush, line)

    def relay_record(self, rec: Record) -> None:
        """The relay's account of one datagram: losses mark the pending line."""
        if rec.fate.startswith("dropped"):
            try:
                seg = decode(rec.data)
            except MalformedSegment:
                return
            for line in self.pending:
                if line.seg == seg:
                    line.lost = True
                    return
        elif rec.fate == "duplicate" and self.show:
            who = "client -> server" if rec.direction == "forward" else "server -> client"
            try:
                what = self._describe(decode(rec.data), rec.direction == "forward")
            except MalformedSegment:
                return
            print(f"{self._t()}  {who}  {what}   duplicated by the relay: a second copy")

    def _flush(self, line: Line) -> None:
        self.pending.remove(line)
        seg, side = line.seg, line.side
        t = f"{line.time - self.start:7.3f}s"
        fate = "   LOST by the relay" if line.lost else ""
        note = f"   ({line.note})" if line.note else ""
        what = self._describe(seg, side.name == "client")
        print(f"{t}  {side.name} -> {side.peer}  {what}{fate}{note}")
        if seg.flags & SYN and seg.options is not None:
            print(f"{'':10}options: {_options(seg)}")

    def _describe(self, seg: Segment, from_client: bool) -> str:
        flags = seg.flag_names()
        names = flags.split(",")
        letter = None
        if "SYN" in names:
            letter = "x" if from_client else "y"
        elif "FIN" in names:
            letter = "u" if from_client else "w"
        seq = self._name(seg.seq, letter)
        ack = f"  ack={self._name(seg.ack)}" if "ACK" in names else ""
        data = f"  len={len(seg.payload)}" if seg.payload else ""
        return f"{flags:<8} seq={seq}{ack}{data}"

    def _name(self, value: int, letter: str | None = None) -> str:
        """``value`` as the letters name it: a letter, or the nearest letter plus an offset."""
        if letter is not None and letter not in self.names.values():
            self.names[value] = letter
        for base, name in reversed(self.names.items()):  # the newest letter wins
            d = (value - base) & 0xFFFFFFFF
            if d < 1 << 20:
                return name if d == 0 else f"{name}+{d}"
        return str(value)


def _seq_end(seg: Segment) -> int:
    """One past the last sequence number ``seg`` occupies (SYN and FIN count one each)."""
    return seq_add(seg.seq, len(seg.payload) + bool(seg.flags & SYN) + bool(seg.flags & FIN))


def _kind(seg: Segment) -> str:
    if seg.flags & SYN:
        return seg.flag_names()
    if seg.flags & FIN:
        return "FIN"
    return "data segment"


def _why_resent(grew: set[str], side: Side, seg: Segment) -> str:
    """Why ``side`` sent sequence space again, from the counters that just moved."""
    if "timeouts" in grew:
        return "no ACK before the retransmission timer (RTO) expired"
    if "tail_loss_probes" in grew:
        return "tail-loss probe: the last segment went unacknowledged (RFC 8985)"
    if "fast_retransmits" in grew:
        return "fast retransmit: duplicate ACKs or SACK reported a hole"
    if side.repeat_in is not None:
        return f"answers {side.repeat_in}: our first answer may have been lost"
    return "retransmission"


def _options(seg: Segment) -> str:
    opts = seg.options
    assert opts is not None
    parts = []
    if opts.mss is not None:
        parts.append(f"MSS {opts.mss}")
    if opts.wscale is not None:
        parts.append(f"window scale {opts.wscale}")
    if opts.sack_permitted:
        parts.append("SACK permitted")
    if opts.timestamps is not None:
        parts.append("timestamps")
    return ", ".join(parts) or "none"


class ChatServer(asyncio.Protocol):
    """Answers each line; after the client's FIN it says goodbye, then closes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.transport.write(b"you said: " + line + b"\n")

    def eof_received(self) -> bool:
        # The client is done sending (half-close): we may still talk, then close.
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, self.transport.write, b"goodbye!\n")
        loop.call_later(0.6, self.transport.close)
        return True


class ChatClient(asyncio.Protocol):
    def __init__(self) -> None:
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.buffer = b""
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.lines.put_nowait(line.decode())

    def eof_received(self) -> None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(exc)


async def main(loss: float, seed: int, verbose: bool) -> None:
    loop = asyncio.get_running_loop()
    out = Transcript(loop, verbose)
    print(
        f"A client and a server on 127.0.0.1; every datagram between them crosses a relay\n"
        f"that loses {loss:.0%} of them in each direction (seed {seed}) and delays each by"
        f" {DELAY * 1000:.0f} ms.\n"
        f"Timers shortened for the demo: RTO {CONFIG.rto_initial * 1000:.0f} ms at first and"
        f" never below {CONFIG.rto_min * 1000:.0f} ms (defaults: 1 s, 200 ms);\n"
        f"delayed ACKs {CONFIG.delayed_ack * 1000:.0f} ms (default 40 ms);"
        f" MSL {CONFIG.msl:.0f} s, so TIME-WAIT lasts 2×MSL = {2 * CONFIG.msl:.0f} s"
        f" (default 2×30 s)."
    )
    print(LEGEND + "\n")

    server = await udptcp.create_server(ChatServer, "127.0.0.1", 0, config=CONFIG)
    server_port = server.sockets[0].getsockname()[1]
    (server_endpoint,) = server.endpoints
    out.watch("server", "client", server_endpoint)
    path = Impairment(loss=loss, delay=DELAY)
    relay = Relay(
        ("127.0.0.1", server_port),
        forward=path,
        backward=path,
        seed=seed,
        on_record=out.relay_record,
    )
    relay_host, relay_port = await relay.start()
    # The client's own UDP socket, so that its endpoint can be traced from the first SYN.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    client_endpoint = Endpoint.for_socket(loop, sock, CONFIG)
    out.watch("client", "server", client_endpoint)

    print("== three-way handshake ==")
    await out.note("server: LISTEN (create_server: a passive open, waiting for a SYN)")
    await out.note("client: calls create_connection (an active open)")
    transport, client = await udptcp.create_connection(
        ChatClient, relay_host, relay_port, sock=sock, config=CONFIG
    )
    await asyncio.sleep(0.05)  # let the third segment cross before the chat starts
    out.states()
    conn = transport.get_extra_info("udptcp_connection")

    print("\n== chat ==")
    out.show = verbose
    for line in LINES:
        await out.note(f"client says: {line}")
        transport.write(line.encode() + b"\n")
        answer = await asyncio.wait_for(client.lines.get(), 10)
        await out.note(f"server says: {answer}")
    await asyncio.sleep(0.1)
    out.states()
    if not verbose:
        print(f"   ({out.hidden} segments carried the chat and its ACKs; --verbose shows them)")
    out.show = True

    print("\n== four-way release (the client closes first) ==")
    await out.note("client: write_eof() (no more data from the client: FIN)")
    transport.write_eof()
    answer = await asyncio.wait_for(client.lines.get(), 10)
    await out.note(f"server says: {answer}")
    await asyncio.wait_for(client.closed, 10)
    closed_at = loop.time()
    await out.note("client: connection_lost(None) (the application is done)")
    print(f"{'':10}the client waits 2×MSL = {2 * CONFIG.msl:.0f} s in TIME-WAIT, in case its last")
    print(f"{'':10}ACK was lost and the server's FIN comes again ...")
    client_side = out.sides[-1]
    while out.in_time_wait(client_side):
        await asyncio.sleep(0.001)
    out.states()
    lasted = loop.time() - closed_at
    restarted = (
        " (it restarts when the server's FIN comes again)" if lasted > 2 * CONFIG.msl + 0.01 else ""
    )
    print(f"{'':10}... TIME-WAIT lasted {lasted:.2f} s{restarted}\n")

    stats = conn.stats()
    print("== client connection statistics ==")
    srtt = stats["srtt"] or 0.0
    print(f"   smoothed RTT {srtt * 1000:.2f} ms, RTO {stats['rto'] * 1000:.0f} ms")
    print(
        f"   segments sent {stats['segments_sent']}, received {stats['segments_received']},"
        f" retransmitted {stats['retransmits']} ({stats['timeouts']} timeouts,"
        f" {stats['fast_retransmits']} fast retransmits)"
    )
    print(f"   bytes sent {stats['bytes_sent']}, received {stats['bytes_received']}")
    print(
        f"   relay dropped {relay.forward_stats.dropped_loss} datagrams client->server and "
        f"{relay.backward_stats.dropped_loss} server->client"
    )
    await relay.close()
    server.close()
    await server.wait_closed()


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python examples/demo.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--loss", type=float, default=0.1, help="loss rate each way (0.1)")
    parser.add_argument("--seed", type=int, default=3, help="relay random seed (3)")
    parser.add_argument("--verbose", action="store_true", help="also show the chat's segments")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, in real time")
    args = parser.parse_args(argv)
    coro = asyncio.wait_for(main(args.loss, args.seed, args.verbose), 60)
    if args.uvloop:
        import uvloop

        uvloop.run(coro)
    else:
        loop = VirtualClockLoop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(coro)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(run())
