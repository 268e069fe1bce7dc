"""The error a peer connection raises, and the lazy import of the optional STUN codec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Attempt", "NATTraversalError", "require_aioice"]


@dataclass
class Attempt:
    """One candidate address tried, and what came of it."""

    #: "host", "srflx" (what a STUN server saw), "observed" (what the rendezvous saw),
    #: "relay" (the peer's TURN relay), "prflx" (learned from the peer's own datagrams) or
    #: "relayed" (reached through our own TURN allocation).
    kind: str
    address: tuple[Any, ...]
    #: "no answer", "answered", "chosen", "not tried", or an error.
    outcome: str = "not tried"
    sent: int = 0
    received: int = 0

    def __str__(self) -> str:
        host, port = self.address[0], self.address[1]
        where = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        counts = f" ({self.sent} sent, {self.received} received)" if self.sent else ""
        return f"{self.kind} {where}: {self.outcome}{counts}"


class NATTraversalError(ConnectionError):
    """A peer connection could not be made within its timeout.

    ``attempts`` lists every candidate tried and its outcome; ``stage`` says how far it got
    ("discovery", "rendezvous", "punching"); the message names them all.
    """

    def __init__(self, message: str, *, stage: str, attempts: list[Attempt] | None = None):
        self.stage = stage
        self.attempts = list(attempts or [])
        detail = "; ".join(str(a) for a in self.attempts)
        super().__init__(f"{message}" + (f" [{detail}]" if detail else ""))


def require_aioice() -> Any:
    """The ``aioice`` package, or an ImportError that says how to install it."""
    try:
        import aioice.stun
        import aioice.turn
    except ImportError as exc:
        raise ImportError(
            "udptcp's NAT traversal (STUN, TURN) needs the aioice package: "
            "pip install 'udptcp[nat]'"
        ) from exc
    return aioice
