"""An asyncio event loop on a virtual clock, with real sockets: runs repeat exactly.

``loop.time()`` starts at 0 and moves only when the loop has nothing to do: instead of
sleeping until its next timer, the loop polls its sockets without waiting and, if none is
ready, jumps its clock to that timer. A datagram sent to 127.0.0.1 is in the receiving
socket's queue by the time ``sendto`` returns (Linux delivers loopback traffic in the
sender's system call), so no datagram is in flight while the clock jumps, and a program
whose only randomness is seeded prints the same times, retransmissions and timeouts on
every run, however loaded the machine is. Timers also run in no real time: the demo's 2 s
of TIME-WAIT passes at once.

Use it only for programs that talk to themselves over loopback (the demo, tests): a peer in
another process or on another host would see a clock that runs far too fast. While work
handed to threads (``run_in_executor``, name resolution) runs, the clock stands still and
the loop waits for it in real time.

    asyncio.run(main(), loop_factory=VirtualClockLoop)      # Python 3.12+
    asyncio.Runner(loop_factory=VirtualClockLoop).run(main())  # Python 3.11
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

_T = TypeVar("_T")

__all__ = ["VirtualClockLoop"]


class _Clock:
    """The loop's time, shared with its selector."""

    def __init__(self, next_timer: Callable[[], float | None]) -> None:
        self.now = 0.0
        #: Calls running in threads: while any is, the clock waits for it in real time.
        self.threads = 0
        #: When the loop's earliest timer is due (None: no timer).
        self.next_timer = next_timer

    def advance(self, timeout: float) -> None:
        """Move to the timers asyncio meant to sleep until: exactly their due time, since
        ``now + (due - now)`` can fall a rounding error short of it, and code that checks
        ``loop.time() >= due`` would then find it not due yet."""
        due = self.next_timer()
        if due is not None and due <= self.now + timeout + 1e-9:
            self.now = max(self.now, due)
        else:
            self.now += timeout


class _VirtualSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """A selector that never sleeps on a timeout: it moves the clock past it instead."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None or self._clock.threads:
            # No timer at all, or a thread's answer (name resolution, say) to wait for:
            # only I/O can wake the loop, and the thread's result arrives as I/O.
            result: list[tuple[selectors.SelectorKey, int]] = super().select(None)
            return result
        # asyncio asked to sleep until its next timer and nothing is ready: be there now.
        self._clock.advance(timeout)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is virtual (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        self._vclock = _Clock(self._next_timer)
        super().__init__(selector=_VirtualSelector(self._vclock), **kwargs)

    # typeshed states this with a TypeVarTuple, which the 3.10 syntax here cannot restate.
    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., _T], *args: Any
    ) -> asyncio.Future[_T]:
        """As asyncio's, but the clock stands still until ``func`` has returned."""
        future = super().run_in_executor(executor, func, *args)
        self._vclock.threads += 1

        def done(_: asyncio.Future[Any]) -> None:
            self._vclock.threads -= 1

        future.add_done_callback(done)
        return future

    def _next_timer(self) -> float | None:
        # asyncio keeps its timers in a heap (BaseEventLoop._scheduled) and runs, in one
        # turn, every timer due before the earliest one plus its clock resolution. Moving the
        # clock to the latest of those means each of them finds itself due when it runs:
        # a timer that re-checks ``loop.time()`` against its deadline (the relay's delay
        # line does) is never run a rounding error early.
        scheduled = self._scheduled  # type: ignore[attr-defined]
        if not scheduled:
            return None
        limit = scheduled[0].when() + self._clock_resolution  # type: ignore[attr-defined]
        return float(max(h.when() for h in scheduled if h.when() < limit))

    def time(self) -> float:
        """The virtual time in seconds since the loop was made."""
        return self._vclock.now
