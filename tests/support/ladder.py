"""Check an exchange written the way the seed notes draw it against what was on the wire.

A ladder is one line per segment, in the order the segments were sent::

    a -> b   SYN seq=x
    a <- b   SYN,ACK seq=y ack=x+1
    a -> b   ACK seq=x+1 ack=y+1

Each line names the two hosts (the arrow says who sent), the exact set of flags (any order,
comma-separated, as :meth:`Segment.flag_names` prints them) and any of the fields ``seq``,
``ack``, ``len`` (payload bytes) and ``win``. A field's value is a number, a name, or a name
plus or minus a number; a name is bound to what the wire shows where it first appears (``x``
in ``seq=x``) and must hold that value everywhere after, modulo 2**32 as sequence numbers do.
A line ending in ``lost`` is a segment that was sent but never arrived (dropped on the way);
every other line must have been delivered.

:func:`assert_ladder` fails with both ladders side by side -- the expected one and the one
that was sent, written in the same notation -- and otherwise returns the bindings and the
matched trace entries (their times let a test check TIME-WAIT's 2MSL, for instance).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from udptcp.core.segment import Segment

_LINE = re.compile(
    r"^\s*(?P<left>\w+)\s*(?P<arrow>->|<-)\s*(?P<right>\w+)\s*:?\s+(?P<flags>[A-Z,]+)"
    r"(?P<fields>(?:\s+\w+=[\w+\-]+)*)\s*(?P<lost>lost)?\s*$"
)
_VALUE = re.compile(r"^(?:(?P<name>[a-z_]\w*)(?P<op>[+-])?(?P<off>\d+)?|(?P<num>\d+))$")
_FIELDS = ("seq", "ack", "len", "win")
_MOD = 1 << 32


class Sent(Protocol):
    """One transmission in a trace (:class:`udptcp.tools.simnet.TraceEntry` is one)."""

    @property
    def time(self) -> float: ...
    @property
    def sender(self) -> str: ...
    @property
    def receiver(self) -> str: ...
    @property
    def segment(self) -> Segment: ...
    @property
    def fate(self) -> str: ...


@dataclass(frozen=True)
class Rung:
    """One parsed line of a ladder."""

    text: str
    sender: str
    receiver: str
    flags: frozenset[str]
    fields: tuple[tuple[str, str], ...]
    lost: bool


def parse(ladder: str) -> list[Rung]:
    """The rungs of ``ladder`` (blank lines and ``#`` comments skipped)."""
    rungs = []
    for raw in ladder.splitlines():
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        m = _LINE.match(text)
        if m is None:
            raise ValueError(f"not a ladder line: {raw.strip()!r}")
        left, right = m["left"], m["right"]
        sender, receiver = (left, right) if m["arrow"] == "->" else (right, left)
        fields = tuple(tuple(f.split("=", 1)) for f in m["fields"].split())
        for name, value in fields:
            if name not in _FIELDS or _VALUE.match(value) is None:
                raise ValueError(f"bad field {name}={value} in {raw.strip()!r}")
        rungs.append(
            Rung(
                text=text,
                sender=sender,
                receiver=receiver,
                flags=frozenset(m["flags"].split(",")),
                fields=fields,  # type: ignore[arg-type]
                lost=m["lost"] is not None,
            )
        )
    return rungs


def _field(segment: Segment, name: str) -> int:
    if name == "len":
        return len(segment.payload)
    if name == "win":
        return segment.window
    return int(getattr(segment, name))


def describe(entry: Sent, left: str) -> str:
    """``entry`` written as a ladder line, the arrow drawn from ``left``'s side."""
    s = entry.segment
    arrow = f"{left} -> {entry.receiver}" if entry.sender == left else f"{left} <- {entry.sender}"
    text = f"{arrow}   {s.flag_names()} seq={s.seq} ack={s.ack} len={len(s.payload)}"
    return text + ("" if entry.fate == "sent" else f" {entry.fate}")


def _mismatch(rung: Rung, entry: Sent, bound: dict[str, int]) -> str | None:
    """Why ``entry`` does not match ``rung`` (binding new names into ``bound``), or None."""
    s = entry.segment
    if (entry.sender, entry.receiver) != (rung.sender, rung.receiver):
        return f"sent by {entry.sender} to {entry.receiver}"
    if frozenset(s.flag_names().split(",")) != rung.flags:
        return f"flags {s.flag_names()}"
    if rung.lost != (entry.fate != "sent"):
        return f"fate {entry.fate}"
    for name, value in rung.fields:
        got = _field(s, name)
        m = _VALUE.match(value)
        assert m is not None
        if m["num"] is not None:
            want = int(m["num"])
        else:
            off = int(m["off"] or 0) * (-1 if m["op"] == "-" else 1)
            if m["name"] not in bound:
                bound[m["name"]] = (got - off) % _MOD
            want = (bound[m["name"]] + off) % _MOD
        if got != want:
            return f"{name}={got}, not {value} = {want}"
    return None


def assert_ladder(
    trace: Iterable[Sent], ladder: str, *, complete: bool = True
) -> tuple[dict[str, int], list[Sent]]:
    """Check that the segments in ``trace`` are, in order, the ladder's lines; with
    ``complete`` (the default) nothing else was sent. Returns the names bound (``{"x": ...}``)
    and the trace entries, one per line."""
    rungs = parse(ladder)
    sent: Sequence[Sent] = list(trace)
    left = rungs[0].sender if rungs else ""
    bound: dict[str, int] = {}
    problem = None
    for i, rung in enumerate(rungs):
        if i >= len(sent):
            problem = f"line {i + 1} ({rung.text!r}) was never sent"
            break
        why = _mismatch(rung, sent[i], bound)
        if why is not None:
            problem = f"line {i + 1} ({rung.text!r}): {why}"
            break
    else:
        if complete and len(sent) > len(rungs):
            problem = f"{len(sent) - len(rungs)} segment(s) sent after the last line"
    if problem is not None:
        expected = "\n".join(f"    {r.text}" for r in rungs)
        actual = "\n".join(f"    {e.time:8.3f}  {describe(e, left)}" for e in sent)
        names = ", ".join(f"{k}={v}" for k, v in bound.items())
        raise AssertionError(
            f"the exchange does not match the ladder: {problem}\n"
            f"  expected:\n{expected}\n  sent (bound: {names or 'nothing'}):\n{actual}"
        )
    return bound, list(sent[: len(rungs)])
