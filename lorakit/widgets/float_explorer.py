"""FloatExplorer: click the bits of a number, or type a value, and see exactly how a format stores it.

Layout, top to bottom: format / value / overflow policy / block absmax controls (they wrap on a narrow
screen); the bits as buttons coloured by field (sign, exponent, mantissa; index for codebooks); a message
line for bad input; the explanation (stored value, class, hex, formula, error, neighbours) beside the number
line (or the codebook's levels), one above the other where the column is narrow: value, bits and picture fit
one 900 px screen; then the compare table (the same input in every format) and the range chart.

One state drives every view: (format, what was typed or clicked, overflow policy, block absmax) goes through
``explain`` once, and every view shows that one answer. When the answer is an error, every view of a value is
emptied and the bits are disabled, so nothing on screen describes an earlier input. The overflow policy and
the block absmax stay visible whatever the format, because the compare table uses both.

The pictures are SVG strings in stock ``HTML`` widgets (``lorakit.viz.format_svg``): about a millisecond to
build, so they are redrawn in the same update as the text, with no throttle, and they work in JupyterLab,
Notebook 7, VS Code and Colab and in a saved notebook's widget state. A click sends one state update per
widget that changed (``hold_sync``): the bits that flipped, the text box, the details, the picture, the table.
"""

from __future__ import annotations

import html
from contextlib import ExitStack

import ipywidgets as widgets

from lorakit.formats import (
    FORMATS,
    OVERFLOW_POLICIES,
    Explanation,
    FloatFormat,
    explain,
    explain_all,
    get_format,
)
from lorakit.formats.parse import parse
from lorakit.quantization import QUANTIZATIONS
from lorakit.widgets.format_views import FIELD_COLOURS, FormatPicture, compare_table_html, details_html

__all__ = ["FloatExplorer"]

NO_BIT = "·"  # what a bit button reads while the input is not a value of the format
ONE = "lorakit-one"  # the class of a bit button that reads 1 (bold)
MAX_BITS = max(f.bits for f in FORMATS.values())
# A bit's colour (its field) and weight (1 in bold) are classes of the button, so that a format change or a click
# updates a button in one message; these rules, in the fields line's HTML, draw them (a ButtonStyle would be a
# widget of its own per button, with a message of its own).
BIT_STYLE = "<style>.lorakit-bit.lorakit-one{font-weight:bold}" + "".join(
    f".lorakit-bit.lorakit-bit-{field}{{background-color:{colour}}}" for field, colour in FIELD_COLOURS.items()
) + "</style>"
BLOCK_NAMES = ", ".join(name for name, f in FORMATS.items() if not f.is_float)


def _label(css: str) -> widgets.HTML:
    label = widgets.HTML()
    label.add_class(css)
    return label


def _box(css: str, flex: str) -> widgets.HTML:
    """An HTML widget that shares a wrapping row (``flex``) and may shrink below its content's width."""
    box = widgets.HTML(layout=widgets.Layout(flex=flex, min_width="0", max_width="100%", margin="0 12px 0 0"))
    box.add_class(css)
    return box


def _batched(*views: widgets.Widget) -> ExitStack:
    """Hold every view's state changes until the block ends: each then sends one update, whatever changed."""
    stack = ExitStack()
    for view in views:
        stack.enter_context(view.hold_sync())
    return stack


def _is_bit_pattern(text: str, fmt: FloatFormat) -> bool:
    try:
        return parse(text, fmt).is_bits
    except ValueError:
        return False


