"""Numeric addresses are resolved without waiting, and IP literals without getaddrinfo."""

from __future__ import annotations

import socket

import pytest

from udptcp.aio import addresses
from udptcp.aio.addresses import numeric_infos

HOSTS = [
    "127.0.0.1",
    "10.1.2.3",
    "::1",
    "2001:db8::5",
    "0:0::1",  # IPv6, not in getaddrinfo's form: getaddrinfo answers
    "::ffff:1.2.3.4",
    "fe80::1%lo",  # scoped: getaddrinfo finds the interface index
    "01.2.3.4",  # inet_aton's forms, which getaddrinfo accepts
    "1.2.3",
    "localhost",  # a name: a lookup is needed
]


@pytest.mark.parametrize("family", [0, socket.AF_INET, socket.AF_INET6])
@pytest.mark.parametrize("host", HOSTS)
def test_the_answer_is_getaddrinfos_numeric_answer(host: str, family: int) -> None:
    try:
        want = socket.getaddrinfo(
            host,
            5000,
            family,
            socket.SOCK_DGRAM,
            0,
            socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
        )
    except OSError:
        want = None
    assert numeric_infos(host, 5000, family, 0) == want


@pytest.mark.parametrize(
    ("host", "family", "want"),
    [
        ("127.0.0.1", 0, (socket.AF_INET, ("127.0.0.1", 80))),
        ("127.0.0.1", socket.AF_INET, (socket.AF_INET, ("127.0.0.1", 80))),
        ("::1", 0, (socket.AF_INET6, ("::1", 80, 0, 0))),
        ("2001:db8::5", socket.AF_INET6, (socket.AF_INET6, ("2001:db8::5", 80, 0, 0))),
    ],
)
def test_an_ip_literal_does_not_call_getaddrinfo(
    host: str, family: int, want: tuple[int, tuple[object, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("getaddrinfo called for an IP literal")

    monkeypatch.setattr(addresses.socket, "getaddrinfo", refuse)
    assert numeric_infos(host, 80, family, 0) == [
        (want[0], socket.SOCK_DGRAM, socket.IPPROTO_UDP, "", want[1])
    ]


def test_a_literal_of_the_other_family_or_a_service_name_is_left_to_getaddrinfo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[object, ...]] = []
    real = socket.getaddrinfo

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(addresses.socket, "getaddrinfo", counting)
    assert numeric_infos("127.0.0.1", 80, socket.AF_INET6, 0) is None
    numeric_infos("127.0.0.1", "80", 0, 0)  # a port given as a string
    numeric_infos("fe80::1%lo", 80, 0, 0)
    assert len(calls) == 3
