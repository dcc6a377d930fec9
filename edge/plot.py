"""The plot people draw to see how a stream model's belief moves through a clip.

matplotlib is an optional extra (``pip install 'edge[plot]'``); it is imported only here,
only when a plot is asked for, and without pyplot so no GUI backend or global state is
touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge.errors import ConfigError

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


def plot_timeline(
    times: Sequence[float],
    probs: Sequence[np.ndarray] | np.ndarray,
    labels: Sequence[str],
    out: str | Path,
    *,
    title: str = "",
    top: int = 5,
) -> Path:
    """Write a PNG of the ``top`` labels' probabilities against time in seconds."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    matrix = np.asarray(probs, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(times) or matrix.shape[0] == 0:
        raise ValueError("plot_timeline needs one probability vector per time")
    t = np.asarray(times, dtype=np.float64)
    fig = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i in top_labels(matrix, top):
        ax.plot(t, matrix[:, i], label=labels[i], linewidth=1.6)
    ax.set_xlabel("time in video (s)")
    ax.set_ylabel("probability")
    ax.set_ylim(0.0, 1.0)
    if t.size > 1:
        ax.set_xlim(float(t[0]), float(t[-1]))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small", framealpha=0.8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
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
