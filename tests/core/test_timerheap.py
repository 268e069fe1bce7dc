"""The timer heap an endpoint and the simulator keep for all their connections."""

from __future__ import annotations

import random
import weakref

from udptcp.core.timerheap import TimerHeap


def test_earliest_first_and_rearming_replaces_the_old_deadline():
    timers: TimerHeap[str] = TimerHeap()
    assert timers.earliest() is None and len(timers) == 0
    assert timers.schedule("a", 5.0) is True  # the first deadline: arm the real timer
    assert timers.schedule("b", 3.0) is True  # earlier: re-arm
    assert timers.schedule("c", 4.0) is False  # later: the real timer stays
    assert timers.earliest() == 3.0
    timers.schedule("b", 6.0)  # moved later: the old 3.0 is stale
    assert timers.earliest() == 4.0 and timers.deadline("b") == 6.0
    timers.schedule("c", None)  # cancelled
    assert timers.earliest() == 5.0 and "c" not in timers and len(timers) == 2
    assert timers.pop_due(5.5) == [(5.0, "a")]
    assert timers.pop_due(100.0) == [(6.0, "b")]
    assert timers.earliest() is None and len(timers) == 0


def test_equal_deadlines_fire_in_the_order_they_were_set():
    timers: TimerHeap[str] = TimerHeap()
    for key in "zyx":
        timers.schedule(key, 1.0)
    assert [k for _, k in timers.pop_due(1.0)] == ["z", "y", "x"]


def test_setting_the_same_deadline_again_changes_nothing():
    timers: TimerHeap[int] = TimerHeap()
    timers.schedule(1, 2.0)
    assert timers.schedule(1, 2.0) is False
    assert timers.pop_due(2.0) == [(2.0, 1)]


def test_deadlines_set_while_running_the_due_ones_wait_for_the_next_call():
    timers: TimerHeap[str] = TimerHeap()
    timers.schedule("a", 1.0)
    due = timers.pop_due(1.0)
    timers.schedule("a", 1.0)  # re-armed at "now" while being run
    assert due == [(1.0, "a")] and timers.earliest() == 1.0


def test_stale_entries_are_swept_so_the_heap_stays_a_few_entries_per_key():
    timers: TimerHeap[int] = TimerHeap()
    for step in range(10_000):  # ten connections re-arming on every segment
        timers.schedule(step % 10, 1000.0 - step * 0.01)
    assert len(timers) == 10
    assert len(timers._heap) <= max(64, 4 * 10) + 1
    assert timers.earliest() == 1000.0 - 9999 * 0.01


def test_matches_a_plain_dict_of_deadlines_under_random_operations():
    seed = 12
    rng = random.Random(seed)
    timers: TimerHeap[int] = TimerHeap()
    model: dict[int, float] = {}
    now = 0.0
    for _ in range(20_000):
        key = rng.randrange(50)
        op = rng.random()
        if op < 0.6:
            deadline = now + rng.choice([0.0, 0.5, 1.0, rng.random() * 10])
            way = rng.random()
            if way < 0.4:
                earlier = not model or deadline < min(model.values())
                assert timers.schedule(key, deadline) is earlier, f"seed={seed}"
            elif way < 0.7:
                timers.set(key, deadline)  # the endpoint's way: no answer worked out
            else:
                timers.set_fifo(key, deadline)  # a TIME-WAIT record's way (in order or not)
            model[key] = deadline
        elif op < 0.7:
            timers.cancel(key)
            model.pop(key, None)
        else:
            now += rng.random()
            due = timers.pop_due(now)
            want = sorted((d, k) for k, d in model.items() if d <= now)
            assert sorted(due) == want, f"seed={seed}"
            for _, k in due:
                del model[k]
        assert timers.earliest() == (min(model.values()) if model else None), f"seed={seed}"


def test_a_cancelled_or_rearmed_key_is_not_kept_alive_by_its_stale_entries():
    # An endpoint cancels a closed connection's deadline and forgets it; the heap must not
    # keep the connection (and everything it holds) until the old entry reaches the top.
    class Key:
        pass

    timers: TimerHeap[Key] = TimerHeap()
    gone = Key()
    timers.schedule(gone, 5.0)
    timers.schedule(gone, 6.0)  # re-armed: the 5.0 entry is stale
    timers.schedule(Key(), 1.0)  # an unrelated earlier deadline keeps both entries buried
    ref = weakref.ref(gone)
    timers.cancel(gone)
    del gone
    assert ref() is None
    assert len(timers) == 1 and timers.earliest() == 1.0
    assert [d for d, _ in timers.pop_due(10.0)] == [1.0]
    assert timers.earliest() is None


def test_deadlines_set_in_order_wait_beside_the_heap_and_still_come_out_earliest_first():
    timers: TimerHeap[str] = TimerHeap()
    timers.set_fifo("r1", 60.0)  # TIME-WAIT records, 2 MSL after each began
    timers.set_fifo("r2", 60.5)
    timers.set("c", 1.0)  # live connections' deadlines, in the heap
    timers.set("d", 60.5)
    timers.set_fifo("r3", 60.2)  # out of order: it goes into the heap instead
    assert len(timers._heap) == 3 and len(timers._fifo) == 2
    assert timers.earliest() == 1.0
    assert timers.pop_due(60.0) == [(1.0, "c"), (60.0, "r1")]
    # Equal deadlines in the order they were set, whichever side they wait on.
    assert timers.pop_due(61.0) == [(60.2, "r3"), (60.5, "r2"), (60.5, "d")]
    assert timers.earliest() is None and len(timers) == 0


def test_a_record_cancelled_or_moved_leaves_nothing_due_and_the_heap_is_still_swept():
    timers: TimerHeap[int] = TimerHeap()
    for key in range(1000):
        timers.set_fifo(key, 100.0 + key)
    for key in range(0, 1000, 2):
        timers.cancel(key)  # reopened by a new SYN, say
    timers.set(1, 50.0)  # restarted: now in the heap, its queued entry stale
    assert len(timers) == 500 and timers.earliest() == 50.0
    # The heap's own deadlines move all the time: its stale entries are swept against its
    # own live ones, not against the records beside it.
    for step in range(10_000):
        timers.set(2000 + step % 10, 10.0 + step * 0.001)
    assert len(timers._heap) <= max(64, 4 * 11) + 1
    due = timers.pop_due(2000.0)
    assert [k for _, k in due][:11] == [2000 + i for i in range(10)] + [1]
    assert sorted(k for _, k in due[11:]) == list(range(3, 1000, 2))
    assert len(timers) == 0 and timers.earliest() is None


def test_the_queue_beside_the_heap_sweeps_its_stale_entries_too():
    # A 4-tuple reopened while in TIME-WAIT (a new SYN), over and over: each record is
    # dropped soon after it was queued, and the next one queued behind it. Only one is live
    # at a time; the queue must not keep the dropped ones for their full 2 MSL (memory per
    # endpoint would grow with the close rate, beyond max_time_wait).
    timers: TimerHeap[int] = TimerHeap()
    for key in range(10_000):
        timers.set_fifo(key, 60.0 + key * 0.001)
        timers.cancel(key)
    timers.set_fifo(-1, 100.0)
    assert len(timers) == 1
    assert len(timers._fifo) <= 64 + 1
    assert timers.earliest() == 100.0 and timers.pop_due(100.0) == [(100.0, -1)]
