"""``python -m udptcp``: the command-line tools, one subcommand each.

* ``rendezvous --listen HOST:PORT`` — the pairing service for peer connections
  (:mod:`udptcp.nat.rendezvous`); runs until interrupted, printing its counters.
* ``nat-check --stun HOST:PORT`` — what the NAT in front of this host does (RFC 5780
  mapping and filtering behaviour, where the STUN server supports it), as JSON.

A subcommand is a function ``(args) -> int`` registered in :data:`COMMANDS` with the
function that adds its arguments, so new ones slot in beside these.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence

from udptcp import __version__

__all__ = ["COMMANDS", "main"]

#: (name, help, add its arguments, run it).
Command = tuple[
    str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]
]


# ---------------------------------------------------------------------- rendezvous


def _rendezvous_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", required=True, metavar="HOST:PORT", help="UDP address to serve on"
    )
    parser.add_argument(
        "--ttl", type=float, default=60.0, help="seconds a waiting session lives without news (60)"
    )
    parser.add_argument(
        "--stats-interval", type=float, default=60.0, help="print counters this often, seconds (60)"
    )


def _rendezvous(args: argparse.Namespace) -> int:
    from udptcp.nat.peer import parse_hostport
    from udptcp.nat.rendezvous import serve

    host, port = parse_hostport(args.listen)

    async def run() -> None:
        transport, server = await serve(host, port, ttl=args.ttl)
        print(f"rendezvous listening on {transport.get_extra_info('sockname')!r}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.stats_interval)
                print(f"rendezvous stats: {dict(server.stats)}", flush=True)
        finally:
            transport.close()

    asyncio.run(run())
    return 0


# ---------------------------------------------------------------------- nat-check


def _nat_check_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stun", required=True, metavar="HOST:PORT", help="STUN server")
    parser.add_argument("--local", metavar="HOST:PORT", help="local address to bind (default any)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per test (3)")


def _nat_check(args: argparse.Namespace) -> int:
    from udptcp.aio.endpoint import Endpoint
    from udptcp.nat.peer import parse_hostport
    from udptcp.nat.stun import nat_behaviour

    async def run() -> int:
        loop = asyncio.get_running_loop()
        host, port = parse_hostport(args.stun)
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, server = infos[0][0], infos[0][4]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind(parse_hostport(args.local) if args.local else ("", 0))
        endpoint = Endpoint.for_socket(loop, sock)
        try:
            result = await nat_behaviour(endpoint, server, timeout=args.timeout)
        finally:
            endpoint.close()
        print(json.dumps(result.as_dict(), indent=2))
        return 0 if result.mapped is not None else 1

    return asyncio.run(run())


COMMANDS: list[Command] = [
    ("rendezvous", "pair peers for peer connections", _rendezvous_args, _rendezvous),
    ("nat-check", "what the NAT in front of this host does", _nat_check_args, _nat_check),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m udptcp", description="udptcp's command-line tools"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"udptcp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text, add_args, run in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(run=run)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
