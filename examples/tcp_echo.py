"""A plain asyncio TCP echo server and client, written for TCP and nothing else.

It is the echo example of the asyncio documentation, server and client in one program.
Nothing in it knows about udptcp; it runs over udptcp by one line at the start:

    python -c "import udptcp, runpy; udptcp.install(); runpy.run_path('examples/tcp_echo.py', run_name='__main__')"

or, in a program of your own, ``asyncio.run(main(), loop_factory=udptcp.loop_factory())``
(Python 3.12+; ``asyncio.Runner(loop_factory=...)`` on 3.11). Run as is, it uses the
kernel's TCP.

    python examples/tcp_echo.py [--port 8888] [--message "Hello World!"]
"""

from __future__ import annotations

import argparse
import asyncio


async def handle_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read(100)
    message = data.decode()
    addr = writer.get_extra_info("peername")
    print(f"Received {message!r} from {addr!r}")

    print(f"Send: {message!r}")
    writer.write(data)
    await writer.drain()

    print("Close the connection")
    writer.close()
    await writer.wait_closed()


async def tcp_echo_client(message: str, host: str, port: int) -> str:
    reader, writer = await asyncio.open_connection(host, port)

    print(f"Send: {message!r}")
    writer.write(message.encode())
    await writer.drain()

    data = await reader.read(100)
    print(f"Received: {data.decode()!r}")

    print("Close the connection")
    writer.close()
    await writer.wait_closed()
    return data.decode()


async def main(message: str = "Hello World!", host: str = "127.0.0.1", port: int = 8888) -> str:
    server = await asyncio.start_server(handle_echo, host, port)
    addrs = ", ".join(str(sock.getsockname()) for sock in server.sockets)
    print(f"Serving on {addrs}")
    async with server:
        port = server.sockets[0].getsockname()[1]  # the real one, if port was 0
        return await tcp_echo_client(message, host, port)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--message", default="Hello World!")
    args = parser.parse_args()
    asyncio.run(main(args.message, args.host, args.port))