class FloatExplorer(widgets.VBox):
    """Explore how any lorakit format stores a value: bits, formula, error, neighbours, all formats side by side."""

    def __init__(
        self, fmt: str = "fp16", value: str = "0.1", overflow: str = "standard", absmax: float = 1.0,
    ) -> None:  # fmt: skip
        fmt = get_format(fmt).name
        fit = {"description_width": "initial"}  # a description as wide as its text: never cut
        self.format_dropdown = widgets.Dropdown(options=list(FORMATS), value=fmt, description="format", style=fit,
                                                layout=widgets.Layout(width="190px"))  # fmt: skip
        self.value_text = widgets.Text(value=str(value), description="value", continuous_update=False, style=fit,
                                       layout=widgets.Layout(width="250px"))  # fmt: skip
        self.overflow_toggle = widgets.ToggleButtons(
            options=list(OVERFLOW_POLICIES), value=overflow, style={"button_width": "auto"},
            tooltips=["past max: inf, or NaN without inf (ml_dtypes)", "past max: ±max (torch's FP8 cast)"],
        )  # fmt: skip
        self.absmax_text = widgets.FloatText(
            value=absmax, description="block absmax", step=0.1, style=fit, layout=widgets.Layout(width="190px"),
            tooltip=f"the block scale of {BLOCK_NAMES}: here and in the table below",
        )  # fmt: skip
        self._bit_pool = [self._new_bit() for _ in range(MAX_BITS)]  # a format change reuses them
        self.bit_buttons: list[widgets.Button] = []  # the format's bits, most significant first
        self.bits_box = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.fields_label, self.error_label = _label("lorakit-fields"), _label("lorakit-error")
        self.details_html = _box("lorakit-details", "1 1 300px")  # stored value, class, hex, formula, ...
        self.picture = _box("lorakit-picture", "0 1 460px")  # the number line, or the codebook's levels
        self.compare_html = _box("lorakit-compare", "1 1 470px")  # ~ the table: beside the chart, or a row of its own
        self.range_picture = _box("lorakit-range-picture", "0 1 460px")
        row = widgets.Layout(flex_flow="row wrap", align_items="flex-start")  # flex-start: a row would stretch
        self.explanation_box = widgets.HBox([self.details_html, self.picture], layout=row)
        self.pictures = widgets.HBox([self.compare_html, self.range_picture],
                                     layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start",
                                                           margin="10px 0 0 0"))
        self.explanation: Explanation | None = None  # the one answer every view shows; None after an error
        self._source = str(value)  # what to explain: typed text, or a '0x..' pattern after a bit click
        self._syncing = False  # True while the widget writes its own text box
        self._painter = FormatPicture()
        for control, handler in (
            (self.format_dropdown, self._on_format_dropdown_change),
            (self.value_text, self._on_value_text_change),
            (self.overflow_toggle, self._on_overflow_toggle_change),
            (self.absmax_text, self._on_absmax_text_change),
        ):
            control.observe(handler, names="value")
        controls = widgets.HBox([self.format_dropdown, self.value_text, self.overflow_toggle, self.absmax_text],
                                layout=widgets.Layout(flex_flow="row wrap", align_items="center"))  # fmt: skip
        controls.add_class("lorakit-controls")
        super().__init__([controls, self.fields_label, self.bits_box, self.error_label, self.explanation_box,
                          self.pictures])  # fmt: skip
        self.add_class("lorakit-float-explorer")
        self._build_bits()
        self._refresh()

    # ----- handlers: each one records what changed, then funnels into _refresh --------------------------------
    def _on_format_dropdown_change(self, change: dict) -> None:
        with self.value_text.hold_sync(), self.fields_label.hold_sync(), _batched(*self._bit_pool):
            if self.explanation is not None and _is_bit_pattern(self._source, get_format(change["old"])):
                self._source = repr(self.explanation.stored)  # a bit pattern means nothing in another width
                self._set_text(self._source)
            self._build_bits()
            self._refresh()

    def _on_value_text_change(self, change: dict) -> None:
        if not self._syncing:
            self._source = change["new"]
            self._refresh()

    def _on_overflow_toggle_change(self, change: dict) -> None:
        self._refresh()

    def _on_absmax_text_change(self, change: dict) -> None:
        self._refresh()

    def _on_bit_change(self, button: widgets.Button) -> None:
        if self.explanation is None:
            return  # the input is not a value of this format: the bits are disabled, there is nothing to flip
        if button not in self.bit_buttons:
            return  # a click that crossed a format change: that bit is not on screen any more
        position = self.bit_buttons.index(button)
        code = self.explanation.code ^ (1 << (len(self.bit_buttons) - 1 - position))
        self._source = f"0x{code:X}"
        with self.value_text.hold_sync():
            self._refresh()
            self._set_text(repr(self.explanation.stored))  # the text box shows the value the bits now make

    # ----- the one refresh --------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Explain the current state once and show the answer in every view (an error empties them all)."""
        fmt = get_format(self.format_dropdown.value)
        # held in this order, sent in the reverse one: the bits, the details and the number line first
        views = (self.error_label, self.range_picture, self.compare_html, self.explanation_box.layout,
                 self.pictures.layout, self.picture, self.details_html, *self.bit_buttons)
        with _batched(*views):
            try:
                e = explain(self._source, fmt, overflow=self.overflow_toggle.value, absmax=self.absmax_text.value)
            except ValueError as err:
                self._show_error(err)
                return
            self.explanation = e
            self.error_label.value = ""
            self._show_bits(e)
            self.details_html.value = details_html(e)
            rows = self._compare_rows(e)
            self.compare_html.value = compare_table_html(rows, fmt.name, float(self.absmax_text.value))
            self.picture.value, self.range_picture.value = self._painter.render(e)
            self.explanation_box.layout.display = self.pictures.layout.display = ""

    def _show_error(self, err: ValueError) -> None:
        self.explanation = None
        self.error_label.value = f'<span style="color:#b03a2e">⚠ {html.escape(str(err))}</span>'
        for button in self.bit_buttons:
            button.description, button.disabled = NO_BIT, True
            button.remove_class(ONE)
        self.details_html.value = self.compare_html.value = self.picture.value = self.range_picture.value = ""
        # hidden, not left showing the previous value
        self.explanation_box.layout.display = self.pictures.layout.display = "none"

    def _compare_rows(self, e: Explanation) -> dict:
        typed = self._source
        if _is_bit_pattern(typed, get_format(e.format)):
            typed = repr(e.stored)  # compare the value the bits make, not the pattern
        rows = explain_all(typed, overflow=self.overflow_toggle.value, absmax=self.absmax_text.value)
        rows[e.format] = e  # this format's row is the answer shown above (INT8's unused code -128 re-encodes as -127)
        return rows

    def _set_text(self, text: str) -> None:
        self._syncing = True
        try:
            self.value_text.value = text
        finally:
            self._syncing = False

    # ----- bits ------------------------------------------------------------------------------------------
    def _new_bit(self) -> widgets.Button:
        button = widgets.Button(description=NO_BIT, layout=widgets.Layout(width="24px", height="30px", padding="0"))
        button.add_class("lorakit-bit")
        button.on_click(self._on_bit_change)
        return button

    def _build_bits(self) -> None:
        """One Button per bit, most significant first, coloured by field, like the usual diagrams."""
        fmt = get_format(self.format_dropdown.value)
        buttons = self._bit_pool[: fmt.bits]
        for position, (button, field) in enumerate(zip(buttons, fmt.field_of_bit, strict=True)):
            with button.hold_sync():
                button.tooltip = f"bit {fmt.bits - 1 - position}: {field}"
                one = (ONE,) if ONE in button._dom_classes else ()
                button._dom_classes = ("lorakit-bit", f"lorakit-bit-{field}", *one)
        self.bit_buttons = buttons
        self.bits_box.children = buttons
        legend = " ".join(
            f'<span style="background:{FIELD_COLOURS[name]};padding:1px 6px;white-space:nowrap">{name} ({width})</span>'
            for name, width in fmt.field_widths.items()
        )
        note = " — TF32 is a matmul compute mode, not a storage type" if fmt.compute_only else ""
        stored = "".join(f"<br><small>quantization={q.name!r} stores {html.escape(q.stores)}</small>"
                         for q in QUANTIZATIONS.values() if q.code_format == fmt.name)  # the trainer's options
        self.fields_label.value = f"{BIT_STYLE}<b>{fmt.name}</b>, {fmt.bits} bits: {legend}{html.escape(note)}{stored}"

    def _show_bits(self, e: Explanation) -> None:
        for button, bit in zip(self.bit_buttons, e.bits, strict=True):
            if button.description != bit:  # only changed bits cross the comm
                button.description = bit
                (button.add_class if bit == "1" else button.remove_class)(ONE)
            button.disabled = False
