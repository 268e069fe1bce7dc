"""The peers measured, one adapter module each, and what each can take part in."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class PeerSpec:
    key: str
    label: str
    module: str
    options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    #: Has an asyncio streams API (StreamReader/StreamWriter with working drain()).
    streams: bool = False
    #: Has a connection handshake and close, so connect+close per second means something.
    handshake: bool = True
    #: Runs over UDP, so it can go through the impairment relay.
    udp: bool = True
    #: Why a scenario is n/a for this peer: scenario -> reason.
    not_applicable: dict[str, str] = field(default_factory=dict)


PEERS: dict[str, PeerSpec] = {
    spec.key: spec
    for spec in (
        PeerSpec(
            "udptcp",
            # Compiled as `pip install` builds it where a C compiler is present (the report's
            # header says what this run's build had).
            "udptcp, compiled, default MSS (1472-B datagrams)",
            "benchmarks.peers.udptcp_peer",
            streams=True,
        ),
        PeerSpec(
            "udptcp-secure",
            "udptcp, secure mode (Noise NK, ChaCha20-Poly1305)",
            "benchmarks.peers.udptcp_peer",
            options={"secure": True},
            streams=True,
        ),
        PeerSpec(
            "udptcp-pmtu",
            "udptcp, probed MSS (pmtu_max=65507: loopback's 64 KiB MTU)",
            "benchmarks.peers.udptcp_peer",
            options={"pmtu_max": 65507},
            streams=True,
        ),
        PeerSpec(
            "udptcp-nooffload",
            "udptcp, offload off (UDPTCP_OFFLOAD=0)",
            "benchmarks.peers.udptcp_peer",
            env={"UDPTCP_OFFLOAD": "0"},
            streams=True,
        ),
        PeerSpec(
            "udptcp-pure",
            "udptcp, pure Python (UDPTCP_PURE=1: no compiled codec or engine)",
            "benchmarks.peers.udptcp_peer",
            env={"UDPTCP_PURE": "1"},
            streams=True,
        ),
        PeerSpec(
            "udp",
            "plain UDP datagrams (no protocol: the floor)",
            "benchmarks.peers.udp_echo",
            handshake=False,
        ),
        PeerSpec(
            "tcp",
            "kernel TCP",
            "benchmarks.peers.tcp_peer",
            streams=True,
            udp=False,
            not_applicable={"loss": "a TCP stream cannot cross the UDP relay"},
        ),
        PeerSpec(
            "quic",
            "aioquic (QUIC, 1 stream)",
            "benchmarks.peers.quic_peer",
            not_applicable={
                "bulk-streams": "aioquic's StreamWriter.drain() never waits (no backpressure)"
            },
        ),
        PeerSpec(
            "kcp",
            "KCP (kcp pkg, fast mode)",
            "benchmarks.peers.kcp_peer",
            handshake=False,
            not_applicable={
                "bulk-streams": "no streams API",
                "connect": "KCP has no handshake or close",
            },
        ),
    )
}


def load(spec: PeerSpec) -> ModuleType:
    """The adapter module (``Client`` and ``Server`` classes); ImportError if the peer's
    package is not installed."""
    return importlib.import_module(spec.module)


def unavailable(spec: PeerSpec) -> str | None:
    """None if the peer can run here, else why not."""
    try:
        load(spec)
    except ImportError as exc:
        return f"not installed ({exc.name or exc})"
    except Exception as exc:  # a broken build
        return f"import failed ({type(exc).__name__}: {exc})"
    return None
