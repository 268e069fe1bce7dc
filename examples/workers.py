"""An echo server on several cores: N worker processes share one UDP port (SO_REUSEPORT).

    python examples/workers.py --workers 4 --port 9000

Each worker runs its own event loop and its own ``udptcp.create_server(...,
reuse_port=True)`` on the same address and port. Linux hands every datagram to one of the
sockets in the group by a hash of its 4-tuple (source address and UDP port, destination
address and port), so everything one client *socket* sends reaches the same worker, and a
connection -- handshake, data, FIN, TIME-WAIT -- is always served by the one process that
holds its state. Virtual ports are not in the hash: all connections a client makes over one
UDP socket (udptcp clients share one per event loop) land on the same worker, so the load
spreads across workers by client sockets, not by connections. One client process that
wants several workers needs several sockets (``create_connection(sock=...)``).

The hash depends on how many sockets the group has. A worker that exits takes its socket
out of the group and some other clients' datagrams start arriving at a worker that has
never heard of their connection, which answers RST (as a restarted kernel would). So this
parent binds every worker's socket before any worker starts and keeps them all open, and a
worker is meant to run for as long as the server does: a replacement for a crashed worker
would take over its socket (and its clients' datagrams) rather than join the group anew.

Each worker greets a new connection with ``worker <pid>`` and a newline, then echoes. The
parent prints ``serving on HOST:PORT with N workers`` once every worker is listening, and
stops them all on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import udptcp  # noqa: E402


class Echo(asyncio.Protocol):
    """Greet with this worker's pid, then send every byte back."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport.write(f"worker {os.getpid()}\n".encode())

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        self.transport.close()
        return False


def bind_group(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` UDP sockets on one address, all with SO_REUSEPORT, bound before any of them
    is served so that the kernel's spreading never changes while clients connect."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # port 0: the others join the one the kernel chose
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def serve_worker(fd: int) -> None:
    """One worker: serve the inherited socket until SIGTERM or SIGINT."""
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    # Passing ``host, port, reuse_port=True`` instead of ``sock=`` works too, for workers that
    # bind for themselves (all of them must be up before clients connect, see above).
    server = await udptcp.create_server(Echo, sock=sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"worker {os.getpid()} ready", flush=True)
    async with server:
        await stop.wait()


def run_parent(host: str, port: int, workers: int, loop_name: str) -> int:
    sockets = bind_group(host, port, workers)
    port = sockets[0].getsockname()[1]
    children: list[subprocess.Popen[str]] = []
    try:
        for sock in sockets:
            fd = sock.fileno()
            children.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--worker-fd", str(fd), "--loop", loop_name],
                    pass_fds=[fd],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            if "ready" not in line:
                raise SystemExit(f"a worker failed to start (exit {child.wait()})")
        print(f"serving on {host}:{port} with {workers} workers", flush=True)
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for sock in sockets:
            sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--worker-fd", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_fd is not None:
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(serve_worker(args.worker_fd))
        else:
            asyncio.run(serve_worker(args.worker_fd))
        return 0
    return run_parent(args.host, args.port, args.workers, args.loop)


if __name__ == "__main__":
    sys.exit(main())
