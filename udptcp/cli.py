"""``python -m udptcp`` (also the ``udptcp`` command): the command-line tools.

* ``cat HOST PORT`` / ``cat -l PORT`` — netcat over udptcp: standard input to the
  connection, the connection to standard output (:mod:`udptcp.tools.netcat`).
* ``relay --listen HOST:PORT --target HOST:PORT --both SPEC`` — the impairment relay
  (:mod:`udptcp.tools.relay`; also installed as ``udptcp-relay``).
* ``trace FILE [--pcap OUT]`` — a segment trace (``Config.trace``) drawn as a ladder, or
  written as a pcap file for Wireshark (:mod:`udptcp.tools.pcap`).
* ``rendezvous --listen HOST:PORT`` — the pairing service for peer connections
  (:mod:`udptcp.nat.rendezvous`); runs until interrupted, printing its counters.
* ``nat-check --stun HOST:PORT`` — what the NAT in front of this host does (RFC 5780
  mapping and filtering behaviour, where the STUN server supports it), as JSON.

A subcommand is a function ``(args) -> int`` registered in :data:`COMMANDS` with the
function that adds its arguments, so new ones slot in beside these. Mistakes in the
command line are usage errors (exit status 2), failures at run time (a refused
connection, an address in use) one line on standard error (exit status 1): never a
traceback.
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


# ---------------------------------------------------------------------- cat


def _cat_args(parser: argparse.ArgumentParser) -> None:
    from udptcp.tools import netcat

    netcat.add_arguments(parser)


def _cat(args: argparse.Namespace) -> int:
    from udptcp.tools import netcat

    netcat.check(args, args.parser)
    return netcat.run(args)


# ---------------------------------------------------------------------- relay


def _relay_args(parser: argparse.ArgumentParser) -> None:
    from udptcp.tools import relay

    relay.add_arguments(parser)
    parser.epilog = relay.EPILOG


def _relay(args: argparse.Namespace) -> int:
    from udptcp.tools import relay

    return relay.run(args, args.parser)


# ---------------------------------------------------------------------- trace


def _trace_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a JSON-lines trace ('-': standard input)")
    parser.add_argument("--pcap", metavar="OUT", help="write the segments as a pcap file")
    parser.add_argument(
        "--ladder", action="store_true", help="print the ladder too (the default without --pcap)"
    )


def _trace(args: argparse.Namespace) -> int:
    from udptcp.tools.pcap import TraceError, ladder, read_trace, write_pcap

    try:
        if args.file == "-":
            events = read_trace(sys.stdin)
        else:
            with open(args.file, encoding="utf-8") as f:
                events = read_trace(f)
    except TraceError as exc:
        args.parser.error(f"{args.file} is not a udptcp trace: {exc}")
    except (OSError, UnicodeDecodeError) as exc:
        args.parser.error(f"cannot read {args.file}: {getattr(exc, 'strerror', None) or exc}")
    if args.pcap is not None:
        try:
            with open(args.pcap, "wb") as out:
                count = write_pcap(events, out)
        except OSError as exc:
            args.parser.error(f"cannot write {args.pcap}: {exc.strerror or exc}")
        print(f"{count} segments written to {args.pcap}", file=sys.stderr)
    if args.pcap is None or args.ladder:
        for line in ladder(events):
            print(line)
    return 0


COMMANDS: list[Command] = [
    (
        "cat",
        "netcat over udptcp: stdin to the connection, the connection to stdout",
        _cat_args,
        _cat,
    ),
    (
        "relay",
        "UDP relay with seeded loss, delay, reordering ... per direction",
        _relay_args,
        _relay,
    ),
    ("trace", "draw a segment trace as a ladder, or write it as pcap", _trace_args, _trace),
    ("rendezvous", "pair peers for peer connections", _rendezvous_args, _rendezvous),
    ("nat-check", "what the NAT in front of this host does", _nat_check_args, _nat_check),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="udptcp", description="udptcp's command-line tools (also: python -m udptcp)"
    )
    parser.add_argument(
        "-d", "--debug", action="store_true", help="log udptcp's debug messages to stderr"
    )
    # The old spelling of --debug, from before `cat -v`.
    parser.add_argument(
        "-v", "--verbose", dest="debug", action="store_true", help=argparse.SUPPRESS
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, add_args, run in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(run=run, parser=p)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(name)s: %(levelname)s: %(message)s",
    )
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except ImportError as exc:
        print(f"{args.parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except socket.gaierror as exc:
        print(
            f"{args.parser.prog}: error: cannot resolve the host: {exc.strerror}", file=sys.stderr
        )
        return 2
    except OSError as exc:  # refused, timed out, reset, address in use ...
        print(f"{args.parser.prog}: error: {exc.strerror or exc}", file=sys.stderr)
        return 1
