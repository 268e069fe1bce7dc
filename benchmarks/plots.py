"""PNG plots of the results (matplotlib, Agg backend): bulk MB/s, ping-pong latency,
goodput against loss with the Mathis curve, connections per second."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .peers import PEERS, rawudp
from .report import Results, _values
from .runner import Case, mathis

COLORS = {"asyncio": ("#4c72b0", "#a6bddb"), "uvloop": ("#dd8452", "#fdd0a2")}


def _stat(case: Case | None, key: str) -> tuple[float, float, float] | None:
    """(median, min, max) of one measurement, or None."""
    good, _ = _values(case, key)
    if not good:
        return None
    return statistics.median(good), min(good), max(good)


def _bars(ax: Any, positions: list[float], stats: list[Any], width: float, **kw: Any) -> None:
    """Bars at the medians with min–max whiskers; missing values are left out."""
    xs = [x for x, st in zip(positions, stats) if st is not None]
    meds = [st[0] for st in stats if st is not None]
    lows = [st[0] - st[1] for st in stats if st is not None]
    highs = [st[2] - st[0] for st in stats if st is not None]
    if xs:
        ax.bar(xs, meds, width, yerr=[lows, highs], capsize=2, **kw)


def _barh(ax: Any, positions: list[float], stats: list[Any], height: float, **kw: Any) -> None:
    ys = [y for y, st in zip(positions, stats) if st is not None]
    meds = [st[0] for st in stats if st is not None]
    lows = [st[0] - st[1] for st in stats if st is not None]
    highs = [st[2] - st[0] for st in stats if st is not None]
    if ys:
        ax.barh(ys, meds, height, xerr=[lows, highs], capsize=2, **kw)


def plot_all(results: Results, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    loops = results.loops

    def save(fig: Any, name: str) -> None:
        if fig.get_layout_engine() is None:
            fig.tight_layout()
        path = out_dir / f"{name}.png"
        # "tight" grows the image to whatever lies outside the axes (legends, long labels).
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    # bulk: horizontal bars, one group per peer (and per raw UDP receiver)
    if results.has("bulk") or results.has("raw"):
        groups: list[tuple[str, list[tuple[str, str, str, str]]]] = []
        for peer in results.peers("bulk"):
            series = [
                (scen, peer, loop, f"{loop} {api}")
                for loop in loops
                for scen, api in (("bulk", "Protocol"), ("bulk-streams", "streams"))
            ]
            groups.append((PEERS[peer].label, series))
        for mode, title in rawudp.MODES.items():
            if results.has("raw"):
                series = [("raw", mode, loop, f"{loop} Protocol") for loop in loops]
                groups.append((f"raw UDP ceiling: {title}", series))
        # Constrained layout keeps the legend below the axes inside the figure.
        fig, ax = plt.subplots(figsize=(9, 0.55 * len(groups) * 2 + 1.5), layout="constrained")
        labels = [f"{loop} {api}" for loop in loops for api in ("Protocol", "streams")]
        height = 0.8 / len(labels)
        for i, label in enumerate(labels):
            loop, api = label.split()
            color = COLORS.get(loop, ("gray", "silver"))[0 if api == "Protocol" else 1]
            ys, stats = [], []
            for g, (_, series) in enumerate(groups):
                for scen, peer, lp, lab in series:
                    if lab == label:
                        ys.append(g + (i - len(labels) / 2 + 0.5) * height)
                        stats.append(_stat(results.get(scen, peer, lp), "mbps"))
            _barh(ax, ys, stats, height, color=color, label=label)
        ax.set_yticks(range(len(groups)), [name for name, _ in groups], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("MB/s (log scale), median with min–max")
        ax.set_title("Bulk transfer over loopback, one way")
        fig.legend(fontsize=8, loc="outside lower center", ncol=len(labels))
        ax.grid(axis="x", alpha=0.3, which="both")
        save(fig, "bulk")

    if results.has("pingpong"):
        peers = results.peers("pingpong")
        fig, ax = plt.subplots(figsize=(9, 4.5))
        quantiles = [(loop, q) for loop in loops for q in ("p50_us", "p99_us")]
        width = 0.8 / len(quantiles)
        for i, (loop, q) in enumerate(quantiles):
            xs = [p + (i - len(quantiles) / 2 + 0.5) * width for p in range(len(peers))]
            stats = [_stat(results.get("pingpong", peer, loop), q) for peer in peers]
            color = COLORS.get(loop, ("gray", "silver"))[0 if q == "p50_us" else 1]
            _bars(ax, xs, stats, width, color=color, label=f"{loop} {q[:3]}")
        ax.set_xticks(range(len(peers)), [PEERS[p].label for p in peers], fontsize=7, rotation=15)
        ax.set_ylabel("round trip, µs")
        ax.set_title("1-byte ping-pong")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        save(fig, "pingpong")

    if results.has("loss"):
        rates = list(results.settings.loss_rates)
        fig, ax = plt.subplots(figsize=(8, 5))
        for peer in results.peers("loss"):
            for loop in loops:
                points = [
                    (rate * 100, _stat(results.get("loss", peer, loop, rate), "mbps"))
                    for rate in rates
                ]
                shown = [(x, st[0]) for x, st in points if st is not None]
                if shown:
                    ax.plot(
                        [x for x, _ in shown],
                        [y for _, y in shown],
                        marker="o",
                        linestyle="-" if loop == "asyncio" else "--",
                        label=f"{PEERS[peer].label.split(' (')[0]} {loop}",
                    )
        bound = [(rate * 100, mathis(rate) or 0.0) for rate in rates if rate > 0]
        if bound:
            ax.plot(
                [x for x, _ in bound],
                [y for _, y in bound],
                color="black",
                linestyle=":",
                marker="x",
                label="Mathis (MSS 1400, RTT 20 ms)",
            )
        ax.set_yscale("log")
        ax.set_xlabel("loss each way, %")
        ax.set_ylabel("goodput, MB/s (log scale)")
        ax.set_title("Goodput vs loss through the relay, 10 ms each way")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
        save(fig, "loss")

    if results.has("connect") or results.has("reqresp"):
        scenarios = [s for s in ("connect", "reqresp") if results.has(s)]
        fig, axes = plt.subplots(1, len(scenarios), figsize=(5 * len(scenarios), 4.5))
        axes = axes if len(scenarios) > 1 else [axes]
        titles = {"connect": "connect + close", "reqresp": "connect + request/response + close"}
        for ax, scenario in zip(axes, scenarios):
            peers = results.peers(scenario)
            width = 0.8 / len(loops)
            for i, loop in enumerate(loops):
                xs = [p + (i - len(loops) / 2 + 0.5) * width for p in range(len(peers))]
                stats = [_stat(results.get(scenario, peer, loop), "per_s") for peer in peers]
                _bars(ax, xs, stats, width, color=COLORS.get(loop, ("gray",))[0], label=loop)
            ax.set_xticks(
                range(len(peers)),
                [PEERS[p].label.split(" (")[0] for p in peers],
                fontsize=8,
            )
            ax.set_yscale("log")
            ax.set_ylabel("per second (log scale)")
            ax.set_title(titles[scenario], fontsize=10)
            ax.legend(fontsize=8)
            ax.grid(axis="y", alpha=0.3, which="both")
        save(fig, "connections")
    return written
