"""Command line: ``python -m examples.chat server ...`` and ``python -m examples.chat client ...``.

Server::

    python -m examples.chat server [--host 127.0.0.1] [--port 9000] [--transport udptcp|tcp]
                                   [--relay "loss=0.05,delay=10ms"] [--relay-port 0] [--seed 1]

``--relay`` puts an impairment relay (``udptcp.tools.relay``) in front of a udptcp server,
applying the conditions in both directions, and prints the address clients should use.

Client::

    python -m examples.chat client [--host 127.0.0.1] [--port 9000] [--nick NAME]
                                   [--join ROOM ...] [--transport udptcp|tcp] [--plain]

The client uses a prompt_toolkit prompt on a terminal (``pip install -e '.[chat]'``) and
plain line-by-line standard input otherwise (or with ``--plain``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import re
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from .client import EOF_TIMEOUT, Backoff, ChatClient, run_plain, run_terminal
from .net import TRANSPORTS, check_transport
from .protocol import ChatError, normalize_room, validate_nick
from .server import ChatServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m examples.chat", description="Chat over udptcp (or plain TCP)."
    )
    sub = parser.add_subparsers(dest="role", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
        p.add_argument("--port", type=int, default=9000, help="port (default 9000)")
        p.add_argument("--transport", choices=TRANSPORTS, default="udptcp")
        p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")

    server = sub.add_parser("server", help="run the chat server")
    common(server)
    server.add_argument(
        "--relay",
        metavar="SPEC",
        help='put an impairment relay in front, e.g. "loss=0.05,delay=10ms" (udptcp only)',
    )
    server.add_argument(
        "--relay-port", type=int, default=0, metavar="PORT", help="relay port (default: any)"
    )
    server.add_argument("--seed", type=int, default=1, help="relay random seed")
    server.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="disconnect clients silent for S seconds (0: never)",
    )
    server.add_argument("-q", "--quiet", action="store_true", help="log warnings only")

    client = sub.add_parser("client", help="run a terminal client")
    common(client)
    client.add_argument("--nick", default=_default_nick(), help="nickname (default: $USER)")
    client.add_argument(
        "--join", action="append", default=[], metavar="ROOM", help="join ROOM (repeatable)"
    )
    client.add_argument(
        "--connect-timeout", type=float, default=10.0, metavar="S", help="give up a connect after S"
    )
    client.add_argument(
        "--backoff", type=float, default=0.5, metavar="S", help="first reconnection delay"
    )
    client.add_argument(
        "--backoff-max", type=float, default=30.0, metavar="S", help="longest reconnection delay"
    )
    client.add_argument(
        "--ping", type=float, default=15.0, metavar="S", help="ping every S seconds (0: never)"
    )
    client.add_argument("--plain", action="store_true", help="no prompt_toolkit: plain stdin")
    client.add_argument(
        "--eof-timeout",
        type=float,
        default=EOF_TIMEOUT,
        metavar="S",
        help="once stdin is closed, give up after S seconds without a server (plain mode)",
    )
    return parser


def _default_nick() -> str:
    try:
        name = re.sub(r"[^A-Za-z0-9_-]", "", getpass.getuser())[:16]
    except Exception:
        name = ""
    return name if name[:1].isalpha() else "guest"


async def _server(args: argparse.Namespace) -> None:
    from udptcp.tools.relay import Impairment, Relay

    transport = check_transport(args.transport)
    impairment = Impairment.parse(args.relay) if args.relay is not None else None
    if impairment is not None and transport != "udptcp":
        raise SystemExit("--relay needs --transport udptcp (the relay carries UDP)")
    chat = ChatServer(transport=transport, idle_timeout=args.idle_timeout or None)
    host, port = await chat.start(args.host, args.port)
    print(f"chat server on {host}:{port} over {transport}", flush=True)
    relay: Relay | None = None
    if impairment is not None:
        relay = Relay((host, port), forward=impairment, backward=impairment, seed=args.seed)
        rhost, rport = await relay.start(args.host, args.relay_port)
        print(f"relay ({impairment}) on {rhost}:{rport}: connect clients there", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        print("shutting down", flush=True)
    finally:
        await chat.close()
        if relay is not None:
            await relay.close()


async def _client(args: argparse.Namespace) -> int:
    client = ChatClient(
        args.host,
        args.port,
        args.nick,
        rooms=args.join,
        transport=check_transport(args.transport),
        backoff=Backoff(initial=args.backoff, maximum=args.backoff_max),
        connect_timeout=args.connect_timeout,
        ping_interval=args.ping or None,
    )
    if args.plain or not (sys.stdin.isatty() and sys.stdout.isatty()):
        return await run_plain(client, args.eof_timeout)
    await run_terminal(client)
    return 1 if client.failure is not None else 0


def _run(coro: Coroutine[Any, Any, int | None], loop: str) -> int | None:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.role == "client":
        try:
            validate_nick(args.nick)
            for room in args.join:
                normalize_room(room)
        except ChatError as exc:
            print(f"error: {exc.text}", file=sys.stderr)
            return 2
    else:
        level = logging.WARNING if args.quiet else logging.INFO
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")
    try:
        status = _run(_server(args) if args.role == "server" else _client(args), args.loop)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
