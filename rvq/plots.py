"""The tokenizer runs' figures (matplotlib, no display): per-layer residual std and held-out error by prefix. Titles
are computed from the plotted numbers, and legends sit beside the axes, never over a curve."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a training machine
    import matplotlib.pyplot as plt

    return plt


def _save(fig, ax, path: Path, legend: bool) -> None:
    if legend:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")


def residual_std_title(curves: dict[str, list[float]]) -> str:
    """What the residual curves show, from their numbers: how far each falls from layer 0 to the last layer."""
    parts = [f"{label}: {std[0] / std[-1]:.3g}x from layer 0 to after layer {len(std) - 1}"
             for label, std in curves.items() if std[-1] > 0]
    return "Held-out residual std per layer (" + "; ".join(parts) + ")"


def plot_residual_std(curves: dict[str, list[float]], path: Path) -> Path:
    """`curves`: label → held-out residual std before each layer and after the last `[L + 1]` (latent units)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for label, std in curves.items():
        ax.semilogy(range(len(std)), std, marker="o", label=label)
    ax.set_xlabel("layer (the residual before it; the last point: after every layer)")
    ax.set_ylabel("held-out residual std (latent units)")
    ax.set_title(residual_std_title(curves), fontsize=8)
    _save(fig, ax, path, legend=len(curves) > 1)
    plt.close(fig)
    return path


def plot_prefix_error(curves: dict[str, list[tuple[float, float]]], path: Path, title: str,
                      xlabel: str = "bits per chunk (the first k layers)", dashed: frozenset[str] = frozenset()) -> Path:
    """`curves`: label → `(x, held-out MSE)` points, one per prefix k = 1..L (or per bit rate); log-log. Labels in
    `dashed` (fixed-rate baselines) are drawn dashed with square markers."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for label, points in curves.items():
        xs, ys = zip(*points)
        ax.loglog(xs, ys, marker="s" if label in dashed else "o", linestyle="--" if label in dashed else "-",
                  label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("held-out MSE (normalized actions)")
    ax.set_title(title, fontsize=8)
    _save(fig, ax, path, legend=len(curves) > 1)
    plt.close(fig)
    return path
