"""The drop-in loop: unmodified asyncio code goes over udptcp by one line (DESIGN §6).

These tests build their own loops (the drop-in ones), on both bases.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
import uvloop
from support.protocols import Echo

import udptcp
from udptcp.aio.endpoint import open_endpoints
from udptcp.aio.loop import DropInMixin, compile_rules, loop_class

ROOT = Path(__file__).resolve().parent.parent.parent
BASES = pytest.mark.parametrize("base", [None, "uvloop"], ids=["asyncio", "uvloop"])
T = TypeVar("T")


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tcp_echo", ROOT / "examples" / "tcp_echo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(
    body: Callable[[], Awaitable[T]],
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    **factory_kw: Any,
) -> T:
    """Run ``body()`` on a fresh loop from ``factory`` (default: a drop-in loop made with
    ``factory_kw``), as ``asyncio.run(..., loop_factory=factory)`` does."""
    if factory is None:
        factory = udptcp.loop_factory(**factory_kw)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(body())  # type: ignore[arg-type]
    loop = factory()  # Python 3.10: what asyncio.Runner does
    try:
        return loop.run_until_complete(body())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


class Spy:
    """Records the servers and transports the loop's own methods hand to the program."""

    def __init__(self) -> None:
        self.servers: list[Any] = []
        self.socket_types: list[int] = []  # of each server's first socket, while open
        self.transports: list[Any] = []

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        create_server, create_connection = loop.create_server, loop.create_connection

        async def spy_server(*args: Any, **kwargs: Any) -> Any:
            self.servers.append(await create_server(*args, **kwargs))
            self.socket_types.append(self.servers[-1].sockets[0].type)
            return self.servers[-1]

        async def spy_connection(*args: Any, **kwargs: Any) -> Any:
            transport, protocol = await create_connection(*args, **kwargs)
            self.transports.append(transport)
            return transport, protocol

        loop.create_server = spy_server  # type: ignore[method-assign]
        loop.create_connection = spy_connection  # type: ignore[method-assign]


async def echo_once(host: str, port: int) -> tuple[asyncio.BaseTransport, int, bytes]:
    """Echo b"ping" with asyncio's streams; the transport, its socket's type, the answer."""
    reader, writer = await asyncio.open_connection(host, port)
    sock_type = writer.get_extra_info("socket").type
    writer.write(b"ping")
    data = await asyncio.wait_for(reader.readexactly(4), 5)
    writer.close()
    await writer.wait_closed()
    return writer.transport, sock_type, data


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


# ---------------------------------------------------------------------- the one line


