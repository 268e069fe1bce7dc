"""RFC 6528 initial sequence numbers: a 4 µs clock plus a keyed hash of the 4-tuple."""

from __future__ import annotations

from udptcp.core.isn import IsnGenerator

LOCAL = ("10.0.0.1", 5000, 40000)
REMOTE = (("10.0.0.2", 6000), 6000)


def test_one_four_tuple_moves_forward_with_the_clock_one_step_per_4_microseconds():
    gen = IsnGenerator(key=b"k" * 16)
    first = gen.isn(LOCAL, REMOTE, 100.0)
    assert gen.isn(LOCAL, REMOTE, 100.0) == first
    assert (gen.isn(LOCAL, REMOTE, 100.0 + 0.004) - first) % 2**32 == 1000
    assert (gen.isn(LOCAL, REMOTE, 101.0) - first) % 2**32 == 250_000


def test_the_offset_depends_on_the_four_tuple_and_the_secret_key():
    gen = IsnGenerator(key=b"k" * 16)
    other_port = (("10.0.0.2", 6000), 6001)
    offsets = {
        gen.isn(LOCAL, REMOTE, 0.0),
        gen.isn(LOCAL, other_port, 0.0),
        gen.isn(("10.0.0.1", 5000, 40001), REMOTE, 0.0),
        IsnGenerator(key=b"j" * 16).isn(LOCAL, REMOTE, 0.0),
    }
    assert len(offsets) == 4  # a 32-bit collision among four has odds of ~1e-9
    assert all(0 <= value < 2**32 for value in offsets)


def test_without_a_key_each_generator_draws_its_own():
    assert IsnGenerator().isn(LOCAL, REMOTE, 0.0) != IsnGenerator().isn(LOCAL, REMOTE, 0.0)


def test_an_endpoint_identity_given_field_by_field_moves_with_the_clock_and_every_field():
    gen = IsnGenerator(key=b"k" * 16)
    fields = ("10.0.0.1", 5000, 40000, "10.0.0.2", 6000, 6000)
    first = gen.isn_for(*fields, 100.0)
    assert gen.isn_for(*fields, 100.0) == first
    assert (gen.isn_for(*fields, 100.004) - first) % 2**32 == 1000
    changed = {first}
    for i, other in enumerate(("10.0.0.3", 5001, 40001, "10.0.0.4", 6001, 6001)):
        changed.add(gen.isn_for(*fields[:i], other, *fields[i + 1 :], 100.0))
    changed.add(IsnGenerator(key=b"j" * 16).isn_for(*fields, 100.0))
    assert len(changed) == 8  # each field, and the key, moves the offset
    # Fields that would run together without a separator still differ.
    assert gen.isn_for("10.0.0.1", 5, 14, "h", 1, 1, 0.0) != gen.isn_for(
        "10.0.0.1", 51, 4, "h", 1, 1, 0.0
    )
