"""FloatExplorer: click the bits of a number, or type a value, and see exactly how a format stores it.

Layout, top to bottom: format / value / overflow policy / block absmax controls (they wrap on a narrow
screen); the bits as buttons coloured by field (sign, exponent, mantissa; index for codebooks); a message
line for bad input; the explanation (stored value, class, hex, formula, error, neighbours); the compare
table (the same input in every format); two pictures (number line or codebook levels; the range chart).

One state drives every view: (format, what was typed or clicked, overflow policy, block absmax) goes through
``explain`` once, and every view shows that one answer. When the answer is an error, every view of a value is
emptied and the bits are disabled, so nothing on screen describes an earlier input. The overflow policy and
the block absmax stay visible whatever the format, because the compare table uses both.

The pictures are ``ipywidgets.Image`` widgets fed PNG bytes from pyplot-free matplotlib figures: they update in
place over the widget comm in JupyterLab, Notebook 7, VS Code and Colab without ipympl or a custom front end,
and a test can read their bytes in a headless kernel. Each is drawn for a fixed size in CSS pixels at twice
the pixels (sharp on high-DPI screens) and shown at exactly that size. Rendering costs ~0.1 s, so redraws
are throttled; a bit click only updates text widgets (see benchmarks/).
"""

from __future__ import annotations

import html

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
from lorakit.formats.parse import parse, shorten
from lorakit.quantization import QUANTIZATIONS
from lorakit.widgets.format_views import (
    FIELD_COLOURS,
    LINE_SIZE,
    RANGE_SIZE,
    FormatPicture,
    Throttle,
    compare_table_html,
    nowrap,
    number_text,
)

__all__ = ["FloatExplorer"]

NO_BIT = "·"  # what a bit button reads while the input is not a value of the format
BLOCK_NAMES = ", ".join(name for name, f in FORMATS.items() if not f.is_float)


def _label(css: str) -> widgets.HTML:
    label = widgets.HTML()
    label.add_class(css)
    return label


def _picture(css: str, size: tuple[int, int]) -> widgets.Image:
    """An Image shown at ``size`` CSS pixels (narrower only where the column itself is narrower)."""
    width, height = size
    layout = widgets.Layout(width=f"{width}px", height="auto", max_width="100%", margin="0 8px 0 0")
    picture = widgets.Image(format="png", layout=layout)
    picture.add_class(css)
    return picture


def _is_bit_pattern(text: str, fmt: FloatFormat) -> bool:
    try:
        return parse(text, fmt).is_bits
    except ValueError:
        return False


