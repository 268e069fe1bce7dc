"""Run other projects' own test suites over kernel TCP and over udptcp's drop-in loop.

    python tests/suites/run.py                   # every suite, every mode (about 20 min)
    python tests/suites/run.py aioftp -m udptcp-uvloop -k test_abort   # a slice
    python tests/suites/run.py --update-readme   # and put the table in README.md

What it does, once per suite and mode (``tcp-asyncio``, ``tcp-uvloop``, ``udptcp-asyncio``,
``udptcp-uvloop``):

1. Fetches the pinned release with the registries' own clients, checked against a pinned
   SHA-256, into ``tests/suites/.cache/`` (git-ignored): aioftp's and aiohttp's sdists from
   PyPI carry their tests; websockets' sdist prunes them, so its tests come from Debian's
   source package (the upstream tarball Debian builds from), through ``apt-get source``
   with a private apt state directory (the machine's own apt mirror, ``trixie``).
2. Makes one virtualenv there with the pinned libraries, the suites' test dependencies and
   this udptcp checkout (editable).
3. Runs the suite's tests, unmodified, with pytest and ``-p udptcp_suite_plugin``, which
   sets the event loop policy for the mode before the suite's conftest runs (the drop-in
   through ``udptcp.install()``) and records outcomes and where the traffic went.
4. Prints pass/fail/skip per suite and mode, the udptcp evidence (UDP datagrams,
   connections opened and accepted over udptcp) and every test that passes over kernel TCP
   but not over udptcp on the same loop; those listed in :data:`EXPECTED` (the README
   names them with their reasons) are marked as such. Exit status 1 if any other test
   regressed.

Slow and network-bound, so it is not part of the project's test command.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = HERE / ".cache"
MODES = ("tcp-asyncio", "tcp-uvloop", "udptcp-asyncio", "udptcp-uvloop")

#: The suites' test dependencies (their own pins where they have them: aiohttp's
#: requirements/test.txt), and the loop; one virtualenv holds all three suites.
REQUIREMENTS = [
    "pytest==9.0.3",
    "pytest-timeout==2.4.0",
    "pytest-mock==3.15.1",
    "pytest-asyncio==1.5.0",  # aioftp's tests
    "trustme==1.2.1",
    "freezegun==1.5.5",
    "blockbuster==1.5.26",
    "async-timeout==5.0.1",  # aioftp
    "siosocks==0.3.0",  # aioftp
    "werkzeug==3.1.9",  # websockets' router tests
    # aiohttp's: its warning filters name coverage; the compression back-ends it tests.
    "coverage==7.14.1",
    "brotli==1.2.0",
    "backports-zstd==1.3.0",
    "isal==1.8.0",
    "zlib-ng==1.0.0",
    "uvloop==0.23.0",
]


@dataclasses.dataclass(frozen=True)
class Suite:
    """One project's release and the tests of it that run."""

    name: str
    version: str
    sha256: str  # of the archive that holds the tests
    origin: str  # "pypi" (the sdist) or "debian:<source package>=<version>"
    tests: tuple[str, ...]  # paths inside the unpacked archive
    pytest_args: tuple[str, ...] = ()
    install: str = ""  # what pip installs for the library itself (default: name==version)

    @property
    def archive(self) -> Path:
        if self.origin == "pypi":
            return CACHE / "downloads" / f"{self.name}-{self.version}.tar.gz"
        source = self.origin.split(":", 1)[1].split("=")[0]
        return CACHE / "downloads" / f"{source}_{self.version}.orig.tar.gz"

    @property
    def tree(self) -> Path:
        return CACHE / "src" / f"{self.name}-{self.version}"


SUITES = {
    "websockets": Suite(
        "websockets",
        "15.0.1",
        "8451495265af3e368f794c4dc15c99ce90c771d95560f542bff8c64b5455af3b",
        "debian:python-websockets=15.0.1-1",
        ("tests/asyncio",),
        # It has no pytest configuration: -c keeps pytest from finding udptcp's.
        ("-c", "tox.ini", "-p", "no:asyncio"),
    ),
    "aioftp": Suite(
        "aioftp",
        "0.28.3",
        "f054f3af285b4958621220f04ce755e58907140181e95efa859369091c92d040",
        "pypi",
        ("tests",),
        # Its addopts want coverage and stop at the first failure (-x).
        ("-o", "addopts=-p no:anyio --import-mode=importlib"),
    ),
    "aiohttp": Suite(
        "aiohttp",
        "3.14.5",
        "5558a7f5a05af9ecf744af91e5baefc436f93c9333e656c27ec253f9a6bbe178",
        "pypi",
        ("tests/test_client_functional.py", "tests/test_web_functional.py"),
        # Its pytest.ini's addopts want xdist and coverage; keep its marker selection.
        # --aiohttp-loop=pyloop: loops come from the policy the plugin sets.
        (
            "-p",
            "no:asyncio",
            "-o",
            "addopts=",
            "-m",
            "not dev_mode and not autobahn and not internal",
            "--aiohttp-loop=pyloop",
        ),
    ),
}

