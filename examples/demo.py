"""udptcp demo: a short chat over TCP-in-UDP, through a lossy relay, showing the wire.

A server and a client run on 127.0.0.1; every datagram between them passes an impairment
relay that loses some of them. The demo prints what crossed the relay during the three-way
handshake and the four-way release (flags, seq, ack — the fields of the seed notes, with
x, y, u, w as there), the chat itself, the client's TIME-WAIT, and connection statistics.
It exits by itself in a few seconds.

    python examples/demo.py [--loss 0.1] [--seed 3] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import udptcp
from udptcp.core.segment import MalformedSegment, decode
from udptcp.tools.relay import Impairment, Record, Relay

# A short MSL so the demo can show TIME-WAIT ending (2 x MSL = 2 s); fast timers because
# loopback round trips take well under a millisecond.
CONFIG = udptcp.Config(msl=1.0, rto_initial=0.3, rto_min=0.05)
LINES = ["hello, server", "how is the weather in UDP land?", "bye for now"]


class Wire:
    """Prints segments as the relay saw them, naming sequence numbers as the seed does."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.show = True
        self.names: dict[int, str] = {}
        self.hidden = 0

    def name(self, value: int, letter: str | None = None) -> str:
        """``value`` as the seed writes it: a letter, or the nearest letter plus an offset."""
        if letter is not None and letter not in self.names.values():
            self.names[value] = letter
        for base, n in reversed(self.names.items()):  # the newest letter wins
            d = (value - base) & 0xFFFFFFFF
            if d < 1 << 20:
                return n if d == 0 else f"{n}+{d}"
        return str(value)

    def record(self, rec: Record) -> None:
        try:
            seg = decode(rec.data)
        except MalformedSegment as exc:
            if self.show:
                print(f"   {self._arrow(rec)}  (corrupted datagram: {exc.reason})")
            return
        if not self.show:
            self.hidden += 1
            return
        flags = seg.flag_names()
        letters = {"SYN": ("x", "y"), "FIN": ("u", "w")}
        seq_letter = None
        for flag, (client_letter, server_letter) in letters.items():
            if flag in flags.split(","):
                seq_letter = client_letter if rec.direction == "forward" else server_letter
        seq = self.name(seg.seq, seq_letter)
        ack = f"  ack={self.name(seg.ack)}" if "ACK" in flags else ""
        data = f"  len={len(seg.payload)}" if seg.payload else ""
        fate = "" if rec.fate in ("sent", "duplicate") else "   <- lost by the relay"
        if rec.fate == "duplicate":
            fate = "   (duplicated by the relay)"
        print(f"   {self._arrow(rec)}  {flags:<8} seq={seq}{ack}{data}{fate}")

    def _arrow(self, rec: Record) -> str:
        t = time.monotonic() - self.start
        who = "client -> server" if rec.direction == "forward" else "server -> client"
        return f"{t:6.3f}s  {who}"


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


async def main(loss: float, seed: int) -> None:
    loop = asyncio.get_running_loop()
    wire = Wire()
    server = await udptcp.create_server(ChatServer, "127.0.0.1", 0, config=CONFIG)
    server_port = server.sockets[0].getsockname()[1]
    path = Impairment(loss=loss, delay=0.005, jitter=0.002)
    relay = Relay(
        ("127.0.0.1", server_port), forward=path, backward=path, seed=seed, on_record=wire.record
    )
    relay_host, relay_port = await relay.start()
    print(f"server on 127.0.0.1:{server_port}, relay on {relay_host}:{relay_port}")
    print(f"relay: {loss:.0%} loss and 5 ms delay each way (seed {seed})\n")

    print("== three-way handshake ==")
    transport, client = await udptcp.create_connection(
        ChatClient, relay_host, relay_port, config=CONFIG
    )
    await asyncio.sleep(0.05)  # let the third segment cross before the chat starts
    conn = transport.get_extra_info("udptcp_connection")
    print(f"   client state: {' -> '.join(s.value for s in conn.state_history)}\n")

    print("== chat ==")
    wire.show = False
    for line in LINES:
        print(f"   client: {line}")
        transport.write(line.encode() + b"\n")
        print(f"   server: {await asyncio.wait_for(client.lines.get(), 10)}")
    await asyncio.sleep(0.1)
    print(f"   ({wire.hidden} segments crossed the relay during the chat)\n")

    print("== four-way release (the client closes first) ==")
    wire.show = True
    transport.write_eof()  # FIN: we are done sending, still listening
    print(f"   server: {await asyncio.wait_for(client.lines.get(), 10)}")
    await asyncio.wait_for(client.closed, 10)
    closed_at = loop.time()
    await asyncio.sleep(0.05)  # the final ACK crosses the relay
    print(f"   client state: {' -> '.join(s.value for s in conn.state_history[2:])}")
    print(f"   the client now waits 2 x MSL = {2 * CONFIG.msl:.1f} s in TIME-WAIT ...")
    while conn.state is udptcp.State.TIME_WAIT:
        await asyncio.sleep(0.05)
    print(f"   ... and reaches {conn.state.value} after {loop.time() - closed_at:.2f} s\n")

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


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", type=float, default=0.1, help="loss rate each way")
    parser.add_argument("--seed", type=int, default=3, help="relay random seed")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(asyncio.wait_for(main(args.loss, args.seed), 30))
    else:
        asyncio.run(asyncio.wait_for(main(args.loss, args.seed), 30))
    return 0


if __name__ == "__main__":
    sys.exit(run())
