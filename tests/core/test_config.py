"""Config rejects nonsense at construction, with the field named."""

from __future__ import annotations

import pytest

from udptcp.core.config import Config
from udptcp.core.congestion import create


@pytest.mark.parametrize(
    "changes",
    [
        {"msl": 0},
        {"rto_min": -1},
        {"rto_min": 5.0, "rto_max": 1.0},
        {"delayed_ack": -0.1},
        {"syn_retries": -1},
        {"receive_buffer": 0},
        {"max_datagram": 10},
        {"initial_window": 0},
        {"max_connections": 0},
        {"max_connections_per_address": -5},
        {"max_half_open_per_address": 0},
        {"max_half_open_per_address": 2.5},
        {"max_time_wait": -1},
    ],
)
def test_invalid_settings_raise_value_error_naming_the_field(changes):
    with pytest.raises(ValueError, match=next(iter(changes))):
        Config(**changes)


def test_defaults_follow_the_design():
    c = Config()
    assert (c.rto_min, c.rto_initial, c.rto_max) == (0.2, 1.0, 60.0)
    assert c.msl == 30.0 and c.fin_wait2_timeout == 60.0 and not c.nagle
    assert c.mss_for(1472) == 1452 and c.mss_for(1452) == 1432
    assert Config(max_datagram=1200).mss_for(1472) == 1180


def test_connection_limits_have_defaults_a_single_host_server_can_live_with():
    c = Config()
    assert c.syn_cookies
    assert (c.max_connections, c.max_connections_per_address) == (4096, 256)
    assert (c.max_half_open_per_address, c.max_time_wait) == (32, 8192)
    assert c.max_half_open_per_address <= c.max_connections_per_address <= c.max_connections
    assert Config(max_time_wait=0).max_time_wait == 0  # keep no TIME-WAIT at all


def test_unknown_congestion_control_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="newreno"):
        create("bbr9", 1452, 10)
