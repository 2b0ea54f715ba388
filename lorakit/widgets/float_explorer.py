"""FloatExplorer: click the bits of a number, or type a value, and see exactly how a format stores it.

Layout, top to bottom: format / value / overflow policy / block absmax controls; the bits as buttons coloured
by field (sign, exponent, mantissa; index for codebooks); the explanation (stored value, class, hex,
formula, error, neighbours); a message line for bad input; the compare table (the same input in every
format); one picture (number line or codebook levels over the range chart).

The picture is an ``ipywidgets.Image`` fed PNG bytes from a pyplot-free matplotlib figure: it updates in place
over the widget comm in JupyterLab, Notebook 7, VS Code and Colab without ipympl or a custom front end, and a
test can read its bytes in a headless kernel (an ``Output`` widget's contents stay empty there). Rendering
costs ~0.1 s, so redraws are throttled; a bit click only updates text widgets (see benchmarks/).
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
from lorakit.formats.parse import parse
from lorakit.widgets.format_views import (
    FIELD_COLOURS,
    FormatPicture,
    Throttle,
    compare_table_html,
    number_text,
)

__all__ = ["FloatExplorer"]


def _label(css: str) -> widgets.HTML:
    label = widgets.HTML()
    label.add_class(css)
    return label


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
        self.format_dropdown = widgets.Dropdown(options=list(FORMATS), value=fmt, description="format")
        self.value_text = widgets.Text(value=str(value), description="value", continuous_update=False)
        self.overflow_toggle = widgets.ToggleButtons(options=list(OVERFLOW_POLICIES), value=overflow)
        self.overflow_toggle.style.button_width = "80px"
        self.absmax_text = widgets.FloatText(value=absmax, description="block absmax", step=0.1)
        self.bit_buttons: list[widgets.Button] = []
        self.bits_box = widgets.HBox(layout=widgets.Layout(flex_flow="row nowrap"))
        self.fields_label = _label("lorakit-fields")
        self.value_label, self.class_label = _label("lorakit-value"), _label("lorakit-class")
        self.hex_label, self.formula_label = _label("lorakit-hex"), _label("lorakit-formula")
        self.rounding_label, self.neighbours_label = _label("lorakit-rounding"), _label("lorakit-neighbours")
        self.note_label, self.error_label = _label("lorakit-note"), _label("lorakit-error")
        self.compare_html = _label("lorakit-compare")
        self.picture = widgets.Image(format="png", layout=widgets.Layout(max_width="720px"))
        self.picture.add_class("lorakit-picture")
        self.explanation: Explanation | None = None
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
        controls = widgets.HBox([self.format_dropdown, self.value_text, self.overflow_toggle, self.absmax_text])
        details = widgets.VBox([self.value_label, self.class_label, self.hex_label, self.formula_label,
                                self.rounding_label, self.neighbours_label, self.note_label])  # fmt: skip
        super().__init__([controls, self.fields_label, self.bits_box, self.error_label, details,
                          self.compare_html, self.picture])  # fmt: skip
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
        if self.explanation is None or self.explanation.format != self.format_dropdown.value:
            return  # the current input does not parse: there are no bits to flip yet
        position = self.bit_buttons.index(button)
        code = self.explanation.code ^ (1 << (len(self.bit_buttons) - 1 - position))
        self._source = f"0x{code:X}"
        self._refresh()
        self._set_text(repr(self.explanation.stored))  # the text box shows the value the bits now make

    # ----- the one refresh --------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Explain the current source in the current format and show it everywhere; bad input -> message."""
        fmt = get_format(self.format_dropdown.value)
        self.absmax_text.layout.display = "none" if fmt.is_float else ""
        self.overflow_toggle.layout.display = "" if fmt.is_float else "none"
        try:
            e = explain(self._source, fmt, overflow=self.overflow_toggle.value, absmax=self.absmax_text.value)
        except ValueError as err:
            self.error_label.value = f'<span style="color:#b03a2e">⚠ {html.escape(str(err))}</span>'
            return
        self.error_label.value = ""
        self.explanation = e
        self._show_bits(e)
        self._show_details(e)
        self.compare_html.value = compare_table_html(self._compare_rows(e), fmt.name)
        self.picture_throttle.request()

    def _compare_rows(self, e: Explanation) -> dict:
        typed = self._source
        if _is_bit_pattern(typed, get_format(e.format)):
            typed = repr(e.stored)  # compare the value the bits make, not the pattern
        return explain_all(typed, overflow=self.overflow_toggle.value, absmax=self.absmax_text.value)

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
            button = widgets.Button(description="0", tooltip=f"bit {fmt.bits - 1 - position}: {field}",
                                    layout=widgets.Layout(width="24px", height="30px", padding="0"))  # fmt: skip
            button.style.button_color = FIELD_COLOURS[field]
            button.add_class("lorakit-bit")
            button.add_class(f"lorakit-bit-{field}")
            button.on_click(self._on_bit_change)
            buttons.append(button)
        self.bit_buttons = buttons
        self.bits_box.children = buttons
        legend = " ".join(
            f'<span style="background:{FIELD_COLOURS[name]};padding:1px 6px">{name} ({width})</span>'
            for name, width in fmt.field_widths.items()
        )
        note = " — TF32 is a matmul compute mode, not a storage type" if fmt.compute_only else ""
        self.fields_label.value = f"<b>{fmt.name}</b>, {fmt.bits} bits: {legend}{html.escape(note)}"

    def _show_bits(self, e: Explanation) -> None:
        for button, bit in zip(self.bit_buttons, e.bits, strict=True):
            if button.description != bit:  # only changed bits cross the comm
                button.description = bit
                button.style.font_weight = "bold" if bit == "1" else "normal"

    def _show_details(self, e: Explanation) -> None:
        self.value_label.value = f"<b>stored</b> {html.escape(e.stored_exact)} <small>(exact decimal)</small>"
        self.class_label.value = f"<b>class</b> {e.value_class}"
        self.hex_label.value = f"<b>hex</b> {e.hex} &nbsp; <b>bits</b> {' '.join(e.field_bits.values())}"
        self.formula_label.value = f"<b>formula</b> {html.escape(e.formula)}"
        self.rounding_label.value = (
            f"<b>input</b> {html.escape(e.input_text)} &nbsp; <b>abs error</b> {number_text(e.abs_error, 6)}"
            f" &nbsp; <b>rel error</b> {number_text(e.rel_error, 6)}"
        )
        self.neighbours_label.value = (
            f"<b>next down</b> {number_text(e.next_down, 10)} &nbsp; <b>next up</b> {number_text(e.next_up, 10)}"
            f" &nbsp; <b>ULP</b> {number_text(e.ulp, 6)}"
        )
        self.note_label.value = f"<i>{html.escape(e.note)}</i>" if e.note else ""

    # ----- picture ------------------------------------------------------------------------------------------
    def _draw_picture(self) -> None:
        if self.explanation is not None:
            self.picture.value = self._painter.render(self.explanation)

    def flush_pictures(self) -> None:
        """Draw the picture now if a redraw is pending (the throttle would otherwise do it shortly)."""
        self.picture_throttle.flush()
