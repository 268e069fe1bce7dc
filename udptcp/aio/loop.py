"""The drop-in event loop: unmodified asyncio code runs over udptcp.

One line at program start::

    asyncio.run(main(), loop_factory=udptcp.loop_factory())  # Python 3.12+
    asyncio.Runner(loop_factory=udptcp.loop_factory()).run(main())  # Python 3.11
    udptcp.install(); asyncio.run(main())  # any version: sets an event loop policy

and every ``loop.create_connection``, ``loop.create_server``, ``asyncio.open_connection`` and
``asyncio.start_server`` the program makes goes over udptcp. ``base="uvloop"`` (or
:func:`uvloop_factory`) does the same on uvloop.

The loop is a subclass of the base loop class that overrides these methods:

* ``create_connection`` / ``create_server`` ask the loop's *rules* whether the destination
  (for a server: the address it listens on) goes over udptcp; if not, the base loop's own
  method runs, untouched. A ``sock=`` argument decides by itself: a UDP socket goes over
  udptcp, a TCP one keeps its kernel meaning, except a TCP socket ``sock_connect`` connected
  over udptcp (below), and, with the opt-in ``serve_tcp_sockets=True``, a listening TCP
  socket the rules send over udptcp: the server then listens on a UDP socket bound to the
  same address, and holds the TCP socket (unused) until it closes. Every other argument keeps its asyncio
  meaning (``ssl``, ``server_hostname``, ``local_addr``, ``family``, ``backlog``,
  ``start_serving``, the TLS timeouts, ``reuse_port``, ``all_errors``,
  ``happy_eyeballs_delay``, ``interleave``); those that only make sense for a kernel TCP
  socket (``proto``, ``flags``, ``reuse_address``, ``keep_alive``) are accepted and have
  no effect. udptcp's own keywords (``config``, ``vport``, ``local_vport``) are accepted too.
* ``sock_connect`` on a TCP socket whose destination the rules send over udptcp makes a
  udptcp connection instead of connecting the socket, and ``create_connection(sock=)``
  adopts it: the pattern of aiohttp's client (``aiohappyeyeballs``) and python-socks.
  ``sock_sendall`` / ``sock_recv`` / ``sock_recv_into`` work on such a socket meanwhile
  (:mod:`udptcp.aio.parked`).
* ``start_tls`` upgrades a udptcp transport with :func:`udptcp.aio.tls.start_tls` (uvloop's
  own refuses transports it did not make), so ``StreamWriter.start_tls`` works.
* ``close`` first closes the loop's udptcp endpoints (:func:`close_endpoints`): live
  connections are reset, TIME-WAIT ones are dropped silently, no socket leaks.

Rules are a callable ``(host, port) -> bool`` or a list of patterns, any of which may match:
``"10.0.0.0/8"`` (a network: IP literals inside it), ``"*.example.org"`` (shell-style host
name), ``"peer.example:4433"``, ``"[::1]:9000"``, ``":9000"`` (any host, that port),
``"*"`` (everything), or a tuple ``(host_pattern_or_None, port_or_None)``. Rules see the
host and port as the program passed them, before name resolution; a server listening on
every interface is asked about host ``None``, which only ``"*"`` and port-only patterns
match. The default, ``rules=None``, sends everything over udptcp.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any

from udptcp.core.config import Config

from . import api, tls
from .endpoint import close_endpoints
from .parked import Parking, is_stream_socket
from .transport import Transport

__all__ = [
    "DropInMixin",
    "EventLoopPolicy",
    "LoopFactory",
    "Rule",
    "Rules",
    "compile_rules",
    "install",
    "loop_class",
    "loop_factory",
    "new_event_loop",
    "uvloop_factory",
]

Rule = Callable[[Any, Any], bool]
"""``(host, port) -> bool``: True sends the destination over udptcp."""
Rules = Rule | str | Iterable[str | tuple[Any, Any]] | None
"""What ``rules=`` accepts: a :data:`Rule`, one pattern, or a list of patterns."""

# Keywords of loop.create_connection / create_server that only configure a kernel socket.
_CONNECT_IGNORED = frozenset({"proto", "flags"})
_CONNECT_PASSED = frozenset(
    {
        "ssl",
        "family",
        "sock",
        "local_addr",
        "server_hostname",
        "ssl_handshake_timeout",
        "ssl_shutdown_timeout",
        "all_errors",
        "happy_eyeballs_delay",
        "interleave",
        "config",
        "vport",
        "local_vport",
        "own_socket",
        "identity",
        "peer_key",
        "psk",
        "allow_plain",
    }
)
# What create_connection(sock=) passes on when it adopts a connection sock_connect made.
_ADOPT_PASSED = frozenset(
    {"ssl", "server_hostname", "ssl_handshake_timeout", "ssl_shutdown_timeout"}
)
_SERVE_IGNORED = frozenset({"flags", "reuse_address", "keep_alive"})
_SERVE_PASSED = frozenset(
    {
        "family",
        "sock",
        "backlog",
        "ssl",
        "reuse_port",
        "ssl_handshake_timeout",
        "ssl_shutdown_timeout",
        "start_serving",
        "config",
        "vport",
        "own_socket",
        "identity",
        "psk",
        "allow_plain",
    }
)


# ---------------------------------------------------------------------- rules


def _everything(host: Any, port: Any) -> bool:
    return True


class _Pattern:
    """One ``rules=`` pattern: a host pattern (or any host) and a port (or any port)."""

    __slots__ = ("host", "network", "port")

    def __init__(self, host: str | None, port: int | str | None) -> None:
        if host in ("", "*"):
            host = None
        self.host = host.lower() if host is not None else None
        self.network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
        if host is not None:
            try:
                self.network = ipaddress.ip_network(host, strict=False)
            except ValueError:
                pass  # a host name pattern
        self.port = _port_number(port) if port not in (None, "", "*") else None

    @classmethod
    def parse(cls, rule: str | tuple[Any, Any]) -> _Pattern:
        if isinstance(rule, tuple):
            if len(rule) != 2:
                raise ValueError(f"a rule tuple is (host, port), got {rule!r}")
            return cls(rule[0], rule[1])
        if not isinstance(rule, str):
            raise TypeError(f"a rule is a string or a (host, port) tuple, got {rule!r}")
        if rule.startswith("["):  # "[v6]" or "[v6]:port"
            end = rule.find("]")
            rest = rule[end + 1 :]
            if end < 0 or (rest and not rest.startswith(":")):
                raise ValueError(f"malformed rule {rule!r}")
            return cls(rule[1:end], rest[1:] or None)
        if rule.count(":") == 1:  # "host:port", ":port", "host:*"
            host, port = rule.split(":")
            return cls(host, port)
        return cls(rule, None)  # a host, a network, or a bare IPv6 address

    def matches(self, host: Any, port: Any) -> bool:
        if self.port is not None:
            try:
                if _port_number(port) != self.port:
                    return False
            except (TypeError, ValueError, OSError):  # OSError: an unknown service name
                return False
        if self.host is None:
            return True
        if host is None or host == "":
            return False
        name = str(host).lower()
        if self.network is not None:
            try:
                return ipaddress.ip_address(name.split("%")[0]) in self.network
            except ValueError:
                return False
        return fnmatch.fnmatchcase(name, self.host)

    def __repr__(self) -> str:
        return f"_Pattern({self.host or '*'}:{self.port or '*'})"


def _port_number(port: Any) -> int:
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    return socket.getservbyname(text, "tcp")


def compile_rules(rules: Rules) -> Rule:
    """Turn a ``rules=`` argument into a ``(host, port) -> bool`` callable.

    A string or a ``(host, port)`` tuple is one pattern; a list (any iterable) holds several.
    """
    if rules is None:
        return _everything
    if callable(rules):
        return rules
    if isinstance(rules, (str, tuple)):
        rules = [rules]
    patterns = [_Pattern.parse(rule) for rule in rules]

    def rule(host: Any, port: Any) -> bool:
        return any(pattern.matches(host, port) for pattern in patterns)

    return rule


# ---------------------------------------------------------------------- the loop


class DropInMixin(asyncio.AbstractEventLoop):
    """The overrides every drop-in loop class has; see :func:`loop_class`.

    ``udptcp_rules`` decides what goes over udptcp and ``udptcp_config`` configures those
    connections (``None``: ``Config()``); both may be changed on a live loop.
    """

    udptcp_rules: Rule = staticmethod(_everything)  # type: ignore[assignment]
    udptcp_config: Config | None = None
    udptcp_serve_tcp_sockets: bool = False
    _udptcp_parking: Parking | None = None

    def udptcp_routes(self, host: Any, port: Any) -> bool:
        """True if a connection to (or a server on) ``host``/``port`` goes over udptcp."""
        return bool(self.udptcp_rules(host, port))

    def _parking(self) -> Parking:
        if self._udptcp_parking is None:
            self._udptcp_parking = Parking()
        return self._udptcp_parking

    def _parked(self, sock: Any) -> Any:
        parking = self._udptcp_parking
        return parking.get(sock) if parking is not None else None

    # ------------------------------------------------------------------ the socket API

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        """``loop.sock_connect``; a TCP socket whose destination the rules send over udptcp
        gets a udptcp connection instead, for ``create_connection(sock=)`` to adopt
        (:mod:`udptcp.aio.parked`)."""
        if is_stream_socket(sock) and isinstance(address, tuple) and len(address) >= 2:
            if self.udptcp_routes(address[0], address[1]):
                await self._parking().connect(self, sock, address, self.udptcp_config)
                return
        await super().sock_connect(sock, address)

    async def sock_sendall(self, sock: socket.socket, data: Any) -> None:  # type: ignore[override]
        """``loop.sock_sendall``, also on a socket ``sock_connect`` connected over udptcp."""
        parked = self._parked(sock)
        if parked is not None:
            return await parked.sendall(data)  # type: ignore[no-any-return]
        return await super().sock_sendall(sock, data)

    async def sock_recv(self, sock: socket.socket, nbytes: int) -> bytes:
        """``loop.sock_recv``, also on a socket ``sock_connect`` connected over udptcp."""
        parked = self._parked(sock)
        if parked is not None:
            return await parked.recv(nbytes)  # type: ignore[no-any-return]
        return await super().sock_recv(sock, nbytes)

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> int:
        """``loop.sock_recv_into``, also on a socket ``sock_connect`` connected over udptcp."""
        parked = self._parked(sock)
        if parked is not None:
            view = memoryview(buf).cast("B")
            data = await parked.recv(len(view))
            view[: len(data)] = data
            return len(data)
        return await super().sock_recv_into(sock, buf)

    async def create_connection(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int | str | None = None,
        **kwargs: Any,
    ) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
        """``loop.create_connection``, over udptcp when the rules say so."""
        sock = kwargs.get("sock")
        if sock is not None and self._parked(sock) is not None:
            # sock_connect made a udptcp connection for this TCP socket: adopt it.
            if host is not None or port is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            options = _udptcp_kwargs("create_connection", kwargs, _CONNECT_PASSED, _CONNECT_IGNORED)
            # The rest (family, local_addr, ...) is ignored with sock=, as asyncio does.
            return await self._parking().adopt(
                sock,
                protocol_factory,
                **{k: v for k, v in options.items() if k in _ADOPT_PASSED},
            )
        if sock is not None:
            udp = sock.type == socket.SOCK_DGRAM
        else:
            udp = self.udptcp_routes(host, port)
        if not udp:
            return await super().create_connection(
                protocol_factory,
                host,  # type: ignore[arg-type]
                port,  # type: ignore[arg-type]
                **kwargs,
            )
        options = _udptcp_kwargs("create_connection", kwargs, _CONNECT_PASSED, _CONNECT_IGNORED)
        options.setdefault("config", self.udptcp_config)
        return await api.create_connection(protocol_factory, host, port, **options)

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | Iterable[str] | None = None,
        port: int | str | None = None,
        **kwargs: Any,
    ) -> asyncio.AbstractServer:
        """``loop.create_server``, over udptcp when the rules say so."""
        sock = kwargs.get("sock")
        held = None
        if sock is not None and self._serves_over_udptcp(sock):
            # The same address, on UDP; the server keeps the TCP socket (a program may
            # still ask it its address) and closes it when it closes, as asyncio's would.
            held = sock
            kwargs["sock"] = api.udp_twin(self, sock)
            udp = True
        elif sock is not None:
            udp = sock.type == socket.SOCK_DGRAM
        else:
            hosts = api.server_hosts(host)
            if host is not None and not isinstance(host, str):
                host = hosts  # type: ignore[assignment]  # an iterator is read only once
            routes = {self.udptcp_routes(h, port) for h in hosts}
            if len(routes) > 1:
                raise ValueError(
                    f"the udptcp rules send some of {hosts!r} over udptcp and others over "
                    "TCP; create one server per kind"
                )
            udp = routes.pop()
        if not udp:
            return await super().create_server(
                protocol_factory,
                host,  # type: ignore[arg-type]
                port,  # type: ignore[arg-type]
                **kwargs,
            )
        options = _udptcp_kwargs("create_server", kwargs, _SERVE_PASSED, _SERVE_IGNORED)
        options.setdefault("config", self.udptcp_config)
        try:
            server = await api.create_server(protocol_factory, host, port, **options)
        except BaseException:
            if held is not None:
                options["sock"].close()
            raise
        if held is not None:
            server._held_sockets.append(held)
        return server

    def _serves_over_udptcp(self, sock: Any) -> bool:
        """A listening TCP socket for ``create_server(sock=)`` that the opt-in
        ``udptcp_serve_tcp_sockets`` and the rules send over udptcp."""
        if not self.udptcp_serve_tcp_sockets or not is_stream_socket(sock):
            return False
        host, port = sock.getsockname()[:2]
        wildcard = host in ("0.0.0.0", "::")
        return self.udptcp_routes(None if wildcard else host, port)

    async def start_tls(  # type: ignore[override]
        self,
        transport: asyncio.BaseTransport,
        protocol: asyncio.BaseProtocol,
        sslcontext: Any,
        **kwargs: Any,
    ) -> asyncio.Transport | None:
        """``loop.start_tls``; a udptcp transport is upgraded by udptcp's own."""
        if _is_udptcp(transport):
            return await tls.start_tls(transport, protocol, sslcontext, **kwargs)
        return await super().start_tls(transport, protocol, sslcontext, **kwargs)

    def close(self) -> None:
        """Close the loop, closing its udptcp endpoints first (no TIME-WAIT leaks)."""
        if not self.is_running() and not self.is_closed():
            close_endpoints(self)
        super().close()


