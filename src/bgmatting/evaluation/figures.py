"""Off-screen matplotlib figures (Agg canvas, no display needed), written as PNG files atomically."""
from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bgmatting.io import atomic_path


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A matplotlib ``Figure`` of width x height inches on an Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | os.PathLike, title: str = "", title_size: int = 10) -> Path:
    """Add the optional title, lay out tightly and write ``path`` atomically (temp file + rename)."""
    if title:
        fig.suptitle(title, fontsize=title_size)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
