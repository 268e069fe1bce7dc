"""``python -m examples.nat_chat --session NAME --rendezvous HOST:PORT [options]``.

Run the same command on two machines (each behind its own NAT, or not); start a rendezvous
somewhere both can reach with ``python -m udptcp rendezvous --listen 0.0.0.0:7000``.
Options: ``--stun HOST:PORT``, ``--turn HOST:PORT --turn-user U --turn-password P``,
``--name NAME``, ``--timeout SECONDS``, and for a secure chat with the peer you mean
``--identity FILE`` (our key, made there if missing) with ``--peer-key HEX`` (theirs).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import udptcp

from .chat import chat


async def stdin_lines() -> AsyncIterator[str]:
    """Lines of standard input, read without blocking the loop."""
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        yield line


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.nat_chat")
    parser.add_argument("--session", required=True, help="the name both peers use")
    parser.add_argument("--rendezvous", required=True, metavar="HOST:PORT")
    parser.add_argument("--stun", metavar="HOST:PORT")
    parser.add_argument("--turn", metavar="HOST:PORT")
    parser.add_argument("--turn-user")
    parser.add_argument("--turn-password")
    parser.add_argument("--name", default="peer")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--identity", metavar="FILE", help="our key file (made if missing)")
    parser.add_argument("--peer-key", metavar="HEX", help="the other peer's public key")
    args = parser.parse_args()
    secure: dict[str, Any] = {}
    if args.identity:
        key_file = Path(args.identity)
        if not key_file.exists():
            udptcp.Identity.generate().save(key_file)
        secure["identity"] = udptcp.Identity.load(key_file)
        print(
            f"* our public key (give it to the other peer): {secure['identity'].public_key.hex()}"
        )
    if bool(args.identity) != bool(args.peer_key):
        parser.error("--identity and --peer-key go together (each peer pins the other's key)")
    if args.peer_key:
        try:
            secure["peer_key"] = bytes.fromhex(args.peer_key)
        except ValueError:
            parser.error("--peer-key takes the other peer's public key: 64 hex digits")
    try:
        path = asyncio.run(
            chat(
                args.session,
                args.rendezvous,
                stdin_lines(),
                print,
                name=args.name,
                stun=args.stun,
                turn=args.turn,
                turn_username=args.turn_user,
                turn_password=args.turn_password,
                timeout=args.timeout,
                **secure,
            )
        )
    except (udptcp.NATTraversalError, udptcp.SecureHandshakeError) as exc:
        print(f"could not connect: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"* done ({path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
