"""The chat's state and rules, without I/O: who is connected, who is in which room.

A :class:`Hub` takes each received line from a :class:`Member` and answers by calling
:meth:`Member.deliver` on the members concerned; it never reads a socket or waits. The
asyncio server (``server.py``) makes one member per connection and turns ``deliver`` into a
bounded, drained write queue. Tests can drive a hub with members that only record lines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from .protocol import (
    DEFAULT_ROOM,
    NO_ROOM,
    ChatError,
    clean_text,
    decode_line,
    format_line,
    normalize_room,
    parse_command,
    validate_nick,
)

__all__ = ["Hub", "Member"]

logger = logging.getLogger("examples.chat")

HELP = [
    "/nick NAME - choose your nickname",
    "/join ROOM - join a room and talk there",
    "/leave [ROOM] - leave a room (default: the current one)",
    "/msg NICK TEXT - private message",
    "/users [ROOM] - who is in a room",
    "/rooms - list the rooms",
    "/quit [REASON] - leave the chat",
    "anything else is said in your current room",
]


class Member:
    """One participant as the hub sees it. Subclasses implement :meth:`deliver`."""

    def __init__(self, peer: str = "?") -> None:
        self.peer = peer
        self.nick: str | None = None
        #: Rooms joined, oldest first; the last one is the current room.
        self.rooms: list[str] = []
        #: Set by ``/quit``: the connection should be closed once ``BYE`` is out.
        self.quitting = False

    @property
    def current(self) -> str | None:
        """The room plain text goes to."""
        return self.rooms[-1] if self.rooms else None

    def deliver(self, line: str) -> None:
        """Send one server line (without ``\\n``) to this member."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.nick or '(no nick)'} from {self.peer}>"


