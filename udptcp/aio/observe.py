"""What udptcp logs, and the trace hooks for state changes.

udptcp logs through the standard :mod:`logging` module and installs no handler, so nothing is
printed unless the application configures logging (and nothing at WARNING or above happens
in normal operation, so Python's last-resort handler stays silent too). Loggers:

* ``udptcp.connection`` — DEBUG: a connection reached ESTABLISHED ("opened"), and its end
  ("closed", "reset", "timed out", "refused", "aborted", "dropped (max_time_wait
  reached)", "reopened by a new SYN"), with its addresses, virtual ports, bytes each way
  and retransmissions. INFO at its end when it dropped out-of-order segments at
  ``Config.max_reassembly_pieces``.
* ``udptcp.endpoint`` — limit hits: WARNING when a connection is refused at
  ``max_connections`` or ``max_connections_per_address``, or a SYN is dropped because the
  listen backlog is full and SYN cookies are off; INFO when SYN cookies are engaged, a host
  exceeds ``max_half_open_per_address``, TIME-WAIT overflows ``max_time_wait``, or a reply
  to an unproven address is held back by the 3x anti-amplification rule.

Limit hits are what a flood produces, so each kind is logged at most once per
:data:`LIMIT_LOG_INTERVAL` seconds per process; the next record says how many were left
out. Every hit is counted in ``Endpoint.statistics()`` whatever is logged.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from udptcp.core.connection import State

from .tracing import EndpointTracer

if TYPE_CHECKING:
    from .interfaces import ExtensionHost
    from .interfaces import HostedTransport as Transport

    Endpoint = ExtensionHost[Any]

__all__ = ["LIMIT_LOG_INTERVAL", "connection_logger", "endpoint_logger", "limit_hit"]

connection_logger = logging.getLogger("udptcp.connection")
endpoint_logger = logging.getLogger("udptcp.endpoint")

#: Seconds between two records of the same limit (per process).
LIMIT_LOG_INTERVAL = 10.0

_WARNING = logging.WARNING
_INFO = logging.INFO
#: Limit counter -> (level, what it means).
LIMITS: dict[str, tuple[int, str]] = {
    "refused_max_connections": (
        _WARNING,
        "connection from %s refused: max_connections (%d) reached",
    ),
    "refused_per_address": (
        _WARNING,
        "connection from %s refused: max_connections_per_address (%d) reached",
    ),
    "syn_dropped_backlog": (
        _WARNING,
        "SYN from %s dropped: listen backlog (%d) full and SYN cookies off",
    ),
    "syn_cookies_sent": (
        _INFO,
        "SYN cookies engaged: answering %s statelessly (backlog %d full or host over its "
        "half-open limit)",
    ),
    "half_open_per_address": (
        _INFO,
        "host %s is over max_half_open_per_address (%d)",
    ),
    "time_wait_dropped": (
        _INFO,
        "connection with %s forgotten instead of entering TIME-WAIT: max_time_wait (%d)",
    ),
    "amplification_limited": (
        _INFO,
        "reply to unproven address %s held back: it would exceed %dx what it sent",
    ),
}

# kind -> (time the next record may be written, records left out since the last one).
_next_log: dict[str, float] = {}
_suppressed: dict[str, int] = {}


def limit_hit(kind: str, who: Any, limit: int) -> None:
    """Log one hit of the limit ``kind`` (a key of :data:`LIMITS`), rate-limited."""
    level, message = LIMITS[kind]
    if not endpoint_logger.isEnabledFor(level):
        return
    now = time.monotonic()
    if now < _next_log.get(kind, 0.0):
        _suppressed[kind] = _suppressed.get(kind, 0) + 1
        return
    _next_log[kind] = now + LIMIT_LOG_INTERVAL
    left_out = _suppressed.pop(kind, 0)
    if left_out:
        message += f" ({left_out} more like it in the last {LIMIT_LOG_INTERVAL:g} s not logged)"
    endpoint_logger.log(level, message, who, limit)


def reset_rate_limits() -> None:
    """Forget when each limit was last logged (for tests)."""
    _next_log.clear()
    _suppressed.clear()


def state_changed(endpoint: Endpoint, transport: Transport) -> None:
    """The endpoint saw ``transport`` in a new state: trace it, log an opening."""
    trace = endpoint.trace
    if trace is not None:
        on_state = getattr(trace, "state_changed", None)
        if on_state is not None:
            on_state(transport)
    conn = transport.conn
    if conn.state is State.ESTABLISHED and connection_logger.isEnabledFor(logging.DEBUG):
        connection_logger.debug(
            "%s opened (%s): %s vport %d <-> %s vport %d",
            _name(transport),
            "passive" if transport.listener is not None else "active",
            _addr(endpoint.sockname),
            conn.local_port,
            _addr(transport.peer),
            conn.remote_port,
        )


def forgotten(endpoint: Endpoint, transport: Transport, why: str | None = None) -> None:
    """The endpoint forgot ``transport``: stop tracing it, log how the connection ended."""
    trace = endpoint.trace
    if isinstance(trace, EndpointTracer):
        trace.forget(transport)
    conn = transport.conn
    dropped = conn.stats_counters["reassembly_dropped"]
    if dropped and connection_logger.isEnabledFor(_INFO):
        connection_logger.info(
            "%s dropped %d out-of-order segments at max_reassembly_pieces (%d)",
            _name(transport),
            dropped,
            conn.config.max_reassembly_pieces,
        )
    if not connection_logger.isEnabledFor(logging.DEBUG):
        return
    c = conn.stats_counters
    connection_logger.debug(
        "%s %s in %s: %d bytes sent, %d received, %d retransmissions",
        _name(transport),
        why or _ending(conn.close_error),
        conn.state.value,
        c["bytes_sent"],
        c["bytes_received"],
        c["retransmits"],
    )


def endpoint_closed(endpoint: Endpoint) -> None:
    """The endpoint closed: release its trace files."""
    if isinstance(endpoint.trace, EndpointTracer):
        endpoint.trace.close()


def _ending(error: BaseException | None) -> str:
    if error is None:
        return "closed"
    if isinstance(error, ConnectionRefusedError):
        what = "refused"
    elif isinstance(error, ConnectionResetError):
        what = "reset"
    elif isinstance(error, TimeoutError):
        what = "timed out"
    elif isinstance(error, ConnectionAbortedError):
        what = "aborted"
    else:
        what = "failed"
    detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return f"{what} ({detail})" if detail else what


def _name(transport: Transport) -> str:
    conn = transport.conn
    return f"connection {_addr(transport.peer)} vports {conn.local_port}->{conn.remote_port}"


def _addr(addr: Any) -> str:
    try:
        host, port = addr[0], addr[1]
    except (TypeError, IndexError):
        return repr(addr)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
