"""Segment traces: every segment sent and received and every state change, as JSON lines.

Turn tracing on for a connection with ``Config(trace="path.jsonl")``, or for everything on
one endpoint with :func:`trace_endpoint`. Each line of the file is one JSON object (a
qlog-like event stream; several connections, and both ends of one, may share a file):

``{"event": "trace_start", "format": "udptcp-trace", "version": 1, "time": T}``
    Written when a file is opened by a tracer.
``{"event": "segment_sent" | "segment_received", "time": T, "local": [HOST, PORT],
"remote": [HOST, PORT], "sport": N, "dport": N, "seq": N, "ack": N, "flags": "SYN,ACK",
"window": N, "len": N, "options": {...}, "header": HEX}``
    One TCP segment. ``local`` and ``remote`` are the UDP addresses of this endpoint and
    the peer (a wildcard local address is replaced by the address the system routes
    towards the peer from); ``sport`` and ``dport`` are the segment's own virtual ports
    (for a received segment ``sport`` is the peer's). ``window`` is the raw 16-bit field
    (unscaled); ``len`` the data length (the data itself is not written unless the tracer
    was made with ``payload=True``: then ``"data"`` holds it in base64). ``options`` has
    the keys present among ``mss``, ``wscale``, ``sack_permitted``, ``timestamps``
    ``[TSval, TSecr]``, ``sack`` ``[[left, right], ...]``. ``header`` is the TCP header as
    encoded on the wire, options included, in hex (its checksum is udptcp's, computed
    without a pseudo-header and over the data too).
``{"event": "state", "time": T, "local": ..., "remote": ..., "sport": N, "dport": N,
"from": "SYN-SENT", "to": "ESTABLISHED"}``
    A state change of the connection whose local virtual port is ``sport``.

``time`` is Unix time in seconds (float). Segments are traced one by one before UDP GSO
joins them, so a GSO send is one line per segment; in secure mode the plain segments are
traced (before sealing, after opening). :mod:`udptcp.tools.pcap` turns a trace into a pcap
file, and ``python -m udptcp trace`` prints it as a ladder.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import socket
import time
from typing import IO, TYPE_CHECKING, Any

from udptcp.core.segment import Segment, encode

if TYPE_CHECKING:
    from .interfaces import Address, ExtensionHost
    from .interfaces import ConnectionKey as Key
    from .interfaces import HostedTransport as Transport

    Endpoint = ExtensionHost[Any]

__all__ = ["EndpointTracer", "TraceFile", "trace_connection", "trace_endpoint"]

FORMAT = "udptcp-trace"
VERSION = 1

# Open trace files by path, shared by every tracer writing to them.
_files: dict[str, TraceFile] = {}
# Paths that could not be opened for a passive connection (logged once).
_failed: set[str] = set()
logger = logging.getLogger("udptcp.endpoint")


class TraceFile:
    """One JSON-lines file, opened once per path and shared (reference counted)."""

    def __init__(self, path: str) -> None:
        self.path = path
        # Line-buffered: a trace read while the program runs (or after it crashed) is
        # whole up to its last line.
        self._file: IO[str] | None = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._users = 0
        self.write({"event": "trace_start", "format": FORMAT, "version": VERSION})

    @classmethod
    def open(cls, path: str) -> TraceFile:
        """The shared file for ``path``, one more user counted."""
        path = str(path)
        shared = _files.get(path)
        if shared is None or shared._file is None:
            shared = _files[path] = cls(path)
        shared._users += 1
        return shared

    def write(self, event: dict[str, Any]) -> None:
        """Write one event (its ``time`` filled in if absent)."""
        if self._file is None:
            return
        event.setdefault("time", time.time())
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")

    def release(self) -> None:
        """One user fewer; the file is closed with the last."""
        self._users -= 1
        if self._users <= 0 and self._file is not None:
            self._file.close()
            self._file = None
            if _files.get(self.path) is self:
                del _files[self.path]


class EndpointTracer:
    """The endpoint's trace hook (``Endpoint.trace``): writes each segment of a traced
    connection (or, with :meth:`trace_all`, of every connection) to its file."""

    def __init__(self, endpoint: Endpoint, *, payload: bool = False) -> None:
        self.endpoint = endpoint
        self.payload = payload
        self._by_key: dict[Key, TraceFile] = {}
        self._all: TraceFile | None = None
        # Local state index already written, per connection (Connection.state_history).
        self._states_seen: dict[Key, int] = {}
        self._local_ips: dict[str, str] = {}

    def trace_all(self, path: str) -> None:
        """Trace every segment on the endpoint to ``path``."""
        if self._all is not None:
            self._all.release()
        self._all = TraceFile.open(path)

    def add(
        self,
        transport: Transport,
        path: str,
        received: tuple[Segment, Address] | None = None,
    ) -> None:
        """Trace ``transport``'s connection to ``path``, starting with ``received`` (the
        segment that made a passive connection, which arrived before it existed) and the
        connection's state changes so far."""
        key = transport.key
        if key not in self._by_key:
            self._by_key[key] = TraceFile.open(path)
            if received is not None and self._all is None:
                self("in", received[1], received[0])
        self.state_changed(transport, first=1)

    def forget(self, transport: Transport) -> None:
        """The connection is gone: stop tracing it."""
        key = transport.key
        self._states_seen.pop(key, None)
        traced = self._by_key.pop(key, None)
        if traced is not None:
            traced.release()

    def close(self) -> None:
        """Stop tracing on this endpoint and release every file."""
        for traced in self._by_key.values():
            traced.release()
        self._by_key.clear()
        self._states_seen.clear()
        if self._all is not None:
            self._all.release()
            self._all = None
        if self.endpoint.trace is self:
            self.endpoint.trace = None

    def _file_for(self, key: Key) -> TraceFile | None:
        return self._by_key.get(key, self._all)

    def __call__(self, direction: str, addr: Address, seg: Segment) -> None:
        if direction == "out":
            key = (addr, seg.src_port, seg.dst_port)
        else:
            key = (addr, seg.dst_port, seg.src_port)
        traced = self._file_for(key)
        if traced is None:
            return
        event = self._where(addr, seg.src_port, seg.dst_port)
        event["event"] = "segment_sent" if direction == "out" else "segment_received"
        event.update(segment_fields(seg, self.payload))
        traced.write(event)

    def state_changed(self, transport: Transport, first: int | None = None) -> None:
        """Write the state changes of ``transport`` not written yet."""
        key = transport.key
        traced = self._file_for(key)
        if traced is None:
            return
        history = transport.conn.state_history
        seen = self._states_seen.get(key, first if first is not None else 1)
        conn = transport.conn
        for i in range(max(seen, 1), len(history)):
            event = self._where(transport.peer, conn.local_port, conn.remote_port)
            event.update({"event": "state", "from": history[i - 1].value, "to": history[i].value})
            traced.write(event)
        self._states_seen[key] = len(history)

    def _where(self, peer: Address, sport: int, dport: int) -> dict[str, Any]:
        local = self.endpoint.sockname
        return {
            "local": [self._local_ip(local[0], peer[0]), local[1]],
            "remote": [peer[0], peer[1]],
            "sport": sport,
            "dport": dport,
        }

    def _local_ip(self, bound: str, remote: str) -> str:
        """``bound``, or for a wildcard socket the source address towards ``remote``."""
        try:
            if not ipaddress.ip_address(bound.split("%")[0]).is_unspecified:
                return bound
        except ValueError:
            return bound
        found = self._local_ips.get(remote)
        if found is None:
            found = bound
            family = socket.AF_INET6 if ":" in remote else socket.AF_INET
            try:
                # Connecting a UDP socket sends nothing; it only asks for a route.
                with socket.socket(family, socket.SOCK_DGRAM) as probe:
                    probe.connect((remote, 9))
                    found = probe.getsockname()[0]
            except OSError:
                pass
            self._local_ips[remote] = found
        return found