#: Tests that pass over kernel TCP and fail over udptcp for a reason the README lists:
#: (suite, test id without the loop) -> reason.
_KERNEL_SOCKET = "opens a kernel TCP socket itself ({}) to talk to a server that is udptcp"
_ABORT = (
    "abort() sends RST (listed difference): websockets aborts a connection whose opening "
    "handshake timed out, so the peer reads ConnectionResetError instead of EOF"
)
EXPECTED: dict[tuple[str, str], str] = {
    ("websockets", "tests/asyncio/test_client.py::ClientTests::test_existing_socket"): (
        _KERNEL_SOCKET.format("socket.create_connection")
    ),
    (
        "websockets",
        "tests/asyncio/test_client.py::ClientTests::test_redirect_with_existing_socket",
    ): _KERNEL_SOCKET.format("socket.create_connection"),
    ("websockets", "tests/asyncio/test_client.py::ClientTests::test_timeout_during_handshake"): (
        "its silent server is a kernel TCP socket (socket.create_server): udptcp's SYN to "
        "that port is refused instead of timing out"
    ),
    ("websockets", "tests/asyncio/test_server.py::ServerTests::test_timeout_during_handshake"): (
        _ABORT
    ),
    (
        "websockets",
        "tests/asyncio/test_server.py::SecureServerTests::test_timeout_during_tls_handshake",
    ): _ABORT,
}


# ---------------------------------------------------------------------- fetching


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(suite: Suite) -> None:
    """Download and unpack ``suite`` unless the cache has it."""
    archive = suite.archive
    if not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        if suite.origin == "pypi":
            run_checked(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps"]
                + ["--no-binary", ":all:", "-d", str(archive.parent)]
                + [f"{suite.name}=={suite.version}"]
            )
        else:
            fetch_debian_orig(suite.origin.split(":", 1)[1], archive)
    if sha256(archive) != suite.sha256:
        raise SystemExit(f"{archive}: SHA-256 {sha256(archive)} is not the pinned {suite.sha256}")
    if not suite.tree.exists():
        staging = CACHE / "src" / ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        (top,) = staging.iterdir()
        top.rename(suite.tree)
        staging.rmdir()


def fetch_debian_orig(spec: str, archive: Path) -> None:
    """``apt-get source --download-only`` into a private apt state, on this machine's own
    Debian mirror with the ``trixie`` suite; only the upstream tarball is kept."""
    if shutil.which("apt-get") is None:
        raise SystemExit(f"{spec}: needs Debian's apt-get (the sdist on PyPI has no tests)")
    mirror = debian_mirror()
    state = CACHE / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(f"deb-src {mirror} trixie main\n")
    options = [
        "-o",
        f"Dir::Etc::sourcelist={state / 'sources.list'}",
        "-o",
        "Dir::Etc::sourceparts=/nonexistent",
        "-o",
        f"Dir::State::Lists={state / 'lists'}",
        "-o",
        f"Dir::Cache={state / 'cache'}",
        "-o",
        "APT::Sandbox::User=root",
    ]
    run_checked(["apt-get", *options, "-qq", "update"])
    # The mirror may carry only the upstream tarball of a source package (the .dsc and the
    # Debian tarball are not needed): the exit status is judged by that file alone.
    subprocess.run(
        ["apt-get", *options, "-qq", "source", "--download-only", spec],
        cwd=archive.parent,
        check=False,
    )
    if not archive.exists():
        raise SystemExit(f"{spec}: apt-get source did not fetch {archive.name}")


def debian_mirror() -> str:
    """The first Debian mirror this machine's apt uses."""
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.M):
            uri = match.group(1).rstrip("/")
            if uri.endswith("/debian"):
                return uri
    raise SystemExit("no Debian mirror in /etc/apt: cannot fetch websockets' tests")


# ---------------------------------------------------------------------- the virtualenv


def venv_python() -> Path:
    return CACHE / "venv" / "bin" / "python"


