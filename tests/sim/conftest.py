"""Print the simulator matrix's figures after a verbose (``-v``) or uncaptured (``-s``) run."""

from __future__ import annotations

import sys

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config):
    matrix = sys.modules.get("matrix")
    results = getattr(matrix, "RESULTS", None)
    fairness = getattr(matrix, "FAIRNESS_RESULTS", None)
    if matrix is None or not (results or fairness):
        return
    if config.option.verbose <= 0 and config.getoption("capture") != "no":
        return
    terminalreporter.section("simulated network matrix")
    terminalreporter.write_line(matrix.report(results, fairness))
