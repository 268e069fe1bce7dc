"""The line protocol and the hub's rules, without any network."""

from __future__ import annotations

import pytest

from examples.chat.hub import Hub, Member
from examples.chat.protocol import (
    SERVER_LINE_FIELDS,
    TOO_LONG,
    ChatError,
    LineBuffer,
    ServerLine,
    clean_text,
    format_line,
    normalize_room,
    parse_command,
    parse_server_line,
    validate_nick,
)

# ------------------------------------------------------------------------------ framing


def test_line_buffer_joins_chunks_and_drops_carriage_returns() -> None:
    lines = LineBuffer(max_line=16)
    assert lines.feed(b"hel") == []
    assert lines.pending == 3
    assert lines.feed(b"lo\r\nwor") == [b"hello"]
    assert lines.feed(b"ld\n\n") == [b"world", b""]
    assert lines.pending == 0


def test_line_buffer_limit_counts_the_terminator() -> None:
    assert LineBuffer(max_line=4).feed(b"abc\n") == [b"abc"]
    assert LineBuffer(max_line=4).feed(b"abcd\n") == [TOO_LONG]


def test_an_over_long_line_is_discarded_as_it_arrives_and_reported_once() -> None:
    lines = LineBuffer(max_line=8)
    assert lines.feed(b"0123456") == []
    assert lines.feed(b"789") == []  # over the limit: nothing more is kept
    assert lines.pending == 1
    assert lines.feed(b"x" * 1000) == []
    assert lines.feed(b"tail\nok\n") == [TOO_LONG, b"ok"]
    assert lines.pending == 0


def test_clean_text_removes_controls_and_keeps_unicode() -> None:
    assert clean_text(" a\x1b[2Jb\x07\tc\x9bd\x00 ") == "a[2Jb cd"
    assert clean_text("héllo 🙂 wörld") == "héllo 🙂 wörld"


# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize("nick", ["a", "Alice", "bob_2", "x-y", "A" * 16])
def test_valid_nicknames(nick: str) -> None:
    assert validate_nick(nick) == nick


@pytest.mark.parametrize("nick", ["", "1abc", "_x", "a b", "A" * 17, "é", "a/b"])
def test_invalid_nicknames(nick: str) -> None:
    with pytest.raises(ChatError) as info:
        validate_nick(nick)
    assert info.value.code == "bad-nick"


def test_room_names_are_folded_and_the_hash_is_optional() -> None:
    assert normalize_room("#Dev") == "dev"
    assert normalize_room("ops-2") == "ops-2"
    for bad in ("", "#", "a b", "x" * 25, "-x", "ü"):
        with pytest.raises(ChatError):
            normalize_room(bad)


# ------------------------------------------------------------------------------ lines


def test_commands_split_into_name_and_arguments() -> None:
    assert parse_command("/MSG bob  hi there ") == ("msg", "bob  hi there")
    assert parse_command("/users") == ("users", "")
    assert parse_command("just text") == ("", "just text")


@pytest.mark.parametrize(
    "line",
    [
        ServerLine("WELCOME", ("srv",), "hi there"),
        ServerLine("NICK", ("alice",)),
        ServerLine("RENAME", ("bob", "robert")),
        ServerLine("JOIN", ("dev", "alice")),
        ServerLine("LEAVE", ("dev", "alice"), "quit: see you"),
        ServerLine("CURRENT", ("-",)),
        ServerLine("MSG", ("dev", "alice"), "hello  world "),
        ServerLine("MSG", ("dev", "alice"), ""),
        ServerLine("PRIV", ("alice", "bob"), "psst"),
        ServerLine("USERS", ("dev",), "alice bob"),
        ServerLine("ROOMS", (), "dev:2 lobby:3"),
        ServerLine("PONG", (), ""),
        ServerLine("INFO", (), "some help"),
        ServerLine("ERR", ("bad-nick",), "no good"),
        ServerLine("BYE", (), "bye"),
    ],
)
def test_server_lines_round_trip(line: ServerLine) -> None:
    assert parse_server_line(str(line)) == line


def test_every_server_line_type_is_covered_by_the_round_trip_test() -> None:
    assert set(SERVER_LINE_FIELDS) == {
        "WELCOME", "NICK", "RENAME", "JOIN", "LEAVE", "CURRENT", "MSG", "PRIV",
        "USERS", "ROOMS", "PONG", "INFO", "ERR", "BYE",
    }  # fmt: skip


