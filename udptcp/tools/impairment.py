"""Network impairment settings: what a relay or simulated link does to datagrams.

`Impairment` is shared by the UDP relay (`udptcp.tools.relay`) and anything else that
wants a compact, validated description of a bad path, with a parser for the short textual
form the command line uses ("loss=5%,delay=10ms,rate=10mbit").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Impairment"]


def _check_probability(name: str, value: float) -> None:
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def _check_duration(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a finite, non-negative number of seconds, got {value!r}")


@dataclass
class Impairment:
    """Network conditions applied to one direction of the relay.

    Times are in seconds, `rate` in bytes per second of UDP payload, `mtu` in bytes of UDP
    payload. The default instance is a perfect link. Values are validated on construction
    (`ValueError`).
    """

    loss: float = 0.0
    """Probability that a datagram is dropped (the long-run share, when losses are bursty)."""
    burst: float = 0.0
    """Mean length of a run of lost datagrams, for bursty loss; 0 (the default) loses each
    datagram independently. With a value >= 1 losses follow a two-state (Gilbert) chain, as
    netem's ``loss gemodel`` does: in the bad state every datagram is lost, in the good state
    none; the chain leaves the bad state with probability 1/burst per datagram and enters it
    as often as makes ``loss`` the long-run share. (Unlike netem's, the relay's chain also
    steps once per millisecond of silence, so a spell does not outlast a quiet sender.)"""
    duplicate: float = 0.0
    """Probability that a datagram is sent twice (the copy is delayed independently)."""
    reorder: float = 0.0
    """Probability that a datagram is held back `reorder_delay` extra seconds."""
    reorder_delay: float = 0.01
    """Extra hold-back of a reordered datagram, in seconds."""
    delay: float = 0.0
    """One-way base delay in seconds."""
    jitter: float = 0.0
    """Uniform extra delay in [0, jitter] seconds, drawn per datagram."""
    corrupt: float = 0.0
    """Probability that one random bit of the datagram is flipped."""
    rate: float | None = None
    """Link rate in bytes per second (serialisation delay and queueing); None = unlimited."""
    queue_limit: int = 1000
    """Datagrams waiting for the link beyond this many are dropped (drop-tail)."""
    mtu: int | None = None
    """Datagrams whose UDP payload is longer than this are dropped; None = no limit."""

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            _check_probability(name, getattr(self, name))
        for name in ("reorder_delay", "delay", "jitter"):
            _check_duration(name, getattr(self, name))
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(
                f"rate must be a positive number of bytes/s or None, got {self.rate!r}"
            )
        if self.burst != 0.0 and not (math.isfinite(self.burst) and self.burst >= 1.0):
            raise ValueError(f"burst must be 0 (independent losses) or >= 1, got {self.burst!r}")
        if self.burst and self.loss >= 1.0:
            raise ValueError("bursty loss needs loss < 1")
        if self.queue_limit < 0:
            raise ValueError(f"queue_limit must be >= 0, got {self.queue_limit!r}")
        if self.mtu is not None and self.mtu < 0:
            raise ValueError(f"mtu must be >= 0 or None, got {self.mtu!r}")

    @property
    def is_perfect(self) -> bool:
        """True when this impairment changes nothing (every datagram goes straight through)."""
        return (
            self.loss == 0.0
            and self.burst == 0.0
            and self.duplicate == 0.0
            and self.reorder == 0.0
            and self.delay == 0.0
            and self.jitter == 0.0
            and self.corrupt == 0.0
            and self.rate is None
            and self.mtu is None
        )

    @classmethod
    def parse(cls, text: str) -> Impairment:
        """Parse a netem-like description such as ``"loss=5%,dup=0.02,delay=10ms,rate=10mbit"``.

        Items are ``key=value`` separated by commas (or whitespace); a later item overrides an
        earlier one with the same key, so descriptions can be concatenated. Keys: ``loss``,
        ``burst`` (mean loss-run length in datagrams), ``duplicate``/``dup``, ``reorder``,
        ``reorder_delay``/``reorder-delay``, ``delay``, ``jitter``, ``corrupt``, ``rate``,
        ``queue_limit``/``queue``/``limit``, ``mtu``.
        Probabilities are fractions or percentages (``0.05``, ``5%``). Times need a unit:
        ``us``, ``ms`` or ``s`` (``delay=10`` is refused rather than read as ten seconds;
        only ``0`` may go without). Rates need one too: ``bit``, ``kbit``, ``mbit``,
        ``gbit`` (bits/s) or ``b``, ``kb``, ``mb``, ``gb`` (bytes/s), decimal multiples,
        optionally followed by ``/s`` or ``ps``; ``none`` means unlimited.
        An empty string is a perfect link. Raises `ValueError` naming the offending item.
        """
        values: dict[str, Any] = {}
        for item in re.split(r"[,\s]+", text.strip()):
            if not item:
                continue
            key, sep, raw = item.partition("=")
            if not sep or not key or not raw:
                raise ValueError(f"impairment item {item!r} is not of the form key=value")
            name = _ALIASES.get(key.strip().lower().replace("-", "_"))
            if name is None:
                known = ", ".join(sorted(set(_ALIASES)))
                raise ValueError(f"unknown impairment parameter {key!r} (known: {known})")
            try:
                values[name] = _PARSERS[name](raw.strip().lower())
            except ValueError as exc:
                raise ValueError(f"bad value in impairment item {item!r}: {exc}") from None
        return cls(**values)

    def __str__(self) -> str:
        parts = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) != f.default
        ]
        return ",".join(parts) or "perfect"


def _parse_number(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not a finite number")
    return value


def _parse_probability(raw: str) -> float:
    if raw.endswith("%"):
        value = _parse_number(raw[:-1]) / 100.0
    else:
        value = _parse_number(raw)
    _check_probability("probability", value)
    return value


_TIME_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}
_RATE_UNITS = {
    "": 1.0,
    "b": 1.0,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "bit": 1 / 8,
    "kbit": 1e3 / 8,
    "mbit": 1e6 / 8,
    "gbit": 1e9 / 8,
}
_NUMBER_AND_UNIT = re.compile(r"([0-9.]+(?:e[+-]?[0-9]+)?)\s*([a-zµ]*)")


def _split_unit(raw: str, units: dict[str, float], what: str) -> float:
    match = _NUMBER_AND_UNIT.fullmatch(raw)
    if match is None:
        raise ValueError(f"{raw!r} is not a {what}")
    number, unit = match.groups()
    if not unit and _parse_number(number) != 0:
        choices = ", ".join(u for u in units if u)
        raise ValueError(f"{raw!r} needs a unit (one of: {choices})")
    if unit not in units:
        choices = ", ".join(u for u in units if u)
        raise ValueError(f"unknown unit {unit!r} in {raw!r} (use one of: {choices})")
    return _parse_number(number) * units[unit]


def _parse_time(raw: str) -> float:
    value = _split_unit(raw, _TIME_UNITS, "time such as 10ms")
    _check_duration("time", value)
    return value


def _parse_rate(raw: str) -> float | None:
    if raw in ("none", "off", "unlimited", "inf"):
        return None
    for suffix in ("/s", "ps"):
        if raw.endswith(suffix):
            raw = raw[: -len(suffix)]
            break
    value = _split_unit(raw, _RATE_UNITS, "rate such as 10mbit")
    if value <= 0:
        raise ValueError(f"rate must be positive, got {raw!r}")
    return value


def _parse_count(raw: str) -> int:
    if not raw.isdigit():
        raise ValueError(f"{raw!r} is not a non-negative integer")
    return int(raw)


def _parse_mtu(raw: str) -> int | None:
    if raw in ("none", "off"):
        return None
    return _parse_count(raw)


_ALIASES = {
    "loss": "loss",
    "drop": "loss",
    "burst": "burst",
    "duplicate": "duplicate",
    "dup": "duplicate",
    "reorder": "reorder",
    "reorder_delay": "reorder_delay",
    "delay": "delay",
    "latency": "delay",
    "jitter": "jitter",
    "corrupt": "corrupt",
    "corruption": "corrupt",
    "rate": "rate",
    "queue_limit": "queue_limit",
    "queue": "queue_limit",
    "limit": "queue_limit",
    "mtu": "mtu",
}
_PARSERS: dict[str, Callable[[str], Any]] = {
    "loss": _parse_probability,
    "burst": _parse_number,
    "duplicate": _parse_probability,
    "reorder": _parse_probability,
    "corrupt": _parse_probability,
    "reorder_delay": _parse_time,
    "delay": _parse_time,
    "jitter": _parse_time,
    "rate": _parse_rate,
    "queue_limit": _parse_count,
    "mtu": _parse_mtu,
}
