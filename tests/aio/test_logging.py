"""What udptcp logs: lifecycle at DEBUG on ``udptcp.connection``, limit hits at INFO/WARNING
on ``udptcp.endpoint`` (rate-limited), nothing at WARNING in normal operation, no handlers."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from aio_helpers import FAST, Echo, Recorder, accepted, recorders, serving, until

import udptcp
from udptcp.aio import observe
from udptcp.core.segment import SYN, Options, Segment, encode


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    observe.reset_rate_limits()
    yield
    observe.reset_rate_limits()


def _messages(caplog: pytest.LogCaptureFixture, name: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name and r.levelno == level]


def test_udptcp_installs_no_handlers() -> None:
    for name in ("udptcp", "udptcp.connection", "udptcp.endpoint"):
        assert logging.getLogger(name).handlers == []


async def test_a_normal_connection_logs_open_and_close_at_debug_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="udptcp")
    made, factory = recorders()
    async with serving(factory) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port, config=FAST)
        peer = await accepted(made)
        transport.write(b"hello" * 1000)
        await peer.received(5000)
        transport.close()
        await client.lost
        assert peer.transport is not None
        await peer.eof
        peer.transport.close()
        await peer.lost
        await until(lambda: len(_messages(caplog, "udptcp.connection", logging.DEBUG)) >= 4)
    debug = _messages(caplog, "udptcp.connection", logging.DEBUG)
    vports = transport.get_extra_info("vports")
    opened = [m for m in debug if " opened " in m]
    assert any("(active)" in m and f"vports {vports[0]}->{vports[1]}" in m for m in opened)
    assert any("(passive)" in m and f"vports {vports[1]}->{vports[0]}" in m for m in opened)
    closed = [m for m in debug if " closed in " in m]
    assert any("5000 bytes sent" in m for m in closed)  # the client, from TIME-WAIT
    assert any("5000 received" in m for m in closed)  # the server
    # Normal operation: nothing a last-resort handler would print.
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_reset_is_logged_with_its_cause(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="udptcp.connection")
    made, factory = recorders()
    async with serving(factory) as (server, port):
        transport, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        peer = await accepted(made)
        transport.abort()
        await peer.lost
        await until(lambda: any(" reset " in m for m in _messages(caplog, "udptcp.connection", 10)))
    (line,) = [m for m in _messages(caplog, "udptcp.connection", 10) if " reset " in m]
    assert "RST" in line  # the core's explanation


async def test_a_handshake_timeout_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="udptcp.connection")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # reads nothing
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        with pytest.raises(TimeoutError):
            await udptcp.create_connection(Recorder, "127.0.0.1", port, config=FAST)
    await until(lambda: any("timed out" in m for m in _messages(caplog, "udptcp.connection", 10)))
    line = next(m for m in _messages(caplog, "udptcp.connection", 10) if "timed out" in m)
    assert f"127.0.0.1:{port}" in line and "SYN-SENT" not in line


async def test_refused_connections_warn_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="udptcp")
    config = FAST.replace(max_connections=1)
    async with serving(Echo, config=config) as (server, port):
        kept, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        for _ in range(3):
            with pytest.raises(ConnectionRefusedError):
                await udptcp.create_connection(Recorder, "127.0.0.1", port, config=FAST)
        assert server.endpoints[0].stats["refused_max_connections"] == 3
        warnings = _messages(caplog, "udptcp.endpoint", logging.WARNING)
        assert len(warnings) == 1  # a flood writes one line per interval, not one per SYN
        assert "max_connections (1) reached" in warnings[0]
        # Once the interval is over, the next line says how many were left out.
        observe._next_log.clear()
        with pytest.raises(ConnectionRefusedError):
            await udptcp.create_connection(Recorder, "127.0.0.1", port, config=FAST)
        warnings = _messages(caplog, "udptcp.endpoint", logging.WARNING)
        assert len(warnings) == 2 and "(2 more like it" in warnings[1]
        kept.abort()


async def test_syn_cookies_engaged_is_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="udptcp")
    async with serving(Echo, backlog=1) as (server, port):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.connect(("127.0.0.1", port))
            # Three SYNs that never complete: the first fills the backlog, the others get
            # cookies.
            for i in range(3):
                raw.send(
                    encode(Segment(2000 + i, port, 1000 * i, 0, SYN, 65535, Options(mss=1452)))
                )
            endpoint = server.endpoints[0]
            await until(lambda: endpoint.stats["syn_cookies_sent"] == 2)
    (line,) = _messages(caplog, "udptcp.endpoint", logging.INFO)
    assert "SYN cookies engaged" in line and "backlog 1 full" in line
    assert _messages(caplog, "udptcp.endpoint", logging.WARNING) == []


def test_logging_below_the_level_costs_no_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="udptcp")
    observe.limit_hit("refused_max_connections", "10.0.0.1", 5)
    assert caplog.records == [] and observe._next_log == {}


async def test_time_wait_overflow_is_info_and_the_connection_says_how_it_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="udptcp")
    config = udptcp.Config(max_time_wait=0)
    made, factory = recorders()
    async with serving(factory, config=config) as (server, port):
        client, proto = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        peer = await accepted(made)
        assert peer.transport is not None
        peer.transport.close()  # the server closes first: it would hold the TIME-WAIT
        await proto.eof
        client.close()
        await until(lambda: server.endpoints[0].stats["time_wait_dropped"] == 1)
    (info,) = _messages(caplog, "udptcp.endpoint", logging.INFO)
    assert "forgotten instead of entering TIME-WAIT: max_time_wait (0)" in info
    ended = [m for m in _messages(caplog, "udptcp.connection", logging.DEBUG) if "dropped" in m]
    assert len(ended) == 1 and "dropped (max_time_wait reached) in TIME-WAIT: " in ended[0]


async def test_a_connection_that_hit_the_reassembly_cap_says_so_at_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The cap itself is tested where it is counted (tests/core/test_reassembly.py); here,
    # that a connection which counted drops reports them once, at INFO, when it ends.
    caplog.set_level(logging.INFO, logger="udptcp")
    made, factory = recorders()
    async with serving(factory) as (server, port):
        transport, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        peer = await accepted(made)
        assert peer.transport is not None
        peer.transport.get_extra_info("udptcp_connection").stats_counters["reassembly_dropped"] = 7
        transport.abort()
        await peer.lost
        await until(lambda: not server.endpoints[0].connections())
    (line,) = _messages(caplog, "udptcp.connection", logging.INFO)
    assert "dropped 7 out-of-order segments at max_reassembly_pieces (4096)" in line
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