def segment_fields(seg: Segment, payload: bool = False) -> dict[str, Any]:
    """The JSON fields of one segment (see the module docstring)."""
    header = encode(
        Segment(seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window, seg.options)
    )
    fields: dict[str, Any] = {
        "seq": seg.seq,
        "ack": seg.ack,
        "flags": seg.flag_names(),
        "window": seg.window,
        "len": len(seg.payload),
    }
    opts = seg.options
    if opts is not None:
        o: dict[str, Any] = {}
        if opts.mss is not None:
            o["mss"] = opts.mss
        if opts.wscale is not None:
            o["wscale"] = opts.wscale
        if opts.sack_permitted:
            o["sack_permitted"] = True
        if opts.timestamps is not None:
            o["timestamps"] = list(opts.timestamps)
        if opts.sack_blocks:
            o["sack"] = [list(block) for block in opts.sack_blocks]
        fields["options"] = o
    fields["header"] = header.hex()
    if payload and seg.payload:
        fields["data"] = base64.b64encode(bytes(seg.payload)).decode("ascii")
    return fields


def tracer_for(endpoint: Endpoint, payload: bool = False) -> EndpointTracer:
    """The endpoint's tracer, installed if it has none yet."""
    current = endpoint.trace
    if isinstance(current, EndpointTracer):
        return current
    if current is not None:
        raise RuntimeError(f"{endpoint!r} already has a trace hook: {current!r}")
    tracer = EndpointTracer(endpoint, payload=payload)
    endpoint.trace = tracer
    return tracer


def trace_connection(
    endpoint: Endpoint,
    transport: Transport,
    path: str,
    received: tuple[Segment, Address] | None = None,
) -> None:
    """Trace ``transport`` (a connection made with ``Config.trace``) to ``path``; a passive
    connection passes the segment that made it as ``received``.

    A file that cannot be opened fails an active open (``create_connection`` raises the
    ``OSError``); a passive one goes on untraced, logged once per path, so a bad path in a
    server's ``Config`` cannot break the endpoint's receive path.
    """
    try:
        tracer_for(endpoint).add(transport, path, received)
    except OSError as exc:
        if received is None:
            raise
        if path not in _failed:
            _failed.add(path)
            logger.error("cannot write the trace file %s: %s", path, exc.strerror or exc)


def trace_endpoint(endpoint: Endpoint, path: str, *, payload: bool = False) -> EndpointTracer:
    """Trace every connection of ``endpoint`` to ``path`` (JSON lines, appended); with
    ``payload`` the data too. ``EndpointTracer.close()`` stops it."""
    tracer = tracer_for(endpoint, payload)
    tracer.payload = payload
    tracer.trace_all(path)
    return tracer
