"""Two network namespaces joined by a user-space wire that impairs IP packets.

Each namespace gets a TUN device with one address and a point-to-point route to the other's;
whatever the kernel in one namespace sends to the other comes out of its device as an IP
packet, goes through one direction of the impairment pipeline of the UDP relay
(:class:`udptcp.tools.direction.Direction`: loss, bursty loss, delay, jitter, rate...), and is
written unchanged into the other device::

    namespace A: kernel TCP, 10.200.9.1 --tun--+                +--tun-- 10.200.9.2, namespace B
                                               |   this process  |
                                               +-- forward  -->--+
                                               +--<-- backward --+

Loss therefore applies per packet as it would on a real path: the devices are opened
without offloads (:func:`udptcp.tools.tunbridge.open_tun`), so the kernel segments TCP in
software before the device and every packet read is at most one MTU, one segment
(:attr:`WireCounts.largest` shows it). The direction generators are the relay's
(:func:`udptcp.tools.direction.direction_rng`): with the same seed and impairment, the n-th packet
of a direction meets the same fate as the n-th datagram through the relay.

This is the kernel half of the side-by-side lab (:mod:`udptcp.tools.losslab`): kernel TCP
between the namespaces and udptcp through the relay see the same seeded path.

Requirements: Linux, root (CAP_NET_ADMIN), ``/dev/net/tun``, iproute2, and two namespaces
made beforehand (``ip netns add``); the devices live and die inside them, so the caller's
namespace sees nothing. ``python -m udptcp.tools.tunpair --netns A B --both loss=1%,delay=10ms``
runs one until SIGTERM and prints its counters as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .direction import Direction, RelayStats, direction_rng
from .impairment import Impairment
from .tunbridge import call_in_netns, open_tun

__all__ = ["FORWARD", "BACKWARD", "TunPair", "WireCounts", "main"]

#: Direction of packets from namespace A to namespace B (the relay's client -> target).
FORWARD = "forward"
#: Direction of packets from namespace B to namespace A.
BACKWARD = "backward"

_READ_BATCH = 256
_MAX_PACKET = 65535
_IPPROTO_TCP = 6


@dataclass
class WireCounts:
    """What one direction's device handed over, before impairment."""

    packets: int = 0
    bytes: int = 0
    tcp_data_segments: int = 0
    """TCP packets carrying data (retransmissions included)."""
    tcp_data_lost: int = 0
    """Of those, how many the loss model dropped."""
    largest: int = 0
    """Largest IP packet read: at most the MTU unless the kernel passed a GSO super-packet."""
    over_mtu: int = 0
    write_errors: int = 0


def _tcp_payload(packet: bytes) -> int:
    """Data bytes of an IPv4 TCP packet (0 for anything else)."""
    if len(packet) < 40 or packet[0] >> 4 != 4 or packet[9] != _IPPROTO_TCP:
        return 0
    ihl = (packet[0] & 0x0F) * 4
    total = int.from_bytes(packet[2:4], "big")
    if len(packet) < ihl + 13:
        return 0
    return max(total - ihl - (packet[ihl + 12] >> 4) * 4, 0)


