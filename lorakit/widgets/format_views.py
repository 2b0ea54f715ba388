"""Pieces of the FloatExplorer that are not controls: the compare table, the picture, the redraw throttle."""

from __future__ import annotations

import asyncio
import html
import math
import time
from collections.abc import Callable

import numpy as np

from lorakit.formats import FORMATS, Explanation, codebooks, get_format, values_around
from lorakit.viz.formats import (
    RangeRow,
    draw_codebook,
    draw_number_line,
    draw_range_chart,
    figure_png,
    make_figure,
)

FIELD_COLOURS = {
    "sign": "#f4b6b6", "exponent": "#a9cce3", "mantissa": "#b7e1a1", "index": "#f9d29d", "integer": "#d7bde2",
}  # fmt: skip


def number_text(x: float | None, digits: int = 8) -> str:
    """A float for a table cell: up to ``digits`` significant digits; '—' for None."""
    if x is None:
        return "—"
    return f"{x:.{digits}g}" if math.isfinite(x) else repr(x)


def compare_table_html(rows: dict[str, Explanation | ValueError], current: str) -> str:
    """HTML table: every format's stored value, error and class for the same input; the current row in bold."""
    cell = '<td style="padding:0 8px;line-height:1.3">'  # notebook CSS pads table cells generously
    head = "".join(f"{cell.replace('td', 'th', 1)}{h}</th>" for h in ("format", "bits", "stored", "abs error",
                                                                     "rel error", "class"))  # fmt: skip
    body = []
    for name, e in rows.items():
        style = ' style="font-weight:bold;background:#fdf2e9"' if name == current else ""
        label = name + (" (compute)" if FORMATS[name].compute_only else "")
        if isinstance(e, ValueError):
            cells = f'<td colspan="4" style="padding:0 8px">{html.escape(str(e).split(";")[0])}</td>'
        else:
            errors = (number_text(e.abs_error, 3), number_text(e.rel_error, 3))
            values = (number_text(e.stored, 10), *errors, e.value_class)
            cells = "".join(f"{cell}{v}</td>" for v in values)
        body.append(f"<tr{style}>{cell}{label}</td>{cell}{FORMATS[name].bits}</td>{cells}</tr>")
    return (
        '<table class="lorakit-compare-table" style="border-collapse:collapse;font-family:monospace;font-size:12px">'
        f"<tr>{head}</tr>{''.join(body)}</table>"
    )


def range_rows() -> list[RangeRow]:
    """One RangeRow per catalogued format (block formats in units of their absmax)."""
    return [
        RangeRow(f.name, f.min_subnormal, f.min_normal, f.max, f.decimal_digits, relative=not f.is_float)
        for f in FORMATS.values()
    ]


class FormatPicture:
    """One matplotlib figure (number line or codebook levels, over the range chart) rendered to PNG bytes."""

    def __init__(self) -> None:
        self.fig, (self.top, self.bottom) = make_figure()
        self._rows = range_rows()

    def render(self, e: Explanation) -> bytes:
        """Redraw both panels for an explanation and return the PNG."""
        fmt = get_format(e.format)
        if fmt.is_float:
            title = f"{fmt.name}: neighbours of the stored value (ULP here: {number_text(e.ulp, 4)})"
            draw_number_line(self.top, values_around(e, 3), e.stored, e.input_value, title)
        else:
            levels = codebooks.level_values(np.arange(2**fmt.bits), fmt) * np.float32(e.absmax)
            draw_codebook(self.top, [float(v) for v in levels], e.code, e.input_value, e.absmax)
        draw_range_chart(self.bottom, self._rows, highlight=fmt.name, value=e.stored)
        return figure_png(self.fig)


class Throttle:
    """Run ``fn`` at most once per ``interval_s`` of idle time, never inside the request that asked for it.

    In a Jupyter kernel a request schedules one run on the running asyncio loop (immediately after the current
    handler returns, or when the interval since the last run has passed); more requests before it runs add
    nothing. So a bit click returns after its cheap text updates, and a burst of clicks costs one redraw.
    Without a loop (plain Python, tests) requests stay pending until ``flush()``. ``paused`` keeps requests
    pending without scheduling anything (the benchmark uses it to time the handler alone).
    """

    def __init__(self, fn: Callable[[], None], interval_s: float = 0.25) -> None:
        self.fn, self.interval_s = fn, interval_s
        self.pending, self.paused = False, False
        self._last = -math.inf  # when the last run finished (monotonic seconds)
        self._timer: asyncio.TimerHandle | None = None

    def request(self) -> None:
        """Ask for a run: scheduled on the event loop if there is one, else left for flush()."""
        self.pending = True
        if self.paused or self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop: nobody sees the picture until flush() asks for it
        wait = self.interval_s - (time.monotonic() - self._last)
        self._timer = loop.call_later(max(wait, 0.0), self._fire)

    def _fire(self) -> None:
        self._timer = None
        if not self.paused:
            self.flush()

    def flush(self) -> None:
        """Run now if a request is pending."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.pending:
            self.pending = False
            try:
                self.fn()
            finally:
                self._last = time.monotonic()
