"""The virtual-clock loop: timers run in no real time, loopback I/O is never skipped."""

from __future__ import annotations

import asyncio
import socket
import time

from udptcp.tools.vclock import VirtualClockLoop


def _run(coro_fn):  # type: ignore[no-untyped-def]
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coro_fn())
    finally:
        loop.close()


def test_sleep_moves_the_clock_not_the_wall() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        wall = time.monotonic()
        await asyncio.sleep(3600)
        return loop.time(), time.monotonic() - wall

    virtual, wall = _run(main)
    assert virtual == 3600.0
    assert wall < 60  # an hour of timers, not an hour of waiting


def test_a_loopback_datagram_arrives_before_a_later_timer() -> None:
    """Every answer is read at the virtual instant it was sent, before any timer fires."""

    async def main() -> list[tuple[float, bytes]]:
        loop = asyncio.get_running_loop()
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        a.setblocking(False)
        b.setblocking(False)
        got: list[tuple[float, bytes]] = []
        done = loop.create_future()

        def on_b() -> None:
            data, addr = b.recvfrom(100)
            got.append((loop.time(), data))
            if len(got) == 5:
                done.set_result(None)
            else:
                loop.call_later(0.25, a.sendto, b"%d" % len(got), b.getsockname())

        loop.add_reader(b.fileno(), on_b)
        timeout = loop.call_later(100, done.cancel)
        a.sendto(b"0", b.getsockname())
        await done
        timeout.cancel()
        loop.remove_reader(b.fileno())
        a.close()
        b.close()
        return got

    got = _run(main)
    assert got == [(i * 0.25, b"%d" % i) for i in range(5)]


def test_the_clock_waits_for_a_thread() -> None:
    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        timer = loop.call_later(10, lambda: None)  # would be jumped to if the loop idled
        value = await loop.run_in_executor(None, lambda: (time.sleep(0.05), 7)[1])
        timer.cancel()
        return loop.time(), value

    now, value = _run(main)
    assert value == 7 and now == 0.0