def _is_udptcp(transport: asyncio.BaseTransport) -> bool:
    """A udptcp transport, or asyncio's TLS transport over one (TLS in TLS)."""
    while True:
        if isinstance(transport, Transport):
            return True
        ssl_protocol = getattr(transport, "_ssl_protocol", None)
        inner = getattr(ssl_protocol, "_transport", None)
        if inner is None or not isinstance(transport, asyncio.sslproto._SSLProtocolTransport):
            return False
        transport = inner


def _udptcp_kwargs(
    method: str, kwargs: dict[str, Any], passed: frozenset[str], ignored: frozenset[str]
) -> dict[str, Any]:
    unknown = set(kwargs) - passed - ignored
    if unknown:
        raise TypeError(f"{method}() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    return {name: value for name, value in kwargs.items() if name in passed}


_classes: dict[type[asyncio.AbstractEventLoop], type[asyncio.AbstractEventLoop]] = {}


def _base_class(
    base: str | type[asyncio.AbstractEventLoop] | None,
) -> type[asyncio.AbstractEventLoop]:
    if base is None or base == "asyncio":
        return asyncio.SelectorEventLoop
    if base == "uvloop":
        try:
            import uvloop
        except ImportError as exc:  # pragma: no cover - uvloop is a dependency off Windows
            raise ImportError("base='uvloop' needs the uvloop package") from exc
        return uvloop.Loop  # type: ignore[no-any-return]
    if isinstance(base, type) and issubclass(base, asyncio.AbstractEventLoop):
        return base
    raise TypeError(f"base must be None, 'asyncio', 'uvloop' or an event loop class, got {base!r}")


def loop_class(
    base: str | type[asyncio.AbstractEventLoop] | None = None,
) -> type[asyncio.AbstractEventLoop]:
    """The drop-in loop class for ``base`` (``None``/``"asyncio"``: asyncio's selector loop;
    ``"uvloop"``: ``uvloop.Loop``; or any event loop class with ``add_reader``).

    Instances route everything over udptcp until their ``udptcp_rules`` say otherwise.
    """
    cls = _base_class(base)
    if issubclass(cls, DropInMixin):
        return cls
    made = _classes.get(cls)
    if made is None:
        name = "UVLoop" if cls.__module__.startswith("uvloop") else cls.__name__.lstrip("_")
        made = type(
            f"DropIn{name}",
            (DropInMixin, cls),
            {"__module__": __name__, "__doc__": f"{cls.__qualname__} with udptcp drop-in."},
        )
        _classes[cls] = made
    return made


def new_event_loop(
    base: str | type[asyncio.AbstractEventLoop] | None = None,
    rules: Rules = None,
    config: Config | None = None,
    *,
    serve_tcp_sockets: bool = False,
) -> asyncio.AbstractEventLoop:
    """A new drop-in loop; see :func:`loop_factory` for the arguments."""
    loop = loop_class(base)()
    assert isinstance(loop, DropInMixin)
    loop.udptcp_rules = compile_rules(rules)
    loop.udptcp_config = config
    loop.udptcp_serve_tcp_sockets = serve_tcp_sockets
    return loop


class LoopFactory:
    """A callable making drop-in loops: what ``loop_factory=`` arguments take."""

    def __init__(
        self,
        base: str | type[asyncio.AbstractEventLoop] | None = None,
        rules: Rules = None,
        config: Config | None = None,
        *,
        serve_tcp_sockets: bool = False,
    ) -> None:
        loop_class(base)  # fail now on a bad base
        compile_rules(rules)  # and on bad rules
        self.base = base
        self.rules = rules
        self.config = config
        self.serve_tcp_sockets = serve_tcp_sockets

    def __call__(self) -> asyncio.AbstractEventLoop:
        return new_event_loop(
            self.base, self.rules, self.config, serve_tcp_sockets=self.serve_tcp_sockets
        )

    def __repr__(self) -> str:
        return f"udptcp.loop_factory(base={self.base!r}, rules={self.rules!r})"


def loop_factory(
    base: str | type[asyncio.AbstractEventLoop] | None = None,
    rules: Rules = None,
    config: Config | None = None,
    *,
    serve_tcp_sockets: bool = False,
) -> LoopFactory:
    """A loop factory for ``asyncio.run(..., loop_factory=)`` / ``asyncio.Runner``.

    ``base``: ``None`` (asyncio's default selector loop), ``"uvloop"`` or an event loop
    class. ``rules``: which destinations go over udptcp (default all; see the module
    docstring). ``config``: the :class:`~udptcp.Config` of those connections.
    ``serve_tcp_sockets``: serve a listening TCP socket passed as ``create_server(sock=)``
    over udptcp, on a UDP socket bound to the same address, when the rules say so (the
    gunicorn / uvicorn pattern of a socket bound before the loop starts); off by default,
    so such a socket keeps its kernel TCP meaning.
    """
    return LoopFactory(base, rules, config, serve_tcp_sockets=serve_tcp_sockets)


def uvloop_factory(
    rules: Rules = None, config: Config | None = None, *, serve_tcp_sockets: bool = False
) -> LoopFactory:
    """``loop_factory(base="uvloop", ...)``."""
    return LoopFactory("uvloop", rules, config, serve_tcp_sockets=serve_tcp_sockets)


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose new loops are drop-in loops (see :func:`install`)."""

    def __init__(
        self,
        base: str | type[asyncio.AbstractEventLoop] | None = None,
        rules: Rules = None,
        config: Config | None = None,
        *,
        serve_tcp_sockets: bool = False,
    ) -> None:
        super().__init__()
        self.loop_factory = LoopFactory(base, rules, config, serve_tcp_sockets=serve_tcp_sockets)

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A new drop-in loop."""
        return self.loop_factory()


def install(
    base: str | type[asyncio.AbstractEventLoop] | None = None,
    rules: Rules = None,
    config: Config | None = None,
    *,
    serve_tcp_sockets: bool = False,
) -> EventLoopPolicy:
    """Make every loop asyncio creates from now on a drop-in loop; return the policy.

    For code that calls ``asyncio.run(main())`` without a ``loop_factory``. Undo with
    ``asyncio.set_event_loop_policy(None)``. The arguments are :func:`loop_factory`'s.
    """
    policy = EventLoopPolicy(base, rules, config, serve_tcp_sockets=serve_tcp_sockets)
    asyncio.set_event_loop_policy(policy)
    return policy
