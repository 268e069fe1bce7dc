"""``python -m benchmarks``: where results go, how progress reads, plots that fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import cli
from benchmarks.runner import Case, Settings, describe


def _out(*argv: str) -> Path:
    return cli.output_dir(cli._parser().parse_args(list(argv)))


def test_quick_and_partial_runs_go_to_the_scratch_folder_unless_asked() -> None:
    assert _out("--quick") == cli.SCRATCH_OUT
    assert _out("--only", "bulk") == cli.SCRATCH_OUT
    assert _out("--peers", "udptcp,tcp") == cli.SCRATCH_OUT
    assert _out("--loops", "uvloop") == cli.SCRATCH_OUT
    # Asked for: the committed results (a full run, or one that updates the README) ...
    assert _out() == cli.DEFAULT_OUT
    assert _out("--quick", "--update-readme") == cli.DEFAULT_OUT
    # ... or wherever --out says.
    assert _out("--quick", "--out", "/tmp/mine") == Path("/tmp/mine")
    assert cli.SCRATCH_OUT.parent == cli.DEFAULT_OUT


def test_the_scratch_folder_is_ignored_by_git() -> None:
    root = Path(cli.__file__).resolve().parent.parent
    assert "benchmarks/results/scratch/" in (root / ".gitignore").read_text().split()


def test_progress_lines_give_each_figure_its_unit() -> None:
    line = describe({"mbps": 123.456, "wall_s": 4.2, "relay": {"seed": 3}, "rss_per_conn": 11571.2})
    assert line == "123.5 MB/s, server RSS 11.3 KiB/conn, relay seed 3 (4.2 s)"
    assert describe({"p50_us": 226.0, "p99_us": 406.0, "wall_s": 1}) == (
        "p50 226 µs, p99 406 µs (1.0 s)"
    )
    assert "mbps" not in describe({"mbps": 1.0, "per_s": 2.0})
    assert describe({"error": "boom"}) == "FAILED boom"


def test_every_plot_keeps_its_legend_inside_the_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks import plots
    from benchmarks.peers import PEERS, rawudp
    from benchmarks.report import Results

    settings = Settings.quick()
    cases: list[Case] = []
    peers = [p for p in PEERS if p != "udp"]
    for loop in settings.loops:
        for i, peer in enumerate(peers):
            cases.append(Case("bulk", peer, loop, samples=[{"mbps": 10.0 * (i + 1)}]))
            cases.append(Case("bulk-streams", peer, loop, samples=[{"mbps": 5.0 * (i + 1)}]))
            cases.append(Case("pingpong", peer, loop, samples=[{"p50_us": 100, "p99_us": 300}]))
            cases.append(Case("connect", peer, loop, samples=[{"per_s": 1000.0}]))
            for rate in settings.loss_rates:
                cases.append(Case("loss", peer, loop, rate, samples=[{"mbps": 1.0 + i}]))
        for mode in rawudp.MODES:
            cases.append(Case("raw", mode, loop, samples=[{"mbps": 300.0}]))

    figures: list[Any] = []
    real_close = plt.close

    def keep(fig: Any) -> None:
        figures.append(fig)

    monkeypatch.setattr(plt, "close", keep)
    written = plots.plot_all(Results(cases, settings), tmp_path)
    assert {p.name for p in written} == {"bulk.png", "pingpong.png", "loss.png", "connections.png"}
    for fig in figures:
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        assert legends
        for legend in legends:
            extent = legend.get_window_extent(renderer)
            assert extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1, fig
            assert extent.y0 >= box.y0 - 1 and extent.y1 <= box.y1 + 1, fig
        real_close(fig)


def test_update_readme_keeps_a_kept_section_and_folds_the_runs_own_under_it(
    tmp_path: Path,
) -> None:
    from benchmarks import report

    readme = tmp_path / "README.md"
    kept = "<!-- bench:keep -->\n### Loss\n\n| six transfers |\n<!-- bench:keep-end -->"
    readme.write_text(
        f"intro\n<!-- bench:start -->\nold\n### Bulk\nold bulk\n\n{kept}\n\n"
        "### Idle\nold idle\n<!-- bench:end -->\noutro\n"
    )
    fresh = (
        "Measured now\n\n### Bulk\nnew bulk\n\n### Loss\n\n| one transfer |\n\n### Idle\nnew idle\n"
    )
    report.update_readme(readme, fresh)
    once = readme.read_text()
    assert "new bulk" in once and "new idle" in once and "old" not in once
    assert kept in once
    assert once.count("| one transfer |") == 1
    assert once.index(kept) < once.index("<details>") < once.index("| one transfer |")
    assert once.index("| one transfer |") < once.index("### Idle")
    assert once.startswith("intro\n") and once.endswith("<!-- bench:end -->\noutro\n")
    # A second run replaces the folded figures instead of piling them up.
    report.update_readme(readme, fresh.replace("one transfer", "another transfer"))
    twice = readme.read_text()
    assert kept in twice and "| one transfer |" not in twice
    assert twice.count("<details>") == 1 and "| another transfer |" in twice
