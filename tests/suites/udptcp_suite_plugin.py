"""pytest plugin: another project's test suite, unmodified, over udptcp's drop-in loop.

Loaded with ``-p udptcp_suite_plugin`` (``tests/suites/`` on ``PYTHONPATH``) by
``tests/suites/run.py``. At import time, before the suite's own ``conftest.py`` runs, it
sets the event loop policy that ``UDPTCP_SUITE_MODE`` names:

* ``tcp-asyncio``: asyncio's own loop (kernel TCP), the reference run;
* ``tcp-uvloop``: uvloop's loop (kernel TCP);
* ``udptcp-asyncio`` / ``udptcp-uvloop``: ``udptcp.install(base=..., serve_tcp_sockets=True)``
  (the opt-in that serves a pre-bound TCP socket passed as ``create_server(sock=)`` over
  udptcp, as aiohttp's ``TestServer`` passes one), so every loop the
  suite creates through the policy (``asyncio.run``, ``asyncio.Runner``,
  ``IsolatedAsyncioTestCase``, pytest-asyncio, aiohttp's ``loop`` fixture with
  ``--aiohttp-loop=pyloop``) is a drop-in loop and its TCP goes over udptcp.

It records each test's outcome and evidence of where the traffic went, and writes both as
JSON to ``UDPTCP_SUITE_REPORT`` at the end of the session:

* ``udptcp``: udptcp endpoints made (each a UDP socket), datagrams in and out, connections
  opened (``active``, a client's ``create_connection``) and accepted (``passive``);
* ``kernel_tcp``: TCP sockets the suite connected or listened on through Python's
  ``socket`` module (asyncio's selector loop connects that way; uvloop's C code does not
  show here).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import socket
import sys
from typing import Any

import pytest

MODE = os.environ.get("UDPTCP_SUITE_MODE", "udptcp-asyncio")
TRANSPORT, _, LOOP = MODE.partition("-")
if TRANSPORT not in ("tcp", "udptcp") or LOOP not in ("asyncio", "uvloop"):
    raise SystemExit(f"UDPTCP_SUITE_MODE must be tcp|udptcp-asyncio|uvloop, got {MODE!r}")

_udptcp_stats: list[collections.Counter[str]] = []
_opens: collections.Counter[str] = collections.Counter()
_kernel_tcp: collections.Counter[str] = collections.Counter()


def _install() -> None:
    if TRANSPORT == "tcp":
        if LOOP == "uvloop":
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return
    import udptcp
    from udptcp.aio import endpoint, transport

    # serve_tcp_sockets: aiohttp's TestServer binds a TCP socket itself and passes it to
    # create_server(sock=); the opt-in serves it over udptcp on the same port.
    udptcp.install(base=None if LOOP == "asyncio" else "uvloop", serve_tcp_sockets=True)

    endpoint_init = endpoint.Endpoint.__init__
    transport_init = transport.Transport.__init__

    def counting_endpoint(self: Any, *args: Any, **kwargs: Any) -> None:
        endpoint_init(self, *args, **kwargs)
        _udptcp_stats.append(self.stats)

    def counting_transport(self: Any, *args: Any, **kwargs: Any) -> None:
        transport_init(self, *args, **kwargs)
        _opens["active" if kwargs.get("protocol_factory") is not None else "passive"] += 1

    endpoint.Endpoint.__init__ = counting_endpoint  # type: ignore[method-assign]
    transport.Transport.__init__ = counting_transport  # type: ignore[method-assign]


def _audit_kernel_tcp() -> None:
    connect, connect_ex, listen = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.socket.listen,
    )

    def is_tcp(sock: socket.socket) -> bool:
        return sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6)

    def audited_connect(self: socket.socket, address: Any) -> None:
        if is_tcp(self):
            _kernel_tcp["connect"] += 1
        connect(self, address)

    def audited_connect_ex(self: socket.socket, address: Any) -> int:
        if is_tcp(self):
            _kernel_tcp["connect"] += 1
        return connect_ex(self, address)

    def audited_listen(self: socket.socket, *args: Any) -> None:
        if is_tcp(self):
            _kernel_tcp["listen"] += 1
        listen(self, *args)

    socket.socket.connect = audited_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = audited_connect_ex  # type: ignore[method-assign]
    socket.socket.listen = audited_listen  # type: ignore[method-assign]


_install()
_audit_kernel_tcp()

_outcomes: dict[str, str] = {}


def pytest_report_header(config: pytest.Config) -> str:
    return f"udptcp suite plugin: {MODE} (Python {sys.version.split()[0]})"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    nodeid = report.nodeid
    previous = _outcomes.get(nodeid)
    if hasattr(report, "wasxfail"):
        outcome = "xpassed" if report.passed else "xfailed"
    elif report.failed:
        outcome = "failed"
    elif report.skipped:
        outcome = "skipped"
    elif report.when == "call":
        outcome = "passed"
    else:
        return
    if previous in ("failed",):
        return  # a failure in any phase decides
    _outcomes[nodeid] = outcome


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get("UDPTCP_SUITE_REPORT")
    if not path:
        return
    totals = collections.Counter()
    for stats in _udptcp_stats:
        totals["datagrams_in"] += stats.get("datagrams_in", 0)
        totals["datagrams_out"] += stats.get("datagrams_out", 0)
    report = {
        "mode": MODE,
        "exitstatus": int(exitstatus),
        "outcomes": _outcomes,
        "udptcp": {
            "endpoints": len(_udptcp_stats),
            "datagrams_in": totals["datagrams_in"],
            "datagrams_out": totals["datagrams_out"],
            "active_opens": _opens["active"],
            "passive_opens": _opens["passive"],
        },
        "kernel_tcp": dict(_kernel_tcp),
    }
    with open(path, "w", encoding="utf-8") as out:
        json.dump(report, out, indent=1, sort_keys=True)
