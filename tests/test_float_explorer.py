"""FloatExplorer driven through its state: set values, click bit buttons, read what it shows."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import ml_dtypes
import numpy as np
import pytest

from lorakit.formats import FORMATS
from lorakit.widgets.float_explorer import FloatExplorer
from lorakit.widgets.format_views import FIELD_COLOURS

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def explorer():
    return FloatExplorer(fmt="fp16", value="1")


def _bits(w: FloatExplorer) -> str:
    return "".join(b.description for b in w.bit_buttons)


def _part(w: FloatExplorer, name: str) -> str:
    """The HTML of one line of the details (``div.lorakit-<name>``)."""
    found = re.search(rf'<div class="lorakit-{name}"[^>]*>(.*?)</div>', w.details_html.value)
    return found.group(1) if found else ""


def _table_rows(table_html: str) -> dict[str, list[str]]:
    """Cells of each row of the compare table, keyed by format name (header row dropped)."""
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table_html)[1:]:
        cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        rows[cells[0].split(" ")[0]] = cells
    return rows


def test_bits_are_buttons_coloured_by_field(explorer):
    explorer.format_dropdown.value = "fp16"
    explorer.value_text.value = "1"
    assert _bits(explorer) == "0011110000000000" and len(explorer.bit_buttons) == 16
    fields = [next(c for c in b._dom_classes if c.startswith("lorakit-bit-")) for b in explorer.bit_buttons]
    assert fields == ["lorakit-bit-sign"] + ["lorakit-bit-exponent"] * 5 + ["lorakit-bit-mantissa"] * 10
    # colours by class (one message per button on a format change), drawn by rules in the fields line
    rules = dict(re.findall(r"\.lorakit-bit\.lorakit-bit-(\w+)\{background-color:(#\w+)\}", explorer.fields_label.value))
    assert set(rules) == set(FIELD_COLOURS) and len({rules[f] for f in ("sign", "exponent", "mantissa")}) == 3
    assert all("lorakit-bit" in b._dom_classes for b in explorer.bit_buttons)
    assert "lorakit-float-explorer" in explorer._dom_classes


def test_clicking_a_bit_updates_everything_at_once(explorer):
    explorer.format_dropdown.value = "fp16"
    explorer.value_text.value = "1"
    explorer.bit_buttons[-1].click()  # least significant mantissa bit
    assert _bits(explorer) == "0011110000000001"
    assert explorer.value_text.value == "1.0009765625"
    details = explorer.details_html.value
    assert re.search(r'class="lorakit-value"[^>]*><b>stored</b> <span[^>]*>1.0009765625<', details)
    assert re.search(r'class="lorakit-hex"[^>]*><b>hex</b> 0x3C01', details)
    assert "(1 + 1/1024)" in details and re.search(r'class="lorakit-class"[^>]*><b>class</b> normal<', details)
    assert "abs error</b> 0" in details
    explorer.bit_buttons[0].click()  # sign
    assert explorer.explanation.stored == -1.0009765625 and explorer.value_text.value == "-1.0009765625"
    for position in range(1, 6):  # exponent all ones + mantissa 1: a NaN
        if explorer.bit_buttons[position].description == "0":
            explorer.bit_buttons[position].click()
    assert "nan" in _part(explorer, "class") and explorer.value_text.value == "nan"


def test_typing_updates_the_bits_and_65520_is_inf_in_fp16(explorer):
    explorer.format_dropdown.value = "fp16"
    explorer.value_text.value = "65520"
    assert _bits(explorer) == "0111110000000000" and "inf" in _part(explorer, "class")
    assert "65504" in _part(explorer, "note")
    explorer.value_text.value = "0.1"
    assert "0.0999755859375" in _part(explorer, "value")
    assert explorer.explanation.code == int(np.array([0.1], np.float16).view(np.uint16)[0])


def test_bad_input_shows_the_message_and_empties_every_view(explorer):
    explorer.format_dropdown.value = "fp16"
    explorer.value_text.value = "2"
    explorer.value_text.value = "abc"
    assert "fp16: not a number or bit pattern: &#x27;abc&#x27;; allowed:" in explorer.error_label.value
    assert "lorakit-error" in explorer.error_label._dom_classes
    _assert_emptied(explorer)  # nothing on screen still describes 2
    explorer.bit_buttons[-1].click()  # disabled, and does nothing
    assert explorer.explanation is None and explorer.value_text.value == "abc"
    explorer.value_text.value = "0b0101"
    assert "bit string has 4 bits, the format has 16" in explorer.error_label.value
    explorer.value_text.value = "0x4000"  # a typed pattern stays as typed; the bits and value follow it
    assert explorer.error_label.value == "" and explorer.explanation.stored == 2.0
    assert explorer.value_text.value == "0x4000" and _bits(explorer) == "0100000000000000"
    assert not any(b.disabled for b in explorer.bit_buttons) and explorer.pictures.layout.display == ""
    explorer.format_dropdown.value = "bf16"  # a pattern of another width is carried over as its value
    assert explorer.value_text.value == "2.0" and explorer.explanation.code == 0x4000


def _assert_emptied(w: FloatExplorer) -> None:
    assert w.explanation is None and w.error_label.value
    assert all(b.disabled and b.description == "·" for b in w.bit_buttons)
    assert w.details_html.value == w.compare_html.value == w.picture.value == ""
    assert w.pictures.layout.display == w.explanation_box.layout.display == "none"


def test_compare_view_shows_every_format(explorer):
    explorer.format_dropdown.value = "bf16"
    explorer.value_text.value = "3e38"
    table = explorer.compare_html.value
    rows = _table_rows(table)
    assert list(rows) == list(FORMATS)
    bf16 = float(np.array([3e38]).astype(ml_dtypes.bfloat16)[0])
    assert rows["bf16"][1:] == ["16", f"{bf16:.10g}", "4.06e+35", "0.00135", "normal"]  # keeps 3e38, 3 digits
    assert rows["fp16"][2] == "inf" and rows["fp16"][5] == "inf"
    explorer.value_text.value = "65520"
    rows = _table_rows(explorer.compare_html.value)
    assert rows["fp16"][2] == "inf" and rows["bf16"][2] == "65536" and rows["fp32"][2] == "65520"


def test_overflow_policy_toggle(explorer):
    explorer.format_dropdown.value = "fp8_e4m3fn"
    explorer.value_text.value = "500"
    assert "nan" in _part(explorer, "class")
    explorer.overflow_toggle.value = "saturate"
    assert explorer.explanation.stored == 448.0 and "saturate" in _part(explorer, "note")
    explorer.overflow_toggle.value = "standard"


def test_a_format_change_reuses_the_bit_buttons(explorer, monkeypatch):
    """No widget is created on a format change (a new Button is three new widgets for the browser to build):
    the first n of one pool of buttons are shown, re-labelled and re-classed."""
    import ipywidgets

    explorer.format_dropdown.value = "fp16"
    pool = list(explorer._bit_pool)
    created = []
    monkeypatch.setattr(ipywidgets.Widget, "open", lambda self: created.append(self))
    for name in ("fp32", "nf4", "fp8_e4m3fn", "fp16"):
        explorer.format_dropdown.value = name
        assert explorer.bit_buttons == pool[: FORMATS[name].bits] and list(explorer.bits_box.children) == pool[
            : FORMATS[name].bits]
    assert created == []
    assert [b.tooltip for b in explorer.bit_buttons[:2]] == ["bit 15: sign", "bit 14: exponent"]


def test_format_change_keeps_the_value_and_rebuilds_the_bits(explorer):
    explorer.format_dropdown.value = "fp16"
    explorer.value_text.value = "1"
    explorer.bit_buttons[-1].click()  # now a bit pattern of fp16 ...
    explorer.format_dropdown.value = "fp32"  # ... carried over as its value
    assert len(explorer.bit_buttons) == 32 and explorer.explanation.stored == 1.0009765625
    explorer.format_dropdown.value = "tf32"
    assert len(explorer.bit_buttons) == 19 and "compute mode" in explorer.fields_label.value


def test_codebook_view_uses_the_block_absmax(explorer):
    explorer.format_dropdown.value = "nf4"
    explorer.value_text.value = "0.3"
    assert "nf4[11]" in _part(explorer, "formula")
    explorer.absmax_text.value = 2.0
    assert explorer.explanation.code == 9 and explorer.explanation.stored == float(
        np.float32(FORMATS["nf4"].levels[9]) * np.float32(2.0)
    )
    explorer.bit_buttons[0].click()  # index 9 -> 1: a negative level
    assert explorer.explanation.code == 1 and explorer.explanation.stored < 0
    explorer.absmax_text.value = -1.0
    assert "absmax: -1.0 is not allowed" in explorer.error_label.value
    explorer.absmax_text.value = 1.0
    assert explorer.error_label.value == ""


def test_pictures_are_svgs_redrawn_in_the_same_update_as_the_text(explorer):
    """SVG strings in HTML widgets: as wide as drawn (460 CSS px), narrower only with a narrower column, and
    redrawn by the click itself: no throttle, no flush."""
    explorer.format_dropdown.value = "fp16"
    explorer.value_text.value = "1"
    first = explorer.picture.value
    for picture in (explorer.picture, explorer.range_picture):
        root = ET.fromstring(picture.value)
        assert root.tag == f"{SVG}svg" and root.get("width") == "460" and "max-width:100%" in root.get("style")
        assert root.get("viewBox") == f"0 0 460 {root.get('height')}"  # scales down, never stretched
        assert picture.layout.min_width == "0" and picture.layout.max_width == "100%"
    explorer.bit_buttons[3].click()
    assert explorer.picture.value != first and "0x2C00" in _part(explorer, "hex")  # 0x3C00 ^ 1 << 12


def test_a_bit_click_sends_one_update_per_widget(explorer, record_updates):
    """hold_sync: one message per widget that changed (the flipped bit, the text box, the details, the picture,
    the table), never one per trait; the bits that did not flip send nothing."""
    explorer.format_dropdown.value, explorer.value_text.value = "fp16", "1"
    sent = record_updates()
    explorer.bit_buttons[-1].click()
    assert len(sent) == len(set(sent)), "a widget sent more than one update"
    views = {explorer.bit_buttons[-1], explorer.value_text, explorer.details_html, explorer.picture,
             explorer.compare_html}
    assert {w.model_id for w in views} <= set(sent)
    assert not {b.model_id for b in explorer.bit_buttons[:-1]} & set(sent)
    assert "lorakit-one" in explorer.bit_buttons[-1]._dom_classes  # a 1 is bold through its class


def test_drawing_functions_draw_the_data_they_are_given():
    from lorakit.viz.format_svg import RangeRow, codebook_svg, number_line_svg, range_chart_svg

    def parse(svg):
        root = ET.fromstring(svg)
        return root, ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]

    root, texts = parse(number_line_svg([0.5, 1.0, 1.5], stored=1.0, input_value=1.1, title="t"))
    assert texts[0] == "t" and texts[-3:] == ["0.5", "1", "1.5"] and "input" in texts
    ticks = [float(ln.get("x1")) for ln in root.iter(f"{SVG}line") if ln.get("stroke-width") == "1.5"]
    stored = [float(ln.get("x1")) for ln in root.iter(f"{SVG}line") if ln.get("stroke-width") == "3"]
    assert stored == [ticks[1]] and ticks[0] < ticks[1] < ticks[2]  # the stored line sits on the tick of 1.0
    assert ticks[1] - ticks[0] == pytest.approx(ticks[2] - ticks[1], abs=0.02)  # a linear axis
    _, texts = parse(range_chart_svg([RangeRow("fp16", 2.0**-24, 2.0**-14, 65504.0, 3.31),
                                      RangeRow("nf4", 0.08, 0.08, 1.0, 0.9, True)], highlight="fp16", value=100.0))
    assert "fp16" in texts and "nf4 (×absmax)" in texts and "|value| = 100" in texts and "3.3" in texts
    levels = [float(v) * 2 for v in FORMATS["nf4"].levels]
    root, texts = parse(codebook_svg(levels, chosen=9, value=0.3, absmax=2.0))
    assert f"level 9: {levels[9]:.6g}" in texts and "input 0.3" in texts
    chosen = [float(ln.get("x1")) for ln in root.iter(f"{SVG}line") if ln.get("stroke-width") == "3"]
    level_lines = [float(ln.get("x1")) for ln in root.iter(f"{SVG}line") if ln.get("stroke-width") == "1.5"]
    assert len(level_lines) == 16 and chosen == [level_lines[9]]


def test_a_format_says_which_quantization_options_store_their_codes_in_it():
    """The FloatExplorer links each format to the trainer's options that store weights in it (their records)."""
    import html

    from lorakit.quantization import QUANTIZATIONS

    for name, q in QUANTIZATIONS.items():
        if q.code_format:
            shown = html.unescape(FloatExplorer(q.code_format).fields_label.value)
            assert f"quantization={name!r} stores {q.stores}" in shown
    assert "quantization=" not in FloatExplorer("fp16").fields_label.value
