"""A connection's deadlines are one ``Timers`` value: listed once, cancelled in one call."""

from __future__ import annotations

import random

from udptcp.core.config import Config
from udptcp.core.timers import TIMER_NAMES, Timers
from udptcp.tools.simnet import connected_pair

SEED = 12


def test_earliest_is_the_smallest_armed_deadline_whatever_the_timer() -> None:
    rng = random.Random(SEED)
    for _ in range(200):
        timers = Timers()
        armed = {}
        for name in TIMER_NAMES:
            if rng.random() < 0.5:
                armed[name] = rng.uniform(0, 100)
                setattr(timers, name, armed[name])
        assert timers.earliest() == (min(armed.values()) if armed else None), f"seed {SEED}"


def test_cancel_all_disarms_every_timer() -> None:
    timers = Timers()
    for i, name in enumerate(TIMER_NAMES):
        setattr(timers, name, float(i + 1))
    timers.cancel_all()
    assert all(getattr(timers, name) is None for name in TIMER_NAMES)
    assert timers.earliest() is None


def test_get_timer_is_the_earliest_deadline_and_closing_leaves_only_time_wait() -> None:
    a, b = connected_pair(Config(keepalive=True, keepalive_idle=7200.0))
    a.send(b"x" * 5000, 1.0)
    assert a.timers.rto is not None and a.timers.keepalive is not None
    armed = [getattr(a.timers, name) for name in TIMER_NAMES]
    assert a.get_timer() == min(t for t in armed if t is not None) <= a.timers.rto
    for seg in a.take_segments():
        b.receive(seg, 1.0)
    for seg in b.take_segments():
        a.receive(seg, 1.0)
    a.close(2.0)
    for seg in a.take_segments():
        b.receive(seg, 2.0)
    b.close(2.0)
    for seg in b.take_segments():
        a.receive(seg, 2.0)
    armed = [name for name in TIMER_NAMES if getattr(a.timers, name) is not None]
    assert armed == ["close"] and a.get_timer() == 2.0 + 2 * a.config.msl


def test_timer_names_are_every_deadline_of_a_timers_value() -> None:
    # The pure class lists its slots; a compiled one hides __slots__ but has the same
    # attributes, each None when new.
    assert getattr(Timers, "__slots__", TIMER_NAMES) == TIMER_NAMES
    timers = Timers()
    assert all(getattr(timers, name) is None for name in TIMER_NAMES)
