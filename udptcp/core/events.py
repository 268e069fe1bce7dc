"""What a connection reports to the layer above it.

The core never calls into the application; it queues these small immutable events and the
asyncio adapter turns them into ``Protocol`` calls. That keeps a protocol callback that
writes or closes from re-entering the state machine halfway through a segment.
"""

from __future__ import annotations


class Event:
    """Base class of connection events."""

    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__
        )

    def __hash__(self) -> int:
        return hash((type(self),) + tuple(getattr(self, n) for n in self.__slots__))


class Connected(Event):
    """The three-way handshake completed: the connection is ESTABLISHED."""

    __slots__ = ()


class DataReceived(Event):
    """In-order bytes for the application."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class EofReceived(Event):
    """The peer's FIN arrived in order: it will send no more data."""

    __slots__ = ()


class ConnectionClosed(Event):
    """The application's view of the connection is over; reported exactly once.

    ``error`` is ``None`` after a clean close or ``abort()``, otherwise the asyncio
    exception the application would see on TCP: ``ConnectionRefusedError``,
    ``ConnectionResetError`` or ``TimeoutError``. The connection may live on inside the
    endpoint afterwards (TIME-WAIT) until its state is CLOSED.
    """

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    def __eq__(self, other: object) -> bool:
        # Exceptions compare by identity; compare by type and message instead.
        if not isinstance(other, ConnectionClosed):
            return False
        a, b = self.error, other.error
        if a is None or b is None:
            return a is b
        return type(a) is type(b) and a.args == b.args

    def __hash__(self) -> int:
        return hash((ConnectionClosed, type(self.error)))
