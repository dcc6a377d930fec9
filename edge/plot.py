"""The plot people draw to see how a stream model's belief moves through a clip.

matplotlib is an optional extra (``pip install 'edge[plot]'``); it is imported only here,
only when a plot is asked for, and without pyplot so no GUI backend or global state is
touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'edge[plot]'"


def require_matplotlib() -> None:
    """Fail early, before minutes of classifying, when the plot extra is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"--plot needs matplotlib, which is not installed ({INSTALL_HINT})"
        ) from None


def top_labels(probs: np.ndarray, k: int = 5) -> np.ndarray:
    """Indices of the ``k`` classes with the highest peak probability over time.

    Peak rather than final score, so a label that held the first half of a clip and lost
    the second still shows.
    """
    peak = probs.max(axis=0)
    k = max(1, min(k, peak.size))
    idx = np.argpartition(-peak, k - 1)[:k]
    return idx[np.argsort(-peak[idx], kind="stable")]


def segments(
    labels: Sequence[str | None], times: Sequence[float]
) -> list[tuple[float, float, str]]:
    """The runs of one smoothed label as (start, end, label); "none" runs are left out."""
    out: list[tuple[float, float, str]] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            label = labels[start]
            if label is not None:
                end = times[i] if i < len(times) else times[-1]
                out.append((float(times[start]), float(end), label))
            start = i
    return out


def timeline_figure(
    times: Sequence[float],
    probs: Sequence[np.ndarray] | np.ndarray,
    labels: Sequence[str],
    *,
    smoothed: Sequence[str | None] | None = None,
    horizon_s: float = 0.0,
    title: str = "",
    top: int = 5,
) -> Figure:
    """The ``top`` labels' probabilities against time; under them, as a band, the label the
    daemon would have published (``smoothed``); a dashed line where the memory horizon
    starts to forget. The legend sits outside the axes, so it covers no data."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(probs, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(times) or matrix.shape[0] == 0:
        raise ValueError("plot_timeline needs one probability vector per time")
    t = np.asarray(times, dtype=np.float64)
    fig = Figure(figsize=(11, 5), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=(8, 1), hspace=0.08)
    ax = fig.add_subplot(grid[0])
    band = fig.add_subplot(grid[1], sharex=ax)
    colours: dict[str, object] = {}
    for i in top_labels(matrix, top):
        (line,) = ax.plot(t, matrix[:, i], label=labels[i], linewidth=1.6)
        colours[labels[i]] = line.get_color()
    if horizon_s > 0 and t.size and float(t[-1]) - float(t[0]) > horizon_s:
        ax.axvline(
            float(t[0]) + horizon_s,
            color="0.4",
            linestyle="--",
            linewidth=1.0,
            label=f"memory horizon ({horizon_s:g} s)",
        )
    ax.set_ylabel("probability")
    ax.set_ylim(0.0, 1.0)
    if t.size > 1:
        ax.set_xlim(float(t[0]), float(t[-1]))
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelbottom=False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    if title:
        ax.set_title(title)
    for start, end, label in segments(list(smoothed or []), list(times)):
        band.axvspan(start, end, color=colours.get(label, "0.6"), alpha=0.6, linewidth=0)
        band.text((start + end) / 2, 0.5, label, ha="center", va="center", fontsize="x-small")
    band.set_yticks([])
    band.set_ylabel("label", rotation=0, ha="right", va="center")
    band.set_xlabel("time in video (s)")
    fig.subplots_adjust(left=0.07, right=0.78, top=0.92, bottom=0.12)
    return fig


def plot_timeline(
    times: Sequence[float],
    probs: Sequence[np.ndarray] | np.ndarray,
    labels: Sequence[str],
    out: str | Path,
    **options: Any,
) -> Path:
    """Write ``timeline_figure(...)`` as a PNG."""
    require_matplotlib()
    out = Path(out)
    fig = timeline_figure(times, probs, labels, **options)
    try:
        fig.savefig(out, format="png")
    except OSError as exc:
        raise ConfigError(f"--plot: cannot write {out}: {exc.strerror or exc}") from None
    return out


def plot_confusion(
    confusion: dict[str, dict[str, int]], labels: Sequence[str], out: Path, title: str = ""
) -> None:
    """Rows: the true class; columns: the answer (``none`` last). Counts in the cells."""
    from matplotlib.figure import Figure

    rows = list(confusion)
    grid = np.array([[confusion[r].get(c, 0) for c in labels] for r in rows], dtype=float)
    fig = Figure(figsize=(1.2 + 0.7 * len(labels), 1.2 + 0.6 * len(rows)))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("answer")
    ax.set_ylabel("truth")
    top = grid.max() or 1.0
    for i in range(len(rows)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                str(int(grid[i, j])),
                ha="center",
                va="center",
                color="white" if grid[i, j] > top / 2 else "black",
            )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=100)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the plot: {exc.strerror or exc}") from None