class TunPair:
    """Namespaces ``netns[0]`` (A) and ``netns[1]`` (B) joined through this process.

    ``addresses[i]`` is the address of namespace i's device. ``forward`` impairs A -> B,
    ``backward`` B -> A, each with its own generator seeded from ``seed`` as the relay's.
    ``stats`` (the relay's per-direction counters: received, dropped_loss, sent...) and
    ``wire`` (:class:`WireCounts`) are keyed by :data:`FORWARD` and :data:`BACKWARD`.
    """

    def __init__(
        self,
        netns: tuple[str, str],
        *,
        forward: Impairment | None = None,
        backward: Impairment | None = None,
        seed: int = 0,
        mtu: int = 1500,
        addresses: tuple[str, str] = ("10.200.9.1", "10.200.9.2"),
        txqueuelen: int = 10000,
        ifname: str = "utp%d",
    ) -> None:
        self.netns = netns
        self.addresses = addresses
        self.mtu = mtu
        self.txqueuelen = txqueuelen
        self.seed = seed
        self._ifname_request = ifname
        self.ifnames: list[str] = []
        self.stats = {FORWARD: RelayStats(), BACKWARD: RelayStats()}
        self.wire = {FORWARD: WireCounts(), BACKWARD: WireCounts()}
        self._directions = {
            FORWARD: Direction(
                FORWARD, forward or Impairment(), direction_rng(seed, FORWARD), self.stats[FORWARD]
            ),
            BACKWARD: Direction(
                BACKWARD,
                backward or Impairment(),
                direction_rng(seed, BACKWARD),
                self.stats[BACKWARD],
            ),
        }
        self._fds: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def forward(self) -> Impairment:
        return self._directions[FORWARD].impairment

    @property
    def backward(self) -> Impairment:
        return self._directions[BACKWARD].impairment

    def ip(self, side: int, *args: str) -> str:
        """Run ``ip ARGS`` in namespace ``side`` (0 or 1); return its output."""
        return subprocess.run(
            ["ip", "-n", self.netns[side], *args], check=True, capture_output=True, text=True
        ).stdout

    def kernel_socket(
        self, side: int, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM
    ) -> socket.socket:
        """A new (blocking) socket in namespace ``side``."""
        return call_in_netns(self.netns[side], lambda: socket.socket(family, type))

    async def start(self) -> None:
        """Create and configure both devices and start forwarding. Raises ``OSError`` or
        ``subprocess.CalledProcessError``; nothing is left behind on failure."""
        if self._fds:
            raise RuntimeError("already started")
        self._loop = loop = asyncio.get_running_loop()
        try:
            for side in (0, 1):
                fd, name = call_in_netns(self.netns[side], lambda: open_tun(self._ifname_request))
                self._fds.append(fd)
                self.ifnames.append(name)
                here, there = self.addresses[side], self.addresses[1 - side]
                self.ip(side, "addr", "add", here, "peer", there, "dev", name)
                self.ip(side, "link", "set", "dev", name, "mtu", str(self.mtu))
                self.ip(side, "link", "set", "dev", name, "txqueuelen", str(self.txqueuelen))
                self.ip(side, "link", "set", "dev", name, "up")
            for direction in self._directions.values():
                direction.loop = loop
            fd_a, fd_b = self._fds
            loop.add_reader(fd_a, self._pump, fd_a, fd_b, FORWARD)
            loop.add_reader(fd_b, self._pump, fd_b, fd_a, BACKWARD)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop forwarding and delete both devices. Safe to call twice."""
        for direction in self._directions.values():
            direction.close()
        fds, self._fds = self._fds, []
        names, self.ifnames = self.ifnames, []
        for side, fd in enumerate(fds):
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(fd)
            if side < len(names):
                with contextlib.suppress(subprocess.CalledProcessError, OSError):
                    self.ip(side, "link", "del", names[side])
            os.close(fd)

    async def __aenter__(self) -> TunPair:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def device_counters(self) -> list[dict[str, Any]]:
        """Each device's kernel counters (``ip -s -j link``: tx/rx packets, drops ...)."""
        out = []
        for side, name in enumerate(self.ifnames):
            info = json.loads(self.ip(side, "-s", "-j", "link", "show", "dev", name))[0]
            out.append({"ifname": name, **info.get("stats64", {})})
        return out

    def snapshot(self) -> dict[str, Any]:
        """Every counter, JSON-ready."""
        return {
            name: {
                "impairment": str(self._directions[name].impairment),
                **asdict(self.stats[name]),
                **{f"wire_{k}": v for k, v in asdict(self.wire[name]).items()},
            }
            for name in (FORWARD, BACKWARD)
        }

    def _pump(self, src: int, dst: int, name: str) -> None:
        wire = self.wire[name]
        submit = self._directions[name].submit
        stats = self.stats[name]
        mtu = self.mtu

        def send(packet: bytes) -> None:
            try:
                os.write(dst, packet)
            except OSError:
                wire.write_errors += 1

        for _ in range(_READ_BATCH):
            try:
                packet = os.read(src, _MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            size = len(packet)
            wire.packets += 1
            wire.bytes += size
            if size > wire.largest:
                wire.largest = size
            if size > mtu:
                wire.over_mtu += 1
            if _tcp_payload(packet):
                wire.tcp_data_segments += 1
                lost = stats.dropped_loss
                submit(packet, (name,), send)
                wire.tcp_data_lost += stats.dropped_loss - lost
            else:
                submit(packet, (name,), send)


# ---------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m udptcp.tools.tunpair``: join two namespaces until SIGTERM (needs root)."""
    parser = argparse.ArgumentParser(
        prog="python -m udptcp.tools.tunpair",
        description="Join two existing network namespaces with TUN devices through a "
        "user-space wire applying the relay's seeded impairments to IP packets. Prints a "
        "JSON 'ready' line, then on SIGTERM or end of stdin a JSON 'stats' line.",
    )
    parser.add_argument("--netns", nargs=2, required=True, metavar=("A", "B"))
    parser.add_argument("--addresses", nargs=2, default=["10.200.9.1", "10.200.9.2"])
    parser.add_argument("--both", default="", metavar="SPEC")
    parser.add_argument("--forward", default="", metavar="SPEC", help="A -> B")
    parser.add_argument("--backward", default="", metavar="SPEC", help="B -> A")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args(argv)
    try:
        forward = Impairment.parse(f"{args.both},{args.forward}")
        backward = Impairment.parse(f"{args.both},{args.backward}")
    except ValueError as exc:
        parser.error(str(exc))

    def emit(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    async def run() -> None:
        pair = TunPair(
            (args.netns[0], args.netns[1]),
            forward=forward,
            backward=backward,
            seed=args.seed,
            mtu=args.mtu,
            addresses=(args.addresses[0], args.addresses[1]),
        )
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_reader(sys.stdin.fileno(), _on_stdin(stop.set))
        await pair.start()
        try:
            emit({"ready": {"ifnames": pair.ifnames, "addresses": pair.addresses}})
            await stop.wait()
            emit({"stats": pair.snapshot(), "devices": pair.device_counters()})
        finally:
            loop.remove_reader(sys.stdin.fileno())
            await pair.close()

    try:
        if args.uvloop:
            import uvloop

            uvloop.run(run())
        else:
            asyncio.run(run())
    except (OSError, subprocess.CalledProcessError) as exc:
        emit({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


def _on_stdin(stop: Callable[[], None]) -> Callable[[], None]:
    """A reader callback that calls ``stop`` at end of stdin (the parent went away)."""

    def readable() -> None:
        if not os.read(sys.stdin.fileno(), 4096):
            stop()

    return readable


if __name__ == "__main__":
    sys.exit(main())
