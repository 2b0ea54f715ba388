"""Figures to PNG bytes: the one way every lorakit picture leaves matplotlib."""

from __future__ import annotations

import io

from matplotlib.figure import Figure

__all__ = ["figure_to_png"]


def figure_to_png(fig: Figure) -> bytes:
    """The figure rendered as PNG bytes at its own dpi (pixels = inches x dpi, whatever rcParams say)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    return buffer.getvalue()
