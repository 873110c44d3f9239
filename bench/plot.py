"""`bench/latency.png`: latency against concurrency, one line per scenario (target × streaming or not), median and
p99 side by side, log scales. Needs matplotlib (the `bench` extra); without it the plot is skipped with a note."""

from __future__ import annotations

from pathlib import Path

from bench.side_by_side import HttpRow

LATENCY_PNG = Path(__file__).resolve().parent / "latency.png"
COLORS = {"direct": "#7f7f7f", "t-koma": "#1f77b4", "LiteLLM": "#d62728"}
STYLES = {"json": "-", "stream": "--"}


def plot(rows: list[HttpRow], path: Path = LATENCY_PNG, title: str = "") -> str | None:
    """Draw the plot; returns a note instead when matplotlib is missing or there is nothing to draw."""
    if not rows:
        return "no HTTP rows: latency plot skipped"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): latency plot skipped"
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for axis, (attr, label) in zip(axes, (("p50_ms", "median"), ("p99_ms", "p99")), strict=True):
        for target in COLORS:
            for mode, style in STYLES.items():
                points = sorted((r.concurrency, getattr(r, attr)) for r in rows if (r.target, r.mode) == (target, mode))
                if not points:
                    continue
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, style, marker="o", color=COLORS[target], label=f"{target}, {mode}")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks(sorted({r.concurrency for r in rows}))
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_xlabel("concurrent requests")
        axis.set_title(f"{label} latency of POST /v1/chat/completions")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms (log scale)")
    axes[1].legend(loc="upper left", fontsize="small")
    if title:
        figure.suptitle(title, fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None
