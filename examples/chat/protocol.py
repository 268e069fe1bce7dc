"""The chat's line protocol: what goes over the wire, and the sans-I/O helpers for it.

Framing
=======

UTF-8 text, one message per line. Lines end in ``\\n``; a ``\\r`` before it is dropped. A
line may be at most :data:`MAX_LINE` bytes including its terminator: a longer one is thrown
away whole and answered with ``ERR too-long``. Control characters (C0 and C1, so also ESC:
no terminal escape sequences reach another user's screen) are removed from every text the
server relays. The protocol is plain enough to use with ``nc`` (plain TCP) by hand.

Client to server
================

A line that starts with ``/`` is a command; any other non-empty line is said in the
sender's *current room*::

    /nick NAME         choose (or change) your nickname; the first one also joins the
                       default room. Nothing but /nick, /rooms, /help, /ping and /quit
                       works before it.
    /join ROOM         join ROOM (made on demand); it becomes your current room
    /leave [ROOM]      leave ROOM (default: the current room); the room you joined most
                       recently of those left becomes current
    /msg NICK TEXT     a private message to NICK
    /users [ROOM]      who is in ROOM (default: the current room)
    /rooms             the rooms and how many are in each
    /ping [TOKEN]      liveness check, answered with ``PONG TOKEN``
    /help              the commands
    /quit [REASON]     leave the chat: the server answers ``BYE`` and the client then
                       closes the connection (so TIME-WAIT lands on the client; see
                       ``server.py``)

Nicknames are 1-16 characters, a letter first, then letters, digits, ``_`` or ``-``; they
are unique ignoring case. Rooms are 1-24 characters of lower-case letters, digits, ``_`` and
``-`` (a leading ``#`` is accepted and dropped; upper case is folded).

Server to client
================

Every line starts with a TYPE word, then a fixed number of space-separated fields, then, for
the types that have one, a free *text* that may contain spaces (and may be empty)::

    WELCOME SERVER TEXT       greeting on connect
    NICK NICK                 your nickname is now NICK
    RENAME OLD NEW            someone in one of your rooms changed nickname
    JOIN ROOM NICK            NICK joined ROOM (you get your own, too)
    LEAVE ROOM NICK TEXT      NICK left ROOM; TEXT says why (left, quit: ..., disconnected,
                              dropped: too slow, idle, ...)
    CURRENT ROOM              your current room is now ROOM (``-`` when you are in none)
    MSG ROOM NICK TEXT        NICK said TEXT in ROOM (you get your own, too)
    PRIV FROM TO TEXT         a private message; both FROM and TO get it
    USERS ROOM TEXT           answer to /users: TEXT is the nicknames, space-separated
    ROOMS TEXT                answer to /rooms: TEXT is ``room:count`` items, space-separated
    PONG TEXT                 answer to /ping
    INFO TEXT                 anything else worth showing (help, notices)
    ERR CODE TEXT             your last line was refused; CODE is one of :data:`ERROR_CODES`
    BYE TEXT                  the server is about to close the connection, and why

The server answers the lines of one connection in order, so a client can pair an ``ERR``
with the command it sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, NamedTuple

__all__ = [
    "DEFAULT_ROOM",
    "ERROR_CODES",
    "MAX_LINE",
    "SERVER_LINE_FIELDS",
    "TOO_LONG",
    "ChatError",
    "Command",
    "LineBuffer",
    "ServerLine",
    "clean_text",
    "decode_line",
    "encode_line",
    "format_line",
    "normalize_room",
    "parse_command",
    "parse_server_line",
    "validate_nick",
]

#: Longest line, in bytes, including the ``\n``.
MAX_LINE: Final = 1024
#: The room everybody is put in when they first choose a nickname.
DEFAULT_ROOM: Final = "lobby"
#: Placeholder for "no room" in ``CURRENT``.
NO_ROOM: Final = "-"

#: Server line types: how many fixed fields follow the type, and whether a free text ends it.
SERVER_LINE_FIELDS: Final[dict[str, tuple[int, bool]]] = {
    "WELCOME": (1, True),
    "NICK": (1, False),
    "RENAME": (2, False),
    "JOIN": (2, False),
    "LEAVE": (2, True),
    "CURRENT": (1, False),
    "MSG": (2, True),
    "PRIV": (2, True),
    "USERS": (1, True),
    "ROOMS": (0, True),
    "PONG": (0, True),
    "INFO": (0, True),
    "ERR": (1, True),
    "BYE": (0, True),
}

#: ``ERR`` codes and what they mean.
ERROR_CODES: Final[dict[str, str]] = {
    "bad-encoding": "the line is not UTF-8",
    "too-long": "the line is longer than the limit",
    "unknown-command": "no such command",
    "bad-args": "wrong arguments for the command",
    "no-nick": "choose a nickname with /nick first",
    "bad-nick": "not a valid nickname",
    "nick-taken": "somebody else has that nickname",
    "bad-room": "not a valid room name",
    "not-in-room": "you are not in that room (or in any room)",
    "no-such-user": "nobody has that nickname",
    "no-such-room": "there is no such room",
}

_NICK = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,15}")
_ROOM = re.compile(r"[a-z0-9][a-z0-9_-]{0,23}")
# C0 and C1 control characters and DEL; a tab becomes a space.
_CONTROLS: dict[int, int | None] = {code: None for code in (*range(0x20), *range(0x7F, 0xA0))}
_CONTROLS[0x09] = 0x20


class ChatError(Exception):
    """A line the server refuses: becomes ``ERR code text``."""

    def __init__(self, code: str, text: str | None = None) -> None:
        assert code in ERROR_CODES, code
        super().__init__(f"{code}: {text or ERROR_CODES[code]}")
        self.code = code
        self.text = text or ERROR_CODES[code]


# --------------------------------------------------------------------------------- framing


class _TooLong:
    def __repr__(self) -> str:
        return "TOO_LONG"


#: What :meth:`LineBuffer.feed` yields in place of a line that exceeded the limit.
TOO_LONG: Final = _TooLong()


class LineBuffer:
    """Splits a byte stream into lines of at most ``max_line`` bytes (terminator included).

    An over-long line is discarded as it arrives (memory stays bounded by ``max_line``),
    reported once as :data:`TOO_LONG` when its end is seen, and the stream resynchronises on
    the next ``\\n``.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held (or, while discarding, 1)."""
        return len(self._buf) or int(self._discarding)

    def feed(self, data: bytes) -> list[bytes | _TooLong]:
        """Add received bytes; return the lines they completed (without ``\\r\\n``)."""
        out: list[bytes | _TooLong] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._discarding:
                self._discarding = False
                out.append(TOO_LONG)
            elif len(self._buf) + end - start + 1 > self.max_line:
                self._buf.clear()
                out.append(TOO_LONG)
            else:
                self._buf += data[start:end]
                line = bytes(self._buf)
                self._buf.clear()
                out.append(line[:-1] if line.endswith(b"\r") else line)
            start = end + 1
        rest = len(data) - start
        if rest and not self._discarding:
            if len(self._buf) + rest >= self.max_line:  # no room left for the "\n" either
                self._buf.clear()
                self._discarding = True
            else:
                self._buf += data[start:]
        return out


def decode_line(raw: bytes) -> str:
    """A received line as text; raises ``ChatError("bad-encoding")`` if it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ChatError("bad-encoding") from None


