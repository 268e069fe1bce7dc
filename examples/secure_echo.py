"""udptcp secure mode in one file: a server with an identity, a client that pins its key.

A server and a client run on 127.0.0.1 with a recording relay between them. The program
prints what each side learned from the handshake, what an observer on the path saw (the
TCP header in the clear, the message nowhere), and the error a client pinning the wrong key
gets. It exits by itself.

    python examples/secure_echo.py [--key server.key] [--uvloop]

With ``--key`` the server's identity is loaded from that file, or made and saved there
(mode 0600) if it does not exist yet.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import udptcp
from udptcp.core.secure_wire import is_sealed
from udptcp.tools.relay import Relay

MESSAGE = b"the eagle lands at midnight"


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.read(1000))
    await writer.drain()
    writer.close()


def identity_from(path: str | None) -> udptcp.Identity:
    if path is None:
        return udptcp.Identity.generate()
    if os.path.exists(path):
        return udptcp.Identity.load(path)
    identity = udptcp.Identity.generate()
    identity.save(path)
    print(f"saved a new identity to {path}")
    return identity


def describe(datagram: bytes) -> str:
    ports = int.from_bytes(datagram[0:2], "big"), int.from_bytes(datagram[2:4], "big")
    seq, ack = int.from_bytes(datagram[4:8], "big"), int.from_bytes(datagram[8:12], "big")
    kind = "sealed" if is_sealed(datagram) else "handshake (plain)"
    return f"{ports[0]}->{ports[1]} seq={seq} ack={ack} {len(datagram)} bytes, {kind}"


async def main(key_path: str | None) -> None:
    identity = identity_from(key_path)
    print(f"server public key: {identity.public_key.hex()}")
    server = await udptcp.start_server(echo, "127.0.0.1", 0, identity=identity)
    port = server.sockets[0].getsockname()[1]
    async with server, Relay(("127.0.0.1", port), record=True) as relay:
        reader, writer = await udptcp.open_connection(*relay.address, peer_key=identity.public_key)
        pattern, cipher = writer.get_extra_info("secure")
        print(f"client: handshake {pattern}, datagrams sealed with {cipher}")
        print(f"client: the server proved it holds {writer.get_extra_info('peer_key').hex()[:16]}…")
        writer.write(MESSAGE)
        print(f"client: echoed back {await reader.read(1000)!r}")
        writer.close()
        await writer.wait_closed()

        print("on the path:")
        for record in relay.records[:4]:
            print(f"  {record.direction:8} {describe(record.data)}")
        wire = b"".join(record.data for record in relay.records)
        print(f"  {len(relay.records)} datagrams; the message in them: {MESSAGE in wire}")

        try:
            await udptcp.open_connection(
                "127.0.0.1", port, peer_key=udptcp.Identity.generate().public_key
            )
        except udptcp.SecureHandshakeError as exc:
            print(f"a client pinning another key: SecureHandshakeError: {exc}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--key", help="the server's identity file (made if missing)")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.key))
    else:
        asyncio.run(main(args.key))
    sys.exit(0)
