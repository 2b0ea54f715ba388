"""FloatExplorer driven through its state: set values, click bit buttons, read what it shows."""

from __future__ import annotations

import asyncio
import re
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import ml_dtypes
import numpy as np
import pytest

from lorakit.formats import FORMATS
from lorakit.widgets.float_explorer import FloatExplorer
from lorakit.widgets.format_views import LINE_SIZE, RANGE_SIZE, Throttle


@pytest.fixture(scope="module")
def explorer():
    return FloatExplorer(fmt="fp16", value="1")


def _bits(w: FloatExplorer) -> str:
    return "".join(b.description for b in w.bit_buttons)


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
    colours = {b.style.button_color for b in explorer.bit_buttons}
    assert len(colours) == 3
    assert all("lorakit-bit" in b._dom_classes for b in explorer.bit_buttons)
    assert "lorakit-float-explorer" in explorer._dom_classes


def test_clicking_a_bit_updates_everything_at_once(explorer):
    explorer.format_dropdown.value = "fp16"
    explorer.value_text.value = "1"
    explorer.bit_buttons[-1].click()  # least significant mantissa bit
    assert _bits(explorer) == "0011110000000001"
    assert explorer.value_text.value == "1.0009765625"
    assert "1.0009765625" in explorer.value_label.value and "0x3C01" in explorer.hex_label.value
    assert "(1 + 1/1024)" in explorer.formula_label.value and "normal" in explorer.class_label.value
    assert "abs error</b> 0" in explorer.rounding_label.value
    explorer.bit_buttons[0].click()  # sign
    assert explorer.explanation.stored == -1.0009765625 and explorer.value_text.value == "-1.0009765625"
    for position in range(1, 6):  # exponent all ones + mantissa 1: a NaN
        if explorer.bit_buttons[position].description == "0":
            explorer.bit_buttons[position].click()
    assert "nan" in explorer.class_label.value and explorer.value_text.value == "nan"


def test_typing_updates_the_bits_and_65520_is_inf_in_fp16(explorer):
    explorer.format_dropdown.value = "fp16"
    explorer.value_text.value = "65520"
    assert _bits(explorer) == "0111110000000000" and "inf" in explorer.class_label.value
    assert "65504" in explorer.note_label.value
    explorer.value_text.value = "0.1"
    assert "0.0999755859375" in explorer.value_label.value
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
    assert all(label.value == "" for label in w.detail_labels) and w.compare_html.value == ""
    assert w.pictures.layout.display == "none"


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
    assert "nan" in explorer.class_label.value
    explorer.overflow_toggle.value = "saturate"
    assert explorer.explanation.stored == 448.0 and "saturate" in explorer.note_label.value
    explorer.overflow_toggle.value = "standard"


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
    assert "nf4[11]" in explorer.formula_label.value
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


def test_pictures_are_pngs_drawn_at_twice_their_display_size_and_redrawn_in_place(explorer):
    explorer.format_dropdown.value = "fp16"
    explorer.value_text.value = "1"
    explorer.flush_pictures()
    first = explorer.picture.value
    for picture, css_width in ((explorer.picture, LINE_SIZE[0]), (explorer.range_picture, RANGE_SIZE[0])):
        assert picture.value[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", picture.value[16:24])  # the PNG's IHDR
        assert picture.layout.width == f"{css_width}px" and width == 2 * css_width  # device-pixel ratio 2
        assert picture.layout.height == "auto" and height > 0  # the aspect ratio is kept, never stretched
    explorer.bit_buttons[3].click()
    assert explorer.picture_throttle.pending  # no event loop here: the redraw waits for a flush
    explorer.flush_pictures()
    assert explorer.picture.value != first and not explorer.picture_throttle.pending


async def _until(condition, timeout_s: float = 10.0) -> None:
    """Yield to the event loop until condition() holds (bounded, so a loaded machine is only slower)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting on the event loop"
        await asyncio.sleep(0.01)


def test_throttle_defers_and_coalesces_requests_on_an_event_loop():
    runs = []  # monotonic time of each run

    async def bursts():
        throttle = Throttle(lambda: runs.append(time.monotonic()), interval_s=0.3)
        for _ in range(10):
            throttle.request()
        assert runs == []  # never inside the handler that asked ...
        await _until(lambda: len(runs) == 1)  # ... but right after it, once for the whole burst
        for _ in range(10):
            throttle.request()
        assert len(runs) == 1 and throttle.pending
        await _until(lambda: len(runs) == 2)
        await asyncio.sleep(0.05)
        assert len(runs) == 2 and not throttle.pending  # the second burst ran once ...
        assert runs[1] - runs[0] >= 0.3 - 1e-3  # ... and only after the interval had passed

    # A loop of its own in a worker thread: in the full suite, Playwright's sync API (the browser tests)
    # keeps an event loop running in the main thread, where asyncio.run() refuses to start.
    with ThreadPoolExecutor(max_workers=1) as worker:
        worker.submit(asyncio.run, bursts()).result()


def test_drawing_functions_draw_the_data_they_are_given():
    from lorakit.viz.formats import RangeRow, draw_codebook, draw_number_line, draw_range_chart, make_panel

    _, top = make_panel(460, 190, (0.05, 0.95, 0.3, 0.8))
    draw_number_line(top, [0.5, 1.0, 1.5], stored=1.0, input_value=1.1, title="t")
    stored_line = [c for c in top.collections if c.get_label().startswith("stored")]
    assert len(stored_line) == 1 and stored_line[0].get_segments()[0][0][0] == 1.0
    assert [t.get_text() for t in top.get_xticklabels()] == ["0.5", "1", "1.5"]
    _, bottom = make_panel(460, 330, (0.25, 0.95, 0.15, 0.9))
    rows = [RangeRow("fp16", 2.0**-24, 2.0**-14, 65504.0, 3.31), RangeRow("nf4", 0.08, 0.08, 1.0, 0.9, True)]
    draw_range_chart(bottom, rows, highlight="fp16", value=100.0)
    assert bottom.get_xscale() == "log" and len(bottom.collections) == 2 * len(rows)
    assert [t.get_text() for t in bottom.get_yticklabels()] == ["fp16", "nf4 (×absmax)"]
    levels = [float(v) * 2 for v in FORMATS["nf4"].levels]
    draw_codebook(top, levels, chosen=9, value=0.3, absmax=2.0)
    chosen = [c for c in top.collections if c.get_label().startswith("level 9")]
    assert len(chosen) == 1 and chosen[0].get_segments()[0][0][0] == levels[9]


def test_a_format_says_which_quantization_options_store_their_codes_in_it():
    """The FloatExplorer links each format to the trainer's options that store weights in it (their records)."""
    import html

    from lorakit.quantization import QUANTIZATIONS

    for name, q in QUANTIZATIONS.items():
        if q.code_format:
            shown = html.unescape(FloatExplorer(q.code_format).fields_label.value)
            assert f"quantization={name!r} stores {q.stores}" in shown
    assert "quantization=" not in FloatExplorer("fp16").fields_label.value
