"""A kernel NAT lab: two peers behind real nftables NATs, a public network with a rendezvous
and a STUN/TURN server (coturn), all in network namespaces made and removed here.

Topology (the prefix is random per lab, so labs never collide)::

    <p>-peer1 (10.201.1.2) -- <p>-nat1 (lan 10.201.1.1 | wan 10.201.0.11) --+
                                                                          br0 in <p>-pub
    <p>-peer2 (10.201.2.2) -- <p>-nat2 (lan 10.201.2.1 | wan 10.201.0.12) --+  10.201.0.1, .2

NAT kinds (``nft`` masquerade on the wan link, and a home router's firewall: nothing new
comes in on the wan link to the NAT box itself, so an early SYN neither draws an ICMP error
nor leaves a conntrack entry that would make the NAT pick another port later):

* ``"cone"``: ``masquerade`` (Linux keeps the source port when it can: endpoint-independent
  mapping; conntrack lets in only replies: address-and-port-dependent filtering);
* ``"symmetric"``: ``masquerade random`` (a random port per destination:
  address-and-port-dependent mapping).

``binding_timeout`` sets the NATs' conntrack UDP timeouts (``nf_conntrack_udp_timeout`` and
``..._stream``). ``turn=True`` runs coturn in the public namespace on 10.201.0.1:3478 (and
10.201.0.2, so it can answer RFC 5780 tests), user ``lab``/``lab``. Sockets for the peers and
the public side are made inside their namespaces (:meth:`NatLab.socket`): the test process
itself never leaves the host namespace, which sees nothing of the lab.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

from .tunbridge import NETNS_DIR, call_in_netns

__all__ = [
    "NAT_KINDS",
    "NatLab",
    "coturn_unavailable",
    "lab_unavailable",
    "start_coturn",
    "stop_process",
    "wait_coturn",
]

NAT_KINDS = ("cone", "symmetric")
PUBLIC_IP = "10.201.0.1"
PUBLIC_ALT_IP = "10.201.0.2"
TURN_PORT = 3478
RENDEZVOUS_PORT = 7000
TURN_USER, TURN_PASSWORD = "lab", "lab"
PREFIX = "udptcp-nat-"


def lab_unavailable() -> str | None:
    """Why the kernel NAT lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the kernel NAT lab needs root (network namespaces, nftables)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"the kernel NAT lab needs {tool} ({package})"
    probe = f"{PREFIX}probe-{secrets.token_hex(3)}"
    try:
        _run("ip", "netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"ip netns add refused: {exc.stderr.strip()}"
    try:
        _run("ip", "netns", "exec", probe, "nft", "add", "table", "ip", "probe")
    except subprocess.CalledProcessError as exc:
        return f"nftables does not work in a network namespace: {exc.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def start_coturn(
    ip: str,
    port: int,
    workdir: str,
    *,
    loopback_peers: bool = False,
    netns: str | None = None,
    alt_ip: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start coturn (``turnserver``) on ``ip:port`` (and ``alt_ip``, for RFC 5780), user
    ``lab``/``lab``, UDP only, peers in 10.201.0.0/16 and loopback allowed as asked."""
    args = [
        "turnserver", "-n", "--listening-ip", ip, "--relay-ip", ip,
        "--listening-port", str(port), "--min-port", "49152", "--max-port", "65535",
        "--lt-cred-mech", "--user", f"{TURN_USER}:{TURN_PASSWORD}", "--realm", "udptcp.lab",
        "--no-tcp", "--no-tls", "--no-dtls", "--no-tcp-relay", "--no-cli",
        "--pidfile", os.path.join(workdir, "turn.pid"), "--log-file", "stdout", "--simple-log",
    ]  # fmt: skip
    if alt_ip is not None:
        args += ["--listening-ip", alt_ip]
    if loopback_peers:
        args.append("--allow-loopback-peers")
    else:
        args += ["--allowed-peer-ip", "10.201.0.0-10.201.255.255"]
    if netns is not None:
        args = ["ip", "netns", "exec", netns, *args]
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def wait_coturn(
    process: subprocess.Popen[bytes], addr: tuple[str, int], timeout: float = 5
) -> bool:
    """True once coturn answers a STUN Binding request at ``addr``."""
    request = bytes.fromhex("000100002112a442") + os.urandom(12)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.settimeout(0.1)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            probe.sendto(request, addr)
            with contextlib.suppress(OSError):
                if probe.recvfrom(2048)[0][8:20] == request[8:20]:
                    return True
        return False
    finally:
        probe.close()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started in its own session, and wait for it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def coturn_unavailable() -> str | None:
    """Why coturn cannot run here, or None."""
    if shutil.which("turnserver") is None:
        return "coturn is not installed (apt-get install coturn)"
    return None


def _run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


class NatLab:
    """One lab (see the module docstring). Use as a context manager, or ``up()``/``down()``."""

    def __init__(
        self,
        nat1: str = "cone",
        nat2: str = "cone",
        *,
        binding_timeout: int | None = None,
        turn: bool = False,
    ) -> None:
        for kind in (nat1, nat2):
            if kind not in NAT_KINDS:
                raise ValueError(f"NAT kind must be one of {NAT_KINDS}, got {kind!r}")
        self.kinds = (nat1, nat2)
        self.binding_timeout = binding_timeout
        self.turn = turn
        self.prefix = f"{PREFIX}{secrets.token_hex(3)}-"
        self.pub = self.prefix + "pub"
        self.nats = (self.prefix + "nat1", self.prefix + "nat2")
        self.peers = (self.prefix + "peer1", self.prefix + "peer2")
        self.peer_ips = ("10.201.1.2", "10.201.2.2")
        self.nat_ips = ("10.201.0.11", "10.201.0.12")
        self.turn_process: subprocess.Popen[bytes] | None = None
        self._turn_dir: tempfile.TemporaryDirectory[str] | None = None
        self.namespaces: list[str] = []

    # ------------------------------------------------------------------ building

    def ip(self, netns: str, *args: str) -> str:
        """``ip -n NETNS ARGS``."""
        return _run("ip", "-n", netns, *args)

    def exec(self, netns: str, *args: str) -> str:
        """Run a command inside ``netns``."""
        return _run("ip", "netns", "exec", netns, *args)

    def up(self) -> NatLab:
        """Build the lab (and start coturn with ``turn=True``)."""
        try:
            for ns in (self.pub, *self.nats, *self.peers):
                _run("ip", "netns", "add", ns)
                self.namespaces.append(ns)
                self.ip(ns, "link", "set", "lo", "up")
            pub = self.pub
            self.ip(pub, "link", "add", "br0", "type", "bridge")
            self.ip(pub, "link", "set", "br0", "up")
            self.ip(pub, "addr", "add", f"{PUBLIC_IP}/24", "dev", "br0")
            self.ip(pub, "addr", "add", f"{PUBLIC_ALT_IP}/24", "dev", "br0")
            for i, (nat, peer) in enumerate(zip(self.nats, self.peers)):
                n = i + 1
                _run("ip", "link", "add", "wan", "netns", nat, "type", "veth",
                     "peer", "name", f"w{n}", "netns", pub)  # fmt: skip
                self.ip(pub, "link", "set", f"w{n}", "master", "br0", "up")
                self.ip(nat, "addr", "add", f"{self.nat_ips[i]}/24", "dev", "wan")
                self.ip(nat, "link", "set", "wan", "up")
                _run("ip", "link", "add", "lan", "netns", nat, "type", "veth",
                     "peer", "name", "eth0", "netns", peer)  # fmt: skip
                self.ip(nat, "addr", "add", f"10.201.{n}.1/24", "dev", "lan")
                self.ip(nat, "link", "set", "lan", "up")
                self.ip(peer, "addr", "add", f"{self.peer_ips[i]}/24", "dev", "eth0")
                self.ip(peer, "link", "set", "eth0", "up")
                self.ip(peer, "route", "add", "default", "via", f"10.201.{n}.1")
                self.exec(nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
                self._nft(nat, self.kinds[i])
                if self.binding_timeout is not None:
                    t = str(self.binding_timeout)
                    self.exec(nat, "sysctl", "-qw", f"net.netfilter.nf_conntrack_udp_timeout={t}")
                    self.exec(
                        nat, "sysctl", "-qw", f"net.netfilter.nf_conntrack_udp_timeout_stream={t}"
                    )
            if self.turn:
                self._start_turn()
        except BaseException:
            self.down()
            raise
        return self

    def _nft(self, nat: str, kind: str) -> None:
        masquerade = "masquerade random" if kind == "symmetric" else "masquerade"
        rules = f"""
table ip lab {{
    chain post {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" {masquerade}
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state new drop
    }}
}}
"""
        subprocess.run(
            ["ip", "netns", "exec", nat, "nft", "-f", "-"],
            input=rules,
            check=True,
            capture_output=True,
            text=True,
        )

    def _start_turn(self) -> None:
        self._turn_dir = tempfile.TemporaryDirectory(prefix="udptcp-turn-")
        process = self.turn_process = start_coturn(
            PUBLIC_IP, TURN_PORT, self._turn_dir.name, netns=self.pub, alt_ip=PUBLIC_ALT_IP
        )
        answering = call_in_netns(
            self.pub, lambda: wait_coturn(process, (PUBLIC_IP, TURN_PORT), 10)
        )
        if not answering:
            raise RuntimeError("turnserver did not answer within 10 s")

    def down(self) -> None:
        """Stop coturn, delete every namespace (which takes their links and sockets)."""
        if self.turn_process is not None:
            stop_process(self.turn_process)
        self.turn_process = None
        if self._turn_dir is not None:
            self._turn_dir.cleanup()
            self._turn_dir = None
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces = [
            ns for ns in self.namespaces if os.path.exists(os.path.join(NETNS_DIR, ns))
        ]

    def __enter__(self) -> NatLab:
        return self.up()

    def __exit__(self, *exc: Any) -> None:
        self.down()

    # ------------------------------------------------------------------ using

    def socket(self, where: str, port: int = 0, ip: str | None = None) -> socket.socket:
        """A UDP socket made inside ``where`` ("pub", "peer1", "peer2"), bound to its IP."""
        netns = {"pub": self.pub, "peer1": self.peers[0], "peer2": self.peers[1]}[where]
        if ip is None:
            ip = {"pub": PUBLIC_IP, "peer1": self.peer_ips[0], "peer2": self.peer_ips[1]}[where]

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((ip, port))
            return sock

        return call_in_netns(netns, make)

    @property
    def rendezvous(self) -> str:
        """Where tests run the rendezvous."""
        return f"{PUBLIC_IP}:{RENDEZVOUS_PORT}"

    @property
    def stun(self) -> str:
        """coturn's STUN/TURN address."""
        return f"{PUBLIC_IP}:{TURN_PORT}"

    def conntrack(self, nat: int) -> list[str]:
        """The UDP conntrack entries of NAT 1 or 2 (from its /proc)."""

        def read() -> list[str]:
            try:
                with open("/proc/net/nf_conntrack") as f:
                    return [line for line in f if " udp " in line]
            except OSError:
                return []

        return call_in_netns(self.nats[nat - 1], read)