@BASES
def test_the_tcp_echo_example_runs_over_udptcp(
    base: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    tcp_echo = load_example()
    spy = Spy()

    async def body() -> str:
        spy.attach(asyncio.get_running_loop())
        result: str = await tcp_echo.main("over udptcp", port=0)
        return result

    assert run(body, base=base) == "over udptcp"
    out = capsys.readouterr().out
    assert "Received 'over udptcp' from ('127.0.0.1'," in out
    assert "Received: 'over udptcp'" in out
    # It really went over UDP: a UDP listening socket, a udptcp transport that counted
    # the bytes it carried.
    (server,) = spy.servers
    assert isinstance(server, udptcp.Server)
    assert spy.socket_types == [socket.SOCK_DGRAM]
    (transport,) = spy.transports
    assert isinstance(transport, udptcp.Transport)
    assert transport.get_extra_info("udptcp_stats")["bytes_sent"] == len("over udptcp")


@BASES
def test_the_example_on_a_plain_loop_uses_kernel_tcp(base: str | None) -> None:
    tcp_echo = load_example()
    spy = Spy()

    async def body() -> str:
        spy.attach(asyncio.get_running_loop())
        result: str = await tcp_echo.main("over tcp", port=0)
        return result

    factory = uvloop.new_event_loop if base == "uvloop" else asyncio.new_event_loop
    assert run(body, factory) == "over tcp"
    assert spy.socket_types == [socket.SOCK_STREAM]
    assert not isinstance(spy.transports[0], udptcp.Transport)


@BASES
def test_install_makes_asyncio_run_use_the_drop_in_loop(base: str | None) -> None:
    tcp_echo = load_example()
    spy = Spy()
    loops: list[asyncio.AbstractEventLoop] = []

    async def body() -> str:
        loops.append(asyncio.get_running_loop())
        spy.attach(loops[-1])
        result: str = await tcp_echo.main("installed", port=0)
        return result

    previous = asyncio.get_event_loop_policy()
    policy = udptcp.install(base=base)
    try:
        assert asyncio.get_event_loop_policy() is policy
        assert isinstance(policy, udptcp.EventLoopPolicy)
        assert asyncio.run(body()) == "installed"
    finally:
        asyncio.set_event_loop_policy(previous)
    assert isinstance(loops[0], DropInMixin)
    assert isinstance(loops[0], uvloop.Loop if base == "uvloop" else asyncio.SelectorEventLoop)
    assert loops[0].is_closed()
    assert spy.socket_types == [socket.SOCK_DGRAM]


@BASES
def test_one_line_before_an_unmodified_script(base: str | None) -> None:
    """The example file itself, run as ``__main__`` after ``udptcp.install()``."""
    line = (
        f"import udptcp; udptcp.install(base={base!r}, "
        "rules=lambda host, port: print('udptcp:', host, port) or True)"
    )
    script = (
        f"import runpy, sys; {line}; "
        "sys.argv = ['tcp_echo.py', '--port', '0', '--message', 'from a script']; "
        f"runpy.run_path({str(ROOT / 'examples' / 'tcp_echo.py')!r}, run_name='__main__')"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == "udptcp: 127.0.0.1 0"  # the server, asked before it binds
    assert lines[2].startswith("udptcp: 127.0.0.1 ")  # the client
    assert "Received: 'from a script'" in proc.stdout


def test_asyncio_run_takes_the_loop_factory() -> None:
    async def body() -> bool:
        return isinstance(asyncio.get_running_loop(), DropInMixin)

    if sys.version_info >= (3, 12):
        assert asyncio.run(body(), loop_factory=udptcp.loop_factory())  # type: ignore[call-arg]
    else:  # asyncio.run() has no loop_factory before 3.12: asyncio.Runner (run()) has
        assert run(body)


# ---------------------------------------------------------------------- routing


@BASES
def test_rules_send_other_destinations_over_kernel_tcp(base: str | None) -> None:
    udp_port = free_port()

    async def body() -> None:
        loop = asyncio.get_running_loop()
        udp_server = await asyncio.start_server(
            lambda r, w: _echo_stream(r, w), "127.0.0.1", udp_port
        )
        tcp_server = await loop.create_server(Echo, "127.0.0.1", 0)  # port 0: not in rules
        tcp_port = tcp_server.sockets[0].getsockname()[1]
        async with udp_server, tcp_server:
            assert isinstance(udp_server, udptcp.Server)
            assert udp_server.sockets[0].type == socket.SOCK_DGRAM
            assert tcp_server.sockets[0].type == socket.SOCK_STREAM
            # Nothing listens on TCP at the udptcp port.
            with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
                probe.connect(("127.0.0.1", udp_port))

            transport, _, data = await echo_once("127.0.0.1", udp_port)
            assert data == b"ping" and isinstance(transport, udptcp.Transport)
            transport, sock_type, data = await echo_once("127.0.0.1", tcp_port)
            assert data == b"ping" and not isinstance(transport, udptcp.Transport)
            assert sock_type == socket.SOCK_STREAM

    run(body, base=base, rules=[f":{udp_port}"])


async def _echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.readexactly(4))
    await writer.drain()
    writer.close()


@BASES
def test_sock_argument_decides_by_its_type(base: str | None) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        tcp_server = await loop.create_server(Echo, sock=_listening_tcp_socket())
        udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp_sock.bind(("127.0.0.1", 0))
        udp_server = await loop.create_server(Echo, sock=udp_sock)
        async with tcp_server, udp_server:
            assert not isinstance(tcp_server, udptcp.Server)
            assert isinstance(udp_server, udptcp.Server)
            tcp_client = socket.create_connection(tcp_server.sockets[0].getsockname())
            transport, _ = await loop.create_connection(asyncio.Protocol, sock=tcp_client)
            assert not isinstance(transport, udptcp.Transport)
            transport.close()
            udp_client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp_client.connect(udp_server.sockets[0].getsockname())
            transport, _ = await loop.create_connection(asyncio.Protocol, sock=udp_client)
            assert isinstance(transport, udptcp.Transport)
            transport.close()

    # Rules that send nothing over udptcp: the socket type decides all the same.
    run(body, base=base, rules=lambda host, port: False)


def _listening_tcp_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_server_on_hosts_the_rules_split_is_refused() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(ValueError, match="create one server per kind"):
            await loop.create_server(Echo, ["127.0.0.1", "localhost"], 0)

    run(body, rules=["127.0.0.1"])


def test_compile_rules_patterns() -> None:
    rule = compile_rules(
        ["10.0.0.0/8", "*.example.org", "peer.test:4433", "[::1]:9000", ":7000", ("fd00::/8", 1)]
    )
    assert rule("10.1.2.3", 80) and rule("10.1.2.3", "80")
    assert not rule("11.1.2.3", 80)
    assert rule("a.example.org", 1) and rule("A.Example.ORG", 1) and not rule("example.org", 1)
    assert rule("peer.test", 4433) and rule("peer.test", "4433") and not rule("peer.test", 1)
    assert rule("::1", 9000) and not rule("::1", 9001)
    assert rule(None, 7000) and rule("anything", 7000) and not rule(None, 7001)
    assert rule("fd00::5", 1) and not rule("fd00::5", 2)
    assert not rule("not-an-ip", 80)
    assert compile_rules(None)("anything", 1)
    assert compile_rules("*")(None, 1)
    assert compile_rules("host:*")("host", 5) and not compile_rules("host:*")("other", 5)
    assert compile_rules(["::1"])("::1", 5)  # a bare IPv6 address: any port
    assert compile_rules(":http")("x", 80)  # a service name
    func = compile_rules(lambda host, port: port == 1)
    assert func("x", 1) and not func("x", 2)
    with pytest.raises(ValueError):
        compile_rules(["[::1"])
    with pytest.raises(TypeError):
        compile_rules([42])  # type: ignore[list-item]


# ---------------------------------------------------------------------- arguments


@BASES
def test_asyncio_arguments_keep_their_meaning(base: str | None) -> None:
    config = udptcp.Config(nagle=True)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            Echo,
            "127.0.0.1",
            0,
            family=socket.AF_INET,
            backlog=5,
            reuse_address=True,  # no meaning for UDP: accepted, no effect
            start_serving=False,
        )
        async with server:
            assert not server.is_serving()
            await server.start_serving()
            port = server.sockets[0].getsockname()[1]
            local_port = free_port()
            transport, _ = await loop.create_connection(
                asyncio.Protocol,
                "127.0.0.1",
                port,
                family=socket.AF_INET,
                proto=0,
                flags=0,
                local_addr=("127.0.0.1", local_port),
            )
            assert isinstance(transport, udptcp.Transport)
            assert transport.get_extra_info("sockname") == ("127.0.0.1", local_port)
            assert transport.get_extra_info("udptcp_connection").config is config
            transport.close()
            with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
                await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, bogus=1)
            with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
                await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, bogus=1)

    run(body, base=base, config=config)


