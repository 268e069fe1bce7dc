"""The path keepalive (``Config.path_keepalive``): one NAT binding request per (socket,
remote address) for all the connections over that pair, from the opening side only, for as
long as any of them is open. Driven on a virtual clock: no sleeping."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from udptcp.aio.natkeep import _HEADER, BINDING_REQUEST, BindingKeeper


class VirtualLoop:
    """The two loop methods the keeper uses, on a clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[tuple[float, Callable[[], None], Handle]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle()
        self.calls.append((when, callback, handle))
        return handle

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            due = [c for c in self.calls if c[0] <= end and not c[2].cancelled]
            if not due:
                break
            call = min(due, key=lambda c: c[0])
            self.calls.remove(call)
            self.now = max(self.now, call[0])
            call[1]()
        self.now = end


class Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeEndpoint:
    """What :class:`BindingKeeper` sees of an endpoint: a connection table keyed by
    (remote address, local port, remote port), a stats counter and a datagram sink."""

    def __init__(self) -> None:
        self.loop: Any = VirtualLoop()
        self._conns: dict[tuple[Any, int, int], object] = {}
        self.stats: collections.Counter[str] = collections.Counter()
        self.sent: list[tuple[float, tuple[str, int]]] = []
        self.is_closed = False
        self.nat_keeper = None

    def add_datagram_handler(self, handler: Any) -> Callable[[], None]:
        return lambda: None

    def send_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        assert _HEADER.unpack_from(data)[0] == BINDING_REQUEST and len(data) == 20
        self.sent.append((self.loop.now, addr))


SERVER = ("192.0.2.1", 4000)
OTHER = ("192.0.2.2", 4000)


def _open(endpoint: FakeEndpoint, keeper: BindingKeeper, addr: Any, port: int) -> None:
    endpoint._conns[(addr, port, 80)] = object()
    keeper.keep_path(addr, 25.0)


def test_one_request_per_interval_for_all_the_connections_over_one_pair() -> None:
    endpoint = FakeEndpoint()
    keeper = BindingKeeper(endpoint)  # type: ignore[arg-type]
    for port in range(1000, 1000 + 500):
        _open(endpoint, keeper, SERVER, port)
    endpoint.loop.advance(100.0)
    # Four intervals, four requests: not 500 per interval.
    assert [t for t, _ in endpoint.sent] == [25.0, 50.0, 75.0, 100.0]
    assert endpoint.stats["nat_keepalives_sent"] == 4


def test_each_remote_address_is_kept_and_dropped_with_its_last_connection() -> None:
    endpoint = FakeEndpoint()
    keeper = BindingKeeper(endpoint)  # type: ignore[arg-type]
    _open(endpoint, keeper, SERVER, 1000)
    _open(endpoint, keeper, SERVER, 1001)
    endpoint.loop.advance(10.0)
    _open(endpoint, keeper, OTHER, 1002)
    endpoint.loop.advance(20.0)
    assert endpoint.sent == [(25.0, SERVER)]
    del endpoint._conns[(SERVER, 1000, 80)]  # one of two connections closes: still kept
    endpoint.loop.advance(10.0)
    assert endpoint.sent == [(25.0, SERVER), (35.0, OTHER)]
    del endpoint._conns[(SERVER, 1001, 80)]  # the last one to SERVER
    endpoint.loop.advance(40.0)
    assert [s for s in endpoint.sent if s[1] == SERVER] == [(25.0, SERVER)]
    assert [t for t, a in endpoint.sent if a == OTHER] == [35.0, 60.0]
    endpoint._conns.clear()
    endpoint.loop.advance(100.0)
    assert len(endpoint.sent) == 3  # nothing left to keep: no more requests
    assert not any(not c[2].cancelled for c in endpoint.loop.calls)  # and no timer armed