class Hub:
    """Nicknames, rooms and the commands that change them."""

    def __init__(self, name: str = "udptcp-chat", default_room: str = DEFAULT_ROOM) -> None:
        self.name = name
        self.default_room = normalize_room(default_room)
        self.members: set[Member] = set()
        self.nicks: dict[str, Member] = {}  # casefolded nick -> member
        self.rooms: dict[str, list[Member]] = {}  # room -> members, in join order
        self._commands: dict[str, Callable[[Member, str], None]] = {
            "nick": self._nick,
            "join": self._join,
            "leave": self._leave,
            "part": self._leave,
            "msg": self._msg,
            "users": self._users,
            "rooms": self._rooms,
            "ping": self._ping,
            "help": self._help,
            "quit": self._quit,
            "": self._say,
        }
        # What works before a nickname is chosen.
        self._anonymous_ok = {"nick", "rooms", "ping", "help", "quit"}

    # ------------------------------------------------------------------ connection events

    def connect(self, member: Member) -> None:
        """A new connection: greet it."""
        self.members.add(member)
        member.deliver(format_line("WELCOME", self.name, text="choose a nickname with /nick NAME"))

    def handle(self, member: Member, raw: bytes) -> None:
        """One received line (without its terminator). Refusals become ``ERR`` lines."""
        try:
            text = decode_line(raw)
            command = parse_command(text)
            if not command.name and not text.strip():
                return  # an empty line: nothing to say, nothing to answer
            handler = self._commands.get(command.name)
            if handler is None:
                raise ChatError("unknown-command", f"no command /{command.name}; try /help")
            if member.nick is None and command.name not in self._anonymous_ok:
                raise ChatError("no-nick")
            handler(member, command.args)
        except ChatError as exc:
            member.deliver(format_line("ERR", exc.code, text=exc.text))

    def error(self, member: Member, code: str) -> None:
        """Tell ``member`` about a framing error (e.g. a line over the limit)."""
        exc = ChatError(code)
        member.deliver(format_line("ERR", exc.code, text=exc.text))

    def disconnect(self, member: Member, reason: str, *, notify: bool = True) -> None:
        """The connection is gone: leave every room, telling the others why."""
        if member not in self.members:
            return
        self.members.discard(member)
        if member.nick is not None:
            self.nicks.pop(member.nick.casefold(), None)
        for room in list(member.rooms):
            self._part(member, room, reason, notify=notify, tell_self=False)
        logger.info("%r gone: %s", member, reason)

    # ------------------------------------------------------------------ commands

    def _nick(self, member: Member, args: str) -> None:
        nick = validate_nick(args)
        key = nick.casefold()
        holder = self.nicks.get(key)
        if holder is not None and holder is not member:
            raise ChatError("nick-taken", f"{nick} is taken")
        old = member.nick
        if old is not None:
            del self.nicks[old.casefold()]
        self.nicks[key] = member
        member.nick = nick
        member.deliver(format_line("NICK", nick))
        if old is None:
            logger.info("%r registered", member)
            self._enter(member, self.default_room)
        elif old != nick:
            line = format_line("RENAME", old, nick)
            for other in self._neighbours(member):
                other.deliver(line)

    def _join(self, member: Member, args: str) -> None:
        if not args or " " in args:
            raise ChatError("bad-args", "usage: /join ROOM")
        self._enter(member, normalize_room(args))

    def _enter(self, member: Member, room: str) -> None:
        if room in member.rooms:
            member.rooms.remove(room)  # already in: only make it current
            member.rooms.append(room)
        else:
            assert member.nick is not None
            member.rooms.append(room)
            people = self.rooms.setdefault(room, [])
            people.append(member)
            self._broadcast(room, format_line("JOIN", room, member.nick))
        member.deliver(format_line("CURRENT", room))

    def _leave(self, member: Member, args: str) -> None:
        if " " in args:
            raise ChatError("bad-args", "usage: /leave [ROOM]")
        room = normalize_room(args) if args else member.current
        if room is None or room not in member.rooms:
            raise ChatError("not-in-room", f"you are not in {room}" if room else None)
        self._part(member, room, "left", notify=True, tell_self=True)
        member.deliver(format_line("CURRENT", member.current or NO_ROOM))

    def _part(
        self, member: Member, room: str, reason: str, *, notify: bool, tell_self: bool
    ) -> None:
        assert member.nick is not None
        line = format_line("LEAVE", room, member.nick, text=reason)
        member.rooms.remove(room)
        people = self.rooms[room]
        people.remove(member)
        if not people:
            del self.rooms[room]
        elif notify:
            self._broadcast(room, line)
        if tell_self:
            member.deliver(line)

    def _say(self, member: Member, args: str) -> None:
        text = clean_text(args)
        room = member.current
        if room is None:
            raise ChatError("not-in-room", "join a room first (/join ROOM)")
        if text:
            assert member.nick is not None
            self._broadcast(room, format_line("MSG", room, member.nick, text=text))

    def _msg(self, member: Member, args: str) -> None:
        target_nick, _, text = args.partition(" ")
        text = clean_text(text)
        if not target_nick or not text:
            raise ChatError("bad-args", "usage: /msg NICK TEXT")
        target = self.nicks.get(target_nick.casefold())
        if target is None:
            raise ChatError("no-such-user", f"nobody is called {target_nick}")
        assert member.nick is not None and target.nick is not None
        line = format_line("PRIV", member.nick, target.nick, text=text)
        target.deliver(line)
        if target is not member:
            member.deliver(line)

    def _users(self, member: Member, args: str) -> None:
        if " " in args:
            raise ChatError("bad-args", "usage: /users [ROOM]")
        room = normalize_room(args) if args else member.current
        if room is None:
            raise ChatError("not-in-room", "name a room: /users ROOM")
        people = self.rooms.get(room)
        if people is None:
            raise ChatError("no-such-room", f"there is no room {room}")
        nicks = sorted((m.nick for m in people if m.nick), key=str.casefold)
        member.deliver(format_line("USERS", room, text=" ".join(nicks)))

    def _rooms(self, member: Member, args: str) -> None:
        if args:
            raise ChatError("bad-args", "usage: /rooms")
        items = [f"{room}:{len(people)}" for room, people in sorted(self.rooms.items())]
        member.deliver(format_line("ROOMS", text=" ".join(items)))

    def _ping(self, member: Member, args: str) -> None:
        member.deliver(format_line("PONG", text=clean_text(args)))

    def _help(self, member: Member, args: str) -> None:
        for line in HELP:
            member.deliver(format_line("INFO", text=line))

    def _quit(self, member: Member, args: str) -> None:
        reason = clean_text(args)
        member.quitting = True
        member.deliver(format_line("BYE", text="bye"))
        self.disconnect(member, f"quit: {reason}" if reason else "quit")

    # ------------------------------------------------------------------ delivery

    def _broadcast(self, room: str, line: str) -> None:
        for member in list(self.rooms.get(room, ())):
            member.deliver(line)

    def _neighbours(self, member: Member) -> Iterable[Member]:
        """Everyone sharing a room with ``member``, once each, ``member`` excluded."""
        seen: dict[Member, None] = {}
        for room in member.rooms:
            for other in self.rooms.get(room, ()):
                if other is not member:
                    seen[other] = None
        return list(seen)
