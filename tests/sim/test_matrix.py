"""The simulated-network matrix as tests (cells, figures and switches live in ``matrix.py``).

Integrity, the virtual-time bound and the memory bounds are asserted in every cell; each
efficiency target only once its switch in ``EFFICIENCY_TARGETS_ENFORCED`` is on. Run with
``-v`` or ``-s`` to get the table of every cell's figures in the terminal summary, or run
``python -m tests.sim.matrix`` for the table alone.
"""

from __future__ import annotations

import pytest
from matrix import (
    CELLS,
    FAIRNESS_CELLS,
    FAIRNESS_RESULTS,
    KNOWN_MISSES,
    RESULTS,
    Cell,
    FairnessCell,
    cubic_available,
    enforced,
    run_cell,
    run_fairness,
)


def _cell_param(cell: Cell) -> object:
    reason = KNOWN_MISSES.get(cell.name)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(cell, id=cell.name, marks=marks)


@pytest.mark.parametrize("cell", [_cell_param(c) for c in CELLS])
def test_cell(cell: Cell) -> None:
    result = run_cell(cell)
    RESULTS.append(result)
    problems = result.check_always()
    assert not problems, f"{cell.name} (seed={cell.seed}): {problems}\n{result.describe()}"
    missed = {t: why for t, why in result.check_targets().items() if why is not None}
    assert not missed, f"{cell.name} (seed={cell.seed}): {missed}\n{result.describe()}"


@pytest.mark.parametrize("cell", [c for c in FAIRNESS_CELLS if c.target], ids=lambda c: c.name)
def test_fairness(cell: FairnessCell) -> None:
    if cell.needs_cubic and not cubic_available():
        pytest.skip("udptcp.core.congestion does not know 'cubic' yet")
    result = run_fairness(cell)
    FAIRNESS_RESULTS.append(result)
    assert result.intact, f"{cell.name} (seed={cell.seed}): {result.error or 'SHA-256 differs'}"
    if enforced(cell.target):
        why = result.check_target()
        assert why is None, f"{cell.name} (seed={cell.seed}): {why}; goodputs {result.goodputs}"