def encode_line(text: str) -> bytes:
    """One line ready to send: UTF-8 with its ``\\n``."""
    return text.encode("utf-8") + b"\n"


def clean_text(text: str) -> str:
    """``text`` without control characters (tabs become spaces), trimmed."""
    return text.translate(_CONTROLS).strip()


# --------------------------------------------------------------------------------- names


def validate_nick(nick: str) -> str:
    """``nick`` if it is a valid nickname, else ``ChatError("bad-nick")``."""
    if not _NICK.fullmatch(nick):
        raise ChatError(
            "bad-nick",
            f"{nick!r} is not a nickname: 1-16 of letters, digits, _ and -, a letter first",
        )
    return nick


def normalize_room(room: str) -> str:
    """The canonical room name (lower case, no ``#``), or ``ChatError("bad-room")``."""
    name = room[1:] if room.startswith("#") else room
    name = name.lower()
    if not _ROOM.fullmatch(name):
        raise ChatError("bad-room", f"{room!r} is not a room name: 1-24 of a-z, 0-9, _ and -")
    return name


# --------------------------------------------------------------------------------- lines


class Command(NamedTuple):
    """A client line: ``name`` is the command without ``/`` (``""`` for text), ``args`` the
    rest of the line."""

    name: str
    args: str


def parse_command(text: str) -> Command:
    """Split a client line into command and arguments (``Command("", text)`` for text)."""
    if not text.startswith("/"):
        return Command("", text)
    name, _, args = text[1:].partition(" ")
    return Command(name.lower(), args.strip())


@dataclass(frozen=True)
class ServerLine:
    """One server line: its type, fixed fields and free text."""

    kind: str
    fields: tuple[str, ...] = ()
    text: str = ""

    def __str__(self) -> str:
        has_text = SERVER_LINE_FIELDS[self.kind][1]
        return format_line(self.kind, *self.fields, text=self.text if has_text else None)


def format_line(kind: str, *fields: str, text: str | None = None) -> str:
    """A server line (without ``\\n``); checks the field count against the table."""
    count, has_text = SERVER_LINE_FIELDS[kind]
    if len(fields) != count or (text is not None) != has_text:
        raise ValueError(f"{kind} takes {count} fields{' and a text' if has_text else ''}")
    for field in fields:
        if not field or " " in field or "\n" in field:
            raise ValueError(f"bad field {field!r} in a {kind} line")
    parts = [kind, *fields]
    if text is not None:
        parts.append(text.replace("\n", " "))
    return " ".join(parts)


def parse_server_line(line: str) -> ServerLine | None:
    """A received server line, or ``None`` if it is not one (unknown type, too few fields)."""
    kind, _, rest = line.partition(" ")
    spec = SERVER_LINE_FIELDS.get(kind)
    if spec is None:
        return None
    count, has_text = spec
    parts = rest.split(" ", count) if count else [rest]
    if not has_text:
        fields = tuple(rest.split(" ")) if rest else ()
        return ServerLine(kind, fields) if len(fields) == count else None
    if count == 0:
        return ServerLine(kind, (), rest)
    if len(parts) < count or not all(parts[:count]):
        return None
    text = parts[count] if len(parts) > count else ""
    return ServerLine(kind, tuple(parts[:count]), text)
