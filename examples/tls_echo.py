"""TLS over udptcp in one file: a self-signed certificate, an echo server, a client.

The program makes a fresh self-signed certificate for "localhost" with the
``cryptography`` package (a P-256 key, valid for one day), starts an echo server on
127.0.0.1 with it, and connects a client that trusts exactly that certificate. TLS is
asyncio's own, running on the udptcp connection as it would on a TCP one; a recording
relay between the two shows that the message never crosses in the clear. Then a client
that trusts only the system's CAs is refused with the error TCP would give. It exits by
itself.

    python examples/tls_echo.py [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ssl
import sys
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import udptcp
from udptcp.tools.relay import Relay

MESSAGE = b"hello over TLS over TCP over UDP"


def self_signed(directory: Path, name: str = "localhost") -> tuple[Path, Path]:
    """Write a self-signed certificate for ``name`` and its key; return their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)  # self-signed: issuer and subject are the same
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.read(1000))
    await writer.drain()
    writer.close()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = self_signed(Path(tmp))
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)
        client_ctx = ssl.create_default_context(cafile=str(cert))  # trusts only this cert

    server = await udptcp.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    seen: list[bytes] = []
    relay = Relay(("127.0.0.1", port), on_record=lambda rec: seen.append(rec.data))
    relay_host, relay_port = await relay.start()
    print(f"TLS echo server on 127.0.0.1:{port} (udptcp), a relay in front of it")

    async with server:
        reader, writer = await udptcp.open_connection(
            relay_host, relay_port, ssl=client_ctx, server_hostname="localhost"
        )
        tls = writer.get_extra_info("ssl_object")
        print(f"client: {tls.version()} with {tls.cipher()[0]}, server certificate verified")
        print(f"client: peer certificate subject {writer.get_extra_info('peercert')['subject']}")
        writer.write(MESSAGE)
        print(f"client: echoed back {await reader.read(1000)!r}")
        writer.close()
        await writer.wait_closed()
        clear = any(MESSAGE in datagram for datagram in seen)
        print(f"relay: {len(seen)} datagrams crossed, the message in the clear in any: {clear}")

        try:
            await udptcp.open_connection(
                relay_host,
                relay_port,
                ssl=ssl.create_default_context(),
                server_hostname="localhost",
            )
        except ssl.SSLCertVerificationError as exc:
            print(
                f"a client trusting only the system CAs: {type(exc).__name__}: {exc.verify_message}"
            )
    await relay.close()


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python examples/tls_echo.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args(argv)
    if args.uvloop:
        import uvloop

        uvloop.run(asyncio.wait_for(main(), 30))
    else:
        asyncio.run(asyncio.wait_for(main(), 30))
    return 0


if __name__ == "__main__":
    sys.exit(run())