@pytest.mark.parametrize("text", ["", "HELLO there", "NICK", "NICK a b", "JOIN dev", "MSG dev"])
def test_malformed_server_lines_are_rejected(text: str) -> None:
    assert parse_server_line(text) is None


def test_format_line_refuses_fields_that_would_break_the_framing() -> None:
    with pytest.raises(ValueError):
        format_line("JOIN", "dev")
    with pytest.raises(ValueError):
        format_line("JOIN", "dev", "a b")
    with pytest.raises(ValueError):
        format_line("NICK", "alice", text="extra")
    assert format_line("MSG", "dev", "a", text="two\nlines") == "MSG dev a two lines"


# ------------------------------------------------------------------------------ the hub


class Recorder(Member):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.got: list[str] = []

    def deliver(self, line: str) -> None:
        self.got.append(line)

    def take(self) -> list[str]:
        got, self.got = self.got, []
        return got


def joined(hub: Hub, *names: str) -> list[Recorder]:
    members = []
    for name in names:
        member = Recorder(name)
        hub.connect(member)
        hub.handle(member, f"/nick {name}".encode())
        members.append(member)
    for member in members:
        member.take()
    return members


def test_a_nickname_joins_the_default_room_and_greets_nobody_else() -> None:
    hub = Hub()
    alice = Recorder("alice")
    hub.connect(alice)
    hub.handle(alice, b"/nick alice")
    assert alice.take() == [
        "WELCOME udptcp-chat choose a nickname with /nick NAME",
        "NICK alice",
        "JOIN lobby alice",
        "CURRENT lobby",
    ]


def test_rename_is_told_once_to_each_neighbour_and_not_to_strangers() -> None:
    hub = Hub()
    alice, bob, carol = joined(hub, "alice", "bob", "carol")
    hub.handle(alice, b"/join dev")
    hub.handle(bob, b"/join dev")
    hub.handle(carol, b"/leave lobby")
    for m in (alice, bob, carol):
        m.take()
    hub.handle(alice, b"/nick ally")
    assert alice.take() == ["NICK ally"]
    assert bob.take() == ["RENAME alice ally"]  # shares two rooms, told once
    assert carol.take() == []
    hub.handle(alice, b"/nick ALLY")  # same member, other case: allowed
    assert alice.take() == ["NICK ALLY"]


def test_leaving_rooms_moves_the_current_room_back_and_empty_rooms_vanish() -> None:
    hub = Hub()
    (alice,) = joined(hub, "alice")
    hub.handle(alice, b"/join dev")
    hub.handle(alice, b"/join ops")
    hub.handle(alice, b"/join dev")  # already in: only becomes current again
    assert alice.rooms == ["lobby", "ops", "dev"]
    alice.take()
    hub.handle(alice, b"/leave")
    assert alice.take() == ["LEAVE dev alice left", "CURRENT ops"]
    hub.handle(alice, b"/leave ops")
    hub.handle(alice, b"/leave lobby")
    assert alice.take()[-1] == "CURRENT -"
    assert hub.rooms == {}
    hub.handle(alice, b"anyone?")
    assert alice.take() == ["ERR not-in-room join a room first (/join ROOM)"]


def test_a_private_message_to_oneself_arrives_once() -> None:
    hub = Hub()
    (alice,) = joined(hub, "alice")
    hub.handle(alice, b"/msg ALICE note to self")
    assert alice.take() == ["PRIV alice alice note to self"]


def test_disconnect_frees_the_nickname_and_tells_the_rooms() -> None:
    hub = Hub()
    alice, bob = joined(hub, "alice", "bob")
    hub.disconnect(alice, "disconnected")
    hub.disconnect(alice, "twice is harmless")
    assert bob.take() == ["LEAVE lobby alice disconnected"]
    assert "alice" not in hub.nicks
    anonymous = Recorder("x")
    hub.connect(anonymous)
    hub.disconnect(anonymous, "never registered")  # no nick, no rooms: nothing to say
    assert bob.take() == []


def test_rooms_are_listed_sorted_with_their_counts() -> None:
    hub = Hub()
    alice, bob = joined(hub, "alice", "bob")
    hub.handle(bob, b"/join zoo")
    hub.handle(alice, b"/join abc")
    bob.take()
    hub.handle(bob, b"/rooms")
    assert bob.take() == ["ROOMS abc:1 lobby:2 zoo:1"]
