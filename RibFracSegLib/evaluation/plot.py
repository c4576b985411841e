"""FROC curve as a PNG (matplotlib is optional: without it the plot is skipped with a clear message)."""

from __future__ import annotations

from pathlib import Path

from ..io import atomic_path
from .report import FrocReport


def save_froc_png(report: FrocReport, path: str | Path, title: str = "FROC") -> Path:
    """Recall against FP per scan with the key FP levels marked; raises ImportError without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("matplotlib is needed for the FROC plot: pip install matplotlib") from err
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    pts = sorted(zip(report.fp_per_scan, report.recall))
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", lw=1.5, label="FROC")
    ax.plot(report.key_fp, report.key_recall, "o", label=f"key FP (score {report.froc:.3f})")
    ax.set_xscale("symlog", linthresh=0.5)
    ax.set_xlabel("false positives per scan")
    ax.set_ylabel("recall")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