class FloatExplorer(widgets.VBox):
    """Explore how any lorakit format stores a value: bits, formula, error, neighbours, all formats side by side."""

    def __init__(
        self, fmt: str = "fp16", value: str = "0.1", overflow: str = "standard", absmax: float = 1.0,
        redraw_interval_s: float = 0.25,
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
        self.bit_buttons: list[widgets.Button] = []
        self.bits_box = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.fields_label = _label("lorakit-fields")
        self.value_label, self.class_label = _label("lorakit-value"), _label("lorakit-class")
        self.hex_label, self.formula_label = _label("lorakit-hex"), _label("lorakit-formula")
        self.rounding_label, self.neighbours_label = _label("lorakit-rounding"), _label("lorakit-neighbours")
        self.note_label, self.error_label = _label("lorakit-note"), _label("lorakit-error")
        self.compare_html = _label("lorakit-compare")
        self.picture = _picture("lorakit-picture", LINE_SIZE)
        self.range_picture = _picture("lorakit-range-picture", RANGE_SIZE)
        self.pictures = widgets.HBox([self.picture, self.range_picture],  # flex-start: a flex row would stretch
                                     layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"))  # fmt: skip
        self.explanation: Explanation | None = None  # the one answer every view shows; None after an error
        self._source = str(value)  # what to explain: typed text, or a '0x..' pattern after a bit click
        self._syncing = False  # True while the widget writes its own text box
        self._painter = FormatPicture()
        self.picture_throttle = Throttle(self._draw_picture, redraw_interval_s)
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
        self.detail_labels = [self.value_label, self.class_label, self.hex_label, self.formula_label,
                              self.rounding_label, self.neighbours_label, self.note_label]  # fmt: skip
        super().__init__([controls, self.fields_label, self.bits_box, self.error_label,
                          widgets.VBox(self.detail_labels), self.compare_html, self.pictures])  # fmt: skip
        self.add_class("lorakit-float-explorer")
        self._build_bits()
        self._refresh()
        self.flush_pictures()  # the first picture is drawn at once, so a saved notebook keeps it as widget state

    # ----- handlers: each one records what changed, then funnels into _refresh --------------------------------
    def _on_format_dropdown_change(self, change: dict) -> None:
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
        position = self.bit_buttons.index(button)
        code = self.explanation.code ^ (1 << (len(self.bit_buttons) - 1 - position))
        self._source = f"0x{code:X}"
        self._refresh()
        self._set_text(repr(self.explanation.stored))  # the text box shows the value the bits now make

    # ----- the one refresh --------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Explain the current state once and show the answer in every view (an error empties them all)."""
        fmt = get_format(self.format_dropdown.value)
        try:
            e = explain(self._source, fmt, overflow=self.overflow_toggle.value, absmax=self.absmax_text.value)
        except ValueError as err:
            self._show_error(err)
            return
        self.explanation = e
        self.error_label.value = ""
        self._show_bits(e)
        self._show_details(e)
        rows = self._compare_rows(e)
        self.compare_html.value = compare_table_html(rows, fmt.name, float(self.absmax_text.value))
        self.pictures.layout.display = ""
        self.picture_throttle.request()

    def _show_error(self, err: ValueError) -> None:
        self.explanation = None
        self.error_label.value = f'<span style="color:#b03a2e">⚠ {html.escape(str(err))}</span>'
        for button in self.bit_buttons:
            button.description, button.disabled = NO_BIT, True
            button.style.font_weight = "normal"
        for label in self.detail_labels:
            label.value = ""
        self.compare_html.value = ""
        self.pictures.layout.display = "none"  # hidden, not left showing the previous value

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
    def _build_bits(self) -> None:
        """One Button per bit, most significant first, coloured by field, like the usual diagrams."""
        fmt = get_format(self.format_dropdown.value)
        buttons = []
        for position, field in enumerate(fmt.field_of_bit):
            button = widgets.Button(description=NO_BIT, tooltip=f"bit {fmt.bits - 1 - position}: {field}",
                                    layout=widgets.Layout(width="24px", height="30px", padding="0"))  # fmt: skip
            button.style.button_color = FIELD_COLOURS[field]
            button.add_class("lorakit-bit")
            button.add_class(f"lorakit-bit-{field}")
            button.on_click(self._on_bit_change)
            buttons.append(button)
        self.bit_buttons = buttons
        self.bits_box.children = buttons
        legend = " ".join(
            f'<span style="background:{FIELD_COLOURS[name]};padding:1px 6px;white-space:nowrap">{name} ({width})</span>'
            for name, width in fmt.field_widths.items()
        )
        note = " — TF32 is a matmul compute mode, not a storage type" if fmt.compute_only else ""
        stored = "".join(f"<br><small>quantization={q.name!r} stores {html.escape(q.stores)}</small>"
                         for q in QUANTIZATIONS.values() if q.code_format == fmt.name)  # the trainer's options
        self.fields_label.value = f"<b>{fmt.name}</b>, {fmt.bits} bits: {legend}{html.escape(note)}{stored}"

    def _show_bits(self, e: Explanation) -> None:
        for button, bit in zip(self.bit_buttons, e.bits, strict=True):
            if button.description != bit:  # only changed bits cross the comm
                button.description = bit
                button.style.font_weight = "bold" if bit == "1" else "normal"
            button.disabled = False

    def _show_details(self, e: Explanation) -> None:
        exact = html.escape(e.stored_exact)  # up to ~150 digits (FP32 subnormals): only those may wrap
        exact = nowrap(exact) if len(exact) <= 40 else f'<span style="overflow-wrap:anywhere">{exact}</span>'
        self.value_label.value = f"<b>stored</b> {exact} <small>(exact decimal)</small>"
        self.class_label.value = f"<b>class</b> {e.value_class}"
        self.hex_label.value = f"<b>hex</b> {e.hex} &nbsp; <b>bits</b> {' '.join(e.field_bits.values())}"
        self.formula_label.value = f"<b>formula</b> {html.escape(e.formula)}"
        self.rounding_label.value = " &nbsp; ".join(
            nowrap(f"<b>{name}</b> {text}")
            for name, text in (("input", html.escape(shorten(e.input_text))),
                               ("abs error", number_text(e.abs_error, 6)), ("rel error", number_text(e.rel_error, 6)))
        )  # fmt: skip
        self.neighbours_label.value = " &nbsp; ".join(
            nowrap(f"<b>{name}</b> {number_text(x, digits)}")
            for name, x, digits in (("next down", e.next_down, 10), ("next up", e.next_up, 10), ("ULP", e.ulp, 6))
        )
        self.note_label.value = f"<i>{html.escape(e.note)}</i>" if e.note else ""

    # ----- pictures -----------------------------------------------------------------------------------------
    def _draw_picture(self) -> None:
        if self.explanation is not None:
            self.picture.value, self.range_picture.value = self._painter.render(self.explanation)

    def flush_pictures(self) -> None:
        """Draw the pictures now if a redraw is pending (the throttle would otherwise do it shortly)."""
        self.picture_throttle.flush()
