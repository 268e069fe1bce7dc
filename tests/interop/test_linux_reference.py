"""The Linux reference lab (``udptcp.tools.losslab``): the kernel's TCP and udptcp move the
same bytes through the same seeded, lossy path, and the lab proves it measured what it says.

A short run (2 MB, 1 % random loss each way, 20 ms round trip) of both stacks, checked for
what would go wrong if the lab broke: the bytes arrive intact on both; the loss really
applies per segment on the kernel's path (no packet bigger than the MTU crossed the wire,
every data segment the kernel counts crossed it as one packet, the share lost is near the
stated rate) and through the relay; the kernel's own counters saw the losses (it
retransmitted, in recovery episodes). Goodput is only reported (``benchmarks``:
``python -m benchmarks --only linux-loss``), never asserted.

Needs root, /dev/net/tun, iproute2 and network namespaces; skipped otherwise.
"""

from __future__ import annotations

import asyncio
import math
import os

import pytest

from udptcp.tools.losslab import NETNS_PREFIX, Case, Transfer, run_case
from udptcp.tools.tunbridge import NETNS_DIR

pytestmark = pytest.mark.timeout(180)

LOSS = 0.01
SEED = 7
MTU = 1500


def _assert_loss_near(lost: int, packets: int, what: str) -> None:
    """``lost`` of ``packets`` is what an independent loss of LOSS per packet gives, within
    five standard deviations (and some were lost)."""
    expected = LOSS * packets
    spread = 5 * math.sqrt(packets * LOSS * (1 - LOSS))
    assert lost > 0 and abs(lost - expected) <= spread, (
        f"{what}: {lost} of {packets} lost, expected {expected:.1f} ± {spread:.1f}"
    )


def test_linux_and_udptcp_cross_the_same_lossy_path(host_unchanged: None) -> None:
    case = Case("1% 20ms", f"loss={LOSS:.0%},delay=10ms", size=2_000_000, cap=90, seed=SEED)
    linux, mine = asyncio.run(run_case(case, ["linux-cubic", "udptcp"]))
    describe = f"seed={SEED}\nlinux: {linux.as_dict()}\nudptcp: {mine.as_dict()}"
    for t in (linux, mine):
        assert not t.error, describe
        assert t.complete and t.intact and t.received == case.size, describe

    _check_linux(linux, describe)

    # udptcp crossed the relay with the same loss model.
    wire = mine.wire
    _assert_loss_near(wire["forward"]["lost"], wire["forward"]["packets"], "relay forward")
    assert mine.retransmits >= 1 and mine.recoveries >= 1, describe


def _check_linux(t: Transfer, describe: str) -> None:
    forward, backward = t.wire["forward"], t.wire["backward"]
    # One packet per segment: nothing over the MTU (no GSO super-packet reached the wire) ...
    assert forward["largest"] <= MTU and forward["over_mtu"] == 0, describe
    assert backward["largest"] <= MTU and backward["over_mtu"] == 0, describe
    # ... and every data segment the kernel sent crossed the wire as one packet.
    assert forward["data_segments"] == t.wire["data_segments_sent"], describe
    # The loss model hit data segments at the stated rate, and every direction.
    _assert_loss_near(forward["data_segments_lost"], forward["data_segments"], "data segments")
    _assert_loss_near(backward["lost"], backward["packets"], "linux backward")
    # The kernel saw it: every lost data segment was sent again, in recovery episodes.
    assert t.retransmits >= forward["data_segments_lost"], describe
    assert t.counters["TcpRetransSegs"] >= forward["data_segments_lost"], describe
    assert t.recoveries >= 1, describe
    assert t.counters["congestion_control"] == "cubic"
    # The lab's namespaces are gone.
    for name in t.counters["netns"]:
        assert name.startswith(NETNS_PREFIX)
        assert not os.path.exists(os.path.join(NETNS_DIR, name)), name
    # Nothing dropped inside the kernel on the way to the wire.
    for device in t.wire["devices"]:
        assert device["tx"]["dropped"] == 0, device