def test_happy_eyeballs_arguments_are_accepted() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            transport, _ = await loop.create_connection(
                asyncio.Protocol, "127.0.0.1", port, happy_eyeballs_delay=0.25, interleave=1
            )
            assert isinstance(transport, udptcp.Transport)
            transport.close()

    run(body)


@BASES
def test_closing_the_loop_closes_its_endpoints(base: str | None) -> None:
    loop = udptcp.loop_factory(base=base)()
    try:

        async def body() -> None:
            server = await loop.create_server(Echo, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            transport, proto = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            transport.close()  # the client ends in TIME-WAIT, which holds its endpoint
            await asyncio.sleep(0.05)
            server.close()

        loop.run_until_complete(body())
        endpoints = open_endpoints(loop)
        assert endpoints and all(not ep.is_closed for ep in endpoints)
    finally:
        loop.close()  # no shutdown_asyncgens(): close() itself must do it
    assert all(ep.is_closed and ep.sock.fileno() == -1 for ep in endpoints)
    assert open_endpoints(loop) == []


def test_loop_classes_and_factories() -> None:
    cls = loop_class()
    assert issubclass(cls, asyncio.SelectorEventLoop) and issubclass(cls, DropInMixin)
    assert loop_class() is cls and loop_class("asyncio") is cls and loop_class(cls) is cls
    uv = loop_class("uvloop")
    assert issubclass(uv, uvloop.Loop) and issubclass(uv, DropInMixin)

    class Custom(asyncio.SelectorEventLoop):
        pass

    assert issubclass(loop_class(Custom), Custom)
    with pytest.raises(TypeError):
        loop_class("trio")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        udptcp.loop_factory(rules=[42])  # type: ignore[list-item]
    factory = udptcp.uvloop_factory(rules=["*"])
    assert "uvloop" in repr(factory)
    loop = factory()
    try:
        assert isinstance(loop, uv)
        assert loop.udptcp_routes("anything", 1)  # type: ignore[attr-defined]
    finally:
        loop.close()


@BASES
def test_ports_outside_0_65535_overflow_on_the_drop_in_loop(base: str | None) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(OverflowError, match="bind"):
            await loop.create_server(asyncio.Protocol, "127.0.0.1", 70000)
        with pytest.raises(OverflowError, match="bind"):
            await asyncio.start_server(lambda r, w: None, "localhost", 70000)
        with pytest.raises(OverflowError, match="connect"):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", -1)
        with pytest.raises(OverflowError, match="connect"):
            await asyncio.open_connection("127.0.0.1", "65536")
        assert open_endpoints() == []

    run(body, base=base)
