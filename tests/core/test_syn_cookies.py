"""SYN cookies: the codec (udptcp.core.cookies) and the connections built from them."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.segments import seg

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.cookies import (
    KEY_LIFETIME,
    MAX_AGE,
    MSS_TABLE,
    TICK,
    SynCookies,
    check_ts_echo,
    decode_ts_choices,
    encode_ts_choices,
)
from udptcp.core.events import Connected, DataReceived
from udptcp.core.segment import ACK, FIN, PSH, SYN, URG, Options, Segment, decode, encode
from udptcp.core.seq import seq_add, seq_le

PEER = ("127.0.0.9", 40000)
NOW = 1000.0
SEED = 9


def make(jar: SynCookies, isn: int = 123456, mss: int = 1452, now: float = NOW) -> int:
    return jar.make(PEER, 80, 5000, isn, mss, now)


def check(jar: SynCookies, cookie: int, isn: int = 123456, now: float = NOW) -> int | None:
    return jar.check(PEER, 80, 5000, isn, cookie, now)


# ---------------------------------------------------------------------------- the codec


@pytest.mark.parametrize("mss", [*MSS_TABLE, 100, 1000, 1400, 1500, 9000, 65487])
def test_a_cookie_carries_the_largest_table_mss_not_above_the_peers(mss: int) -> None:
    jar = SynCookies()
    expected = max(v for v in MSS_TABLE if v <= mss)
    assert check(jar, make(jar, mss=mss)) == expected


def test_an_mss_below_the_table_gets_its_smallest_entry() -> None:
    jar = SynCookies()
    assert check(jar, make(jar, mss=20)) == MSS_TABLE[0]


def test_another_key_rejects_the_cookie() -> None:
    a, b = SynCookies(), SynCookies()
    cookie = make(a)
    assert check(a, cookie) == 1452
    assert check(b, cookie) is None


def test_the_cookie_is_bound_to_the_address_ports_and_peer_isn() -> None:
    jar = SynCookies()
    cookie = make(jar, isn=777)
    assert jar.check(PEER, 80, 5000, 777, cookie, NOW) == 1452
    assert jar.check(("127.0.0.9", 40001), 80, 5000, 777, cookie, NOW) is None
    assert jar.check(("127.0.0.8", 40000), 80, 5000, 777, cookie, NOW) is None
    assert jar.check(PEER, 81, 5000, 777, cookie, NOW) is None
    assert jar.check(PEER, 80, 5001, 777, cookie, NOW) is None
    assert jar.check(PEER, 80, 5000, 778, cookie, NOW) is None


def test_a_cookie_expires_after_its_clock_step_and_the_next() -> None:
    jar = SynCookies()
    start = TICK * 100  # the start of a clock step and of a key epoch
    cookie = make(jar, now=start)
    assert check(jar, cookie, now=start + TICK - 0.001) == 1452
    assert check(jar, cookie, now=start + 2 * TICK - 0.001) == 1452  # next step
    assert check(jar, cookie, now=start + 2 * TICK) is None  # two steps old
    assert check(jar, cookie, now=start + MAX_AGE + 1) is None


def test_a_late_cookie_stays_valid_across_one_key_rotation_not_two() -> None:
    jar = SynCookies()
    made = KEY_LIFETIME * 10 - 1  # the last second of a key epoch
    cookie = make(jar, now=made)
    assert check(jar, cookie, now=made + 2) == 1452  # the previous key is accepted
    # A cookie's own clock expires it before its key goes; and once the key is two
    # epochs old nothing made with it checks, even with a clock field that looks fresh.
    assert check(jar, cookie, now=made + 1 + 2 * KEY_LIFETIME) is None
    wrapped = made + 32 * TICK  # the 5-bit clock field has wrapped to the same value
    assert check(jar, cookie, now=wrapped) is None


def test_a_clock_running_backwards_keeps_the_key() -> None:
    jar = SynCookies()
    cookie = make(jar, now=NOW)
    assert check(jar, cookie, now=NOW - 0.5) == 1452


def test_forged_ack_numbers_do_not_check() -> None:
    rng = random.Random(SEED)
    jar = SynCookies()
    real = make(jar, isn=42)
    hits = 0
    for _ in range(20_000):
        guess = rng.getrandbits(32)
        if guess != real and check(jar, guess, isn=42) is not None:
            hits += 1
    # 24 MAC bits, two keys at most: about one in 8 million per guess.
    assert hits == 0, f"seed {SEED}"
    # Nor does the real cookie with its MSS index or clock bits changed.
    for bit in range(24, 32):
        assert check(jar, real ^ (1 << bit), isn=42) is None


def test_hostile_inputs_never_raise() -> None:
    jar = SynCookies()
    make(jar)
    for value in (0, 1, 0xFFFFFFFF, 1 << 32, (1 << 64) + 5, -1, -(1 << 40)):
        assert check(jar, value, isn=value) is None or isinstance(check(jar, value), int)
        check_ts_echo(value, value, NOW)
        decode_ts_choices(value)
    rng = random.Random(SEED)
    for _ in range(2000):
        tsecr, iss = rng.getrandbits(32), rng.getrandbits(32)
        result = check_ts_echo(tsecr, iss, rng.uniform(0, 1e7))
        assert result is None or (result[0] is None or 0 <= result[0] <= 14)


@pytest.mark.parametrize(
    ("wscale", "sack"), list(itertools.product([None, *range(15), 20], [False, True]))
)
def test_window_scale_and_sack_survive_the_tsval(wscale: int | None, sack: bool) -> None:
    rng = random.Random(SEED)
    for _ in range(50):
        tsval = rng.getrandbits(32)
        encoded = encode_ts_choices(tsval, wscale, sack)
        # Never above the true clock, and at most one step of the low bits below it.
        assert seq_le(encoded, tsval) and (tsval - encoded) & 0xFFFFFFFF < 64
        expected = None if wscale is None else min(wscale, 14)
        assert decode_ts_choices(encoded) == (expected, sack)


def test_an_echo_that_is_not_a_recent_cookie_tsval_is_refused() -> None:
    iss = 0xFFFFFF00
    tsval = encode_ts_choices((int(NOW * 1000) + iss) & 0xFFFFFFFF, 7, True)
    assert check_ts_echo(tsval, iss, NOW + 1) == (7, True)
    assert check_ts_echo(tsval, iss, NOW + MAX_AGE + 1) is None  # too old
    assert check_ts_echo((tsval + 5000) & 0xFFFFFFFF, iss, NOW) is None  # from the future
    assert check_ts_echo(0, iss, NOW) is None


# ---------------------------------------------------------------- cookie connections

FULL = Options(mss=1452, wscale=7, sack_permitted=True, timestamps=(5555, 0))


def _syn(options: Options | None, seq: int = 70_000) -> Segment:
    return seg(SYN, seq=seq, window=64240, options=options, src=5000, dst=80)


def _accept_syn_ack(config: Config, syn: Segment, iss: int) -> Segment:
    conn = Connection.accept(config, syn, iss=iss, mss=1452, now=NOW)
    (syn_ack,) = conn.take_segments()
    return syn_ack


@pytest.mark.parametrize("options", [None, Options(mss=1400), FULL])
def test_a_cookie_syn_ack_is_the_one_accept_sends(options: Options | None) -> None:
    config = Config()
    iss = 0x12345678
    syn = _syn(options)
    cookie_reply = Connection.cookie_syn_ack(config, syn, iss=iss, mss=1452, now=NOW)
    stateful = _accept_syn_ack(config, syn, iss)
    assert cookie_reply.options is not None and stateful.options is not None
    if options is not None and options.timestamps is not None:
        # The same but for the TSval's low bits, which carry the choices.
        tsval, tsecr = cookie_reply.options.timestamps  # type: ignore[misc]
        assert stateful.options.timestamps is not None
        assert tsecr == stateful.options.timestamps[1]
        assert decode_ts_choices(tsval) == (7, True)
        assert (stateful.options.timestamps[0] - tsval) & 0xFFFFFFFF < 64
        cookie_reply.options.timestamps = stateful.options.timestamps
    assert encode(cookie_reply) == encode(stateful)


def test_without_timestamps_a_cookie_syn_ack_offers_no_window_scaling_or_sack() -> None:
    syn = _syn(Options(mss=1452, wscale=7, sack_permitted=True))
    reply = Connection.cookie_syn_ack(Config(), syn, iss=1, mss=1452, now=NOW)
    assert reply.options == Options(mss=1452)
    bare = Connection.cookie_syn_ack(Config(), _syn(None), iss=1, mss=1452, now=NOW)
    assert len(encode(bare)) == 24  # a 20-byte SYN gets 24 bytes: MSS only


def _final_ack(syn: Segment, syn_ack: Segment, payload: bytes = b"", flags: int = ACK) -> Segment:
    opts = None
    if syn_ack.options is not None and syn_ack.options.timestamps is not None:
        opts = Options(timestamps=(6000, syn_ack.options.timestamps[0]))
    return seg(
        flags,
        seq=seq_add(syn.seq, 1),
        ack=seq_add(syn_ack.seq, 1),
        window=502,
        options=opts,
        payload=payload,
        src=syn.src_port,
        dst=syn.dst_port,
    )


def test_a_cookie_connection_is_established_with_the_choices_and_the_acks_data() -> None:
    config = Config()
    syn = _syn(FULL)
    syn_ack = Connection.cookie_syn_ack(config, syn, iss=0xABCDEF01, mss=1452, now=NOW)
    ack = _final_ack(syn, syn_ack, b"hello", ACK | PSH)
    wscale, sack = decode_ts_choices(ack.options.timestamps[1])  # type: ignore[union-attr,index]
    conn = Connection.from_cookie(
        config, ack, iss=0xABCDEF01, mss=1452, peer_mss=1452, wscale=wscale, sack=sack, now=NOW
    )
    assert conn.state_history == [State.LISTEN, State.SYN_RECEIVED, State.ESTABLISHED]
    assert conn.take_events() == [Connected(), DataReceived(b"hello")]
    assert (conn.wscale_ok, conn.snd_wscale, conn.sack_ok, conn.ts_enabled) == (
        True,
        7,
        True,
        True,
    )
    assert conn.snd_wnd == 502 << 7  # the final ACK's window, scaled
    assert conn.rcv_nxt == seq_add(syn.seq, 6)
    assert conn.take_segments() == []  # the ACK for the data is delayed (RFC 1122)...
    conn.handle_timer(NOW + config.delayed_ack)
    (reply,) = conn.take_segments()  # ...not forgotten
    assert reply.ack == conn.rcv_nxt and reply.seq == seq_add(0xABCDEF01, 1)
    # The TSval clock never runs back behind the cookie's TSval (RFC 7323 §5.4).
    assert reply.options is not None and reply.options.timestamps is not None
    assert seq_le(syn_ack.options.timestamps[0], reply.options.timestamps[0])  # type: ignore[union-attr,index]
    # The advertised right edge is the one the cookie's SYN-ACK gave (it never moves left).
    assert seq_le(seq_add(syn.seq, 1 + syn_ack.window), seq_add(reply.ack, reply.window << 7))


def test_a_cookie_connection_without_timestamps_has_no_scaling_or_sack() -> None:
    config = Config()
    syn = _syn(Options(mss=1452, wscale=7, sack_permitted=True))
    syn_ack = Connection.cookie_syn_ack(config, syn, iss=99, mss=1452, now=NOW)
    ack = _final_ack(syn, syn_ack)
    conn = Connection.from_cookie(
        config, ack, iss=99, mss=1452, peer_mss=1452, wscale=None, sack=False, now=NOW
    )
    assert conn.state is State.ESTABLISHED
    assert (conn.wscale_ok, conn.sack_ok, conn.ts_enabled) == (False, False, False)


def test_a_cookie_handshake_with_a_real_client_carries_data_both_ways() -> None:
    """An active udptcp connection against a listener that answers with a cookie."""
    config = Config()
    jar = SynCookies()
    client = Connection.connect(config, local_port=5000, remote_port=80, iss=555, mss=1452, now=NOW)
    (syn,) = client.take_segments()
    syn = decode(encode(syn))
    cookie = jar.make(PEER, 80, 5000, syn.seq, syn.options.mss, NOW)  # type: ignore[union-attr,arg-type]
    syn_ack = Connection.cookie_syn_ack(config, syn, iss=cookie, mss=1452, now=NOW)
    now = NOW + 0.01
    client.receive(decode(encode(syn_ack)), now)
    client.send(b"x" * 5000, now)
    first, *rest = [decode(encode(s)) for s in client.take_segments()]
    assert first.flags & (SYN | ACK) == ACK
    iss = seq_add(first.ack, -1)
    peer_mss = jar.check(PEER, 80, 5000, seq_add(first.seq, -1), iss, now)
    assert peer_mss == 1452
    choices = check_ts_echo(first.options.timestamps[1], iss, now)  # type: ignore[union-attr,index]
    assert choices is not None
    server = Connection.from_cookie(
        config, first, iss=iss, mss=1452, peer_mss=peer_mss, wscale=choices[0],
        sack=choices[1], now=now,
    )  # fmt: skip
    for segment in rest:
        server.receive(segment, now)
    server.send(b"y" * 3000, now)
    for segment in server.take_segments():
        client.receive(decode(encode(segment)), now)
    got = b"".join(e.data for e in server.take_events() if isinstance(e, DataReceived))
    assert got == b"x" * 5000
    back = b"".join(e.data for e in client.take_events() if isinstance(e, DataReceived))
    assert back == b"y" * 3000
    assert server.sack_ok and server.wscale_ok and server.snd_wscale == client.rcv_wscale


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    flags=st.sampled_from([ACK, ACK | PSH, ACK | FIN, ACK | PSH | FIN, ACK | URG]),
    seq_off=st.integers(-3, 70_000),
    window=st.integers(0, 0xFFFF),
    tsval=st.one_of(st.none(), st.integers(0, 0xFFFFFFFF)),
    tsecr=st.integers(0, 0xFFFFFFFF),
    blocks=st.lists(st.tuples(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF)), max_size=3),
    payload=st.binary(max_size=3000),
    wscale=st.one_of(st.none(), st.integers(0, 14)),
    sack=st.booleans(),
    peer_mss=st.sampled_from(MSS_TABLE),
)
def test_a_hostile_final_ack_never_raises_out_of_a_cookie_connection(
    flags: int,
    seq_off: int,
    window: int,
    tsval: int | None,
    tsecr: int,
    blocks: list[tuple[int, int]],
    payload: bytes,
    wscale: int | None,
    sack: bool,
    peer_mss: int,
) -> None:
    opts = Options(timestamps=None if tsval is None else (tsval, tsecr), sack_blocks=tuple(blocks))
    ack = seg(
        flags,
        seq=seq_add(70_001, seq_off),
        ack=1234,
        window=window,
        options=opts,
        payload=payload,
        src=5000,
        dst=80,
    )
    conn = Connection.from_cookie(
        Config(), ack, iss=1233, mss=1452, peer_mss=peer_mss, wscale=wscale, sack=sack, now=NOW
    )
    conn.take_segments()
    conn.take_events()
    conn.handle_timer(NOW + 1.0)
    assert conn.state_history[:2] == [State.LISTEN, State.SYN_RECEIVED]