def make_venv() -> None:
    """One virtualenv for all suites; rebuilt when the pins change."""
    wanted = sorted(REQUIREMENTS + [s.install or f"{s.name}=={s.version}" for s in SUITES.values()])
    stamp = CACHE / "venv" / "udptcp-suites.json"
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return
    shutil.rmtree(CACHE / "venv", ignore_errors=True)
    run_checked([sys.executable, "-m", "venv", str(CACHE / "venv")])
    run_checked([str(venv_python()), "-m", "pip", "install", "-q", *wanted, "-e", str(ROOT)])
    stamp.write_text(json.dumps(wanted))


def versions() -> str:
    names = ["websockets", "aioftp", "aiohttp", "uvloop", "pytest"]
    code = (
        "import importlib.metadata as m\n"
        f"print(', '.join(n + ' ' + m.version(n) for n in {names!r}))"
    )
    return subprocess.run(
        [str(venv_python()), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def run_checked(cmd: list[str], cwd: Path | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


# ---------------------------------------------------------------------- running


def run_suite(
    suite: Suite, mode: str, extra: list[str], tests: list[str] | None = None, tag: str = ""
) -> dict:
    """Run one suite in one mode (``tests``: only these test ids); the plugin's report.

    The report of a whole run is kept as ``.cache/logs/<suite>-<mode>.json`` (later runs
    compare against it); a slice's (``-k``, ``tests``) is named after ``tag``.
    """
    logs = CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    name = f"{suite.name}-{mode}{tag}"
    report = logs / f"{name}.json"
    report.unlink(missing_ok=True)
    log = logs / f"{name}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE)
    env["UDPTCP_SUITE_MODE"] = mode
    env["UDPTCP_SUITE_REPORT"] = str(report)
    # The venv's pytest script, not "python -m pytest": the source tree must not shadow
    # the installed (compiled) library.
    cmd = [str(venv_python().parent / "pytest"), "-p", "udptcp_suite_plugin"]
    cmd += ["-p", "no:cacheprovider", "-q", "-rfE", "--timeout=120"]
    cmd += [*suite.pytest_args, *extra, *(tests or suite.tests)]
    started = time.monotonic()
    with log.open("w") as out:
        subprocess.run(cmd, cwd=suite.tree, env=env, stdout=out, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - started
    if not report.exists():
        raise SystemExit(f"{suite.name} {mode}: no report; see {log}")
    result = json.loads(report.read_text())
    result["seconds"] = elapsed
    result["log"] = str(log)
    print(f"{name:26} {counts_text(result)}  ({elapsed:.0f} s, {log})", flush=True)
    return result


def counts(result: dict) -> dict[str, int]:
    out = {"passed": 0, "failed": 0, "skipped": 0}
    for outcome in result["outcomes"].values():
        if outcome in ("passed", "xpassed"):
            out["passed"] += 1
        elif outcome == "failed":
            out["failed"] += 1
        else:
            out["skipped"] += 1  # skipped, xfailed
    return out


def counts_text(result: dict | None) -> str:
    if result is None:
        return "—"
    c = counts(result)
    return f"{c['passed']} / {c['failed']} / {c['skipped']}"


def regressions(suite: str, tcp: dict, udp: dict) -> list[tuple[str, str | None]]:
    """Tests passing over kernel TCP and not over udptcp: (test id, README reason or None)."""
    out = []
    for nodeid, outcome in sorted(tcp["outcomes"].items()):
        if outcome != "passed" or nodeid not in udp["outcomes"]:
            continue  # (a test a -k slice did not run is not compared)
        if udp["outcomes"][nodeid] in ("passed", "xpassed"):
            continue
        out.append((nodeid, EXPECTED.get((suite, nodeid))))
    return out


def table(suites: list[Suite], results: dict[tuple[str, str], dict]) -> str:
    lines = [
        "| suite | " + " | ".join(f"{m} pass / fail / skip" for m in MODES) + " |",
        "| --- | " + " | ".join("---" for _ in MODES) + " |",
    ]
    for suite in suites:
        cells = [counts_text(results.get((suite.name, m))) for m in MODES]
        tests = " ".join(f"`{t}`" for t in suite.tests)
        lines.append(f"| {suite.name} {suite.version} {tests} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "| suite | loop | UDP datagrams in / out | udptcp connections opened / accepted "
        "| kernel TCP connects / listens |"
    )
    lines.append("| --- | --- | --- | --- | --- |")
    for suite in suites:
        for loop in ("asyncio", "uvloop"):
            r = results.get((suite.name, f"udptcp-{loop}"))
            if r is None:
                continue
            u, k = r["udptcp"], r["kernel_tcp"]
            lines.append(
                f"| {suite.name} | {loop} | {u['datagrams_in']:,} / {u['datagrams_out']:,} "
                f"| {u['active_opens']:,} / {u['passive_opens']:,} "
                f"| {k.get('connect', 0):,} / {k.get('listen', 0):,} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suites", nargs="*", help=f"of {', '.join(SUITES)} (default: all)")
    parser.add_argument("-m", "--mode", action="append", choices=MODES, help="default: all")
    parser.add_argument("-k", help="pytest -k expression (a slice of each suite)")
    parser.add_argument("--update-readme", action="store_true")
    args, extra = parser.parse_known_args(argv)  # the rest goes to pytest
    unknown = set(args.suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suite {sorted(unknown)[0]!r}; known: {', '.join(SUITES)}")
    suites = [SUITES[name] for name in (args.suites or SUITES)]
    modes = args.mode or list(MODES)
    extra = [a for a in extra if a != "--"]
    if args.k:
        extra += ["-k", args.k]

    started = time.monotonic()
    for suite in suites:
        fetch(suite)
    make_venv()
    results: dict[tuple[str, str], dict] = {}
    tag = "-slice" if extra else ""
    for suite in suites:
        for mode in modes:
            results[(suite.name, mode)] = run_suite(suite, mode, extra, tag=tag)

    # Modes not run now are compared from their last run's report, when there is one.
    for suite in suites:
        for mode in MODES:
            cached = CACHE / "logs" / f"{suite.name}-{mode}.json"
            if (suite.name, mode) not in results and cached.exists():
                results[(suite.name, mode)] = json.loads(cached.read_text())
                print(
                    f"{suite.name}-{mode:21} {counts_text(results[(suite.name, mode)])}"
                    "  (the last whole run's report)"
                )

    print()
    print(table(suites, results))
    unexpected = flaky = 0
    for suite in suites:
        for loop in ("asyncio", "uvloop"):
            tcp = results.get((suite.name, f"tcp-{loop}"))
            udp = results.get((suite.name, f"udptcp-{loop}"))
            if tcp is None or udp is None:
                continue
            lost = regressions(suite.name, tcp, udp)
            if not lost:
                continue
            # Timing tests fail now and then on a loaded machine, over TCP too: what is not
            # listed runs once more, alone, before it counts.
            again = [nodeid for nodeid, reason in lost if reason is None]
            rerun: dict[str, str] = {}
            tcp_rerun: dict[str, str] = {}
            if again:
                mode = f"udptcp-{loop}"
                rerun = run_suite(suite, mode, [], again, tag="-rerun")["outcomes"]
                still = [nodeid for nodeid in again if rerun.get(nodeid) != "passed"]
                if still:  # and what fails again, over kernel TCP too?
                    mode = f"tcp-{loop}"
                    tcp_rerun = run_suite(suite, mode, [], still, tag="-rerun")["outcomes"]
            print(f"\n{suite.name} on {loop}: passes over kernel TCP, not over udptcp:")
            for nodeid, reason in lost:
                print(f"  {udp['outcomes'].get(nodeid, 'not run'):8} {nodeid}")
                if reason:
                    print(f"           listed: {reason}")
                elif rerun.get(nodeid) == "passed":
                    print("           passed when run again alone (timing)")
                    flaky += 1
                elif tcp_rerun.get(nodeid, "passed") != "passed":
                    print("           failed again, and so did kernel TCP when run again (timing)")
                    flaky += 1
                else:
                    unexpected += 1
    elapsed = time.monotonic() - started
    print(
        f"\n{unexpected} unexpected, {flaky} timing (see above); {elapsed / 60:.1f} min; "
        f"{versions()}"
    )
    if args.update_readme:
        update_readme(suites, results, elapsed)
    return 1 if unexpected else 0


def update_readme(
    suites: list[Suite], results: dict[tuple[str, str], dict], elapsed: float
) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- suites:start -->", "<!-- suites:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"README.md has no {start} ... {end} block")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        f"Measured {when} with `python tests/suites/run.py --update-readme` "
        f"({elapsed / 60:.0f} min; {versions()}; Python {platform.python_version()}).\n\n"
        + table(suites, results)
        + "\n\nTests that pass over kernel TCP and not over udptcp, and why:\n\n"
        + "\n".join(
            f"- {suite} `{nodeid}`: {reason}." for (suite, nodeid), reason in EXPECTED.items()
        )
    )
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{body}\n{end}{tail}")


if __name__ == "__main__":
    sys.exit(main())
