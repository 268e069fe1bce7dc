"""What every test folder shares: the loops async tests run on, closing what a test left open,
the ``certs`` fixture, and the simulator matrix's summary.

* Every async test runs on both loops, so its id ends in ``[asyncio]`` or ``[uvloop]``
  (pytest-asyncio parametrizes it over the factories :func:`pytest_asyncio_loop_factories`
  returns); a test marked ``one_loop`` (the slow ones: relays, timeouts, kernel labs) runs on
  the default loop only. ``tests/conformance`` and ``tests/thirdparty`` run on loops of their
  own (their conftests say which).
* After every async test, still inside its loop, the endpoints it left open are closed
  (TIME-WAIT connections keep endpoints alive).
* ``tests/`` is on ``sys.path`` (for the shared :mod:`support` package and each folder's
  helpers) and so is the repository root (for ``import examples.chat``).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvloop

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
for _path in (TESTS, ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from support.certs import Certs, make_certs  # noqa: E402

from udptcp.aio.endpoint import close_endpoints  # noqa: E402

BOTH_LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "one_loop: run on the default asyncio loop only")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    if item.get_closest_marker("one_loop") is not None:
        return {"asyncio": asyncio.new_event_loop}
    return BOTH_LOOPS


@pytest_asyncio.fixture(loop_scope="function")
async def _close_endpoints_in_loop() -> AsyncIterator[None]:
    yield
    close_endpoints()


@pytest.fixture(autouse=True)
def _close_endpoints(request: pytest.FixtureRequest) -> Iterator[None]:
    """Close whatever an async test left open, in its own loop before that loop closes.
    (Synchronous tests have no loop, and never get one from here.)"""
    if inspect.iscoroutinefunction(getattr(request.node, "function", None)):
        request.getfixturevalue("_close_endpoints_in_loop")
    yield


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A throwaway CA and a certificate for localhost / 127.0.0.1."""
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Make each phase's report visible to fixtures as ``item.rep_<phase>``."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Print the simulator matrix's figures after a verbose (``-v``) or uncaptured (``-s``)
    run of ``tests/sim``."""
    matrix = sys.modules.get("matrix")
    results = getattr(matrix, "RESULTS", None)
    fairness = getattr(matrix, "FAIRNESS_RESULTS", None)
    if matrix is None or not (results or fairness):
        return
    if config.option.verbose <= 0 and config.getoption("capture") != "no":
        return
    terminalreporter.section("simulated network matrix")
    terminalreporter.write_line(matrix.report(results, fairness))
