"""FloatExplorer: one state drives every view, and what each view says is what a person needs to read.

Driven through widget state (no browser): the layout itself is checked in tests/browser/.
"""

from __future__ import annotations

import functools
import html
import re
import time
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lorakit.formats import FORMATS, explain
from lorakit.widgets.float_explorer import NO_BIT, FloatExplorer
from lorakit.widgets.format_views import number_text

SVG = "{http://www.w3.org/2000/svg}"


@functools.cache
def _shared_explorer() -> FloatExplorer:
    return FloatExplorer(fmt="fp16", value="1")


def _reset(w: FloatExplorer) -> FloatExplorer:
    w.format_dropdown.value, w.overflow_toggle.value, w.absmax_text.value = "fp16", "standard", 1.0
    w.value_text.value = "1"
    return w


@pytest.fixture
def explorer() -> FloatExplorer:
    """One widget for the module (building one draws its pictures), reset to fp16 1 for each test."""
    return _reset(_shared_explorer())


def _bits(w: FloatExplorer) -> str:
    return "".join(b.description for b in w.bit_buttons)


def _text(label) -> str:
    """What a label shows, tags dropped and entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", label.value))


def _part(w: FloatExplorer, name: str) -> str:
    """What one line of the details shows (``div.lorakit-<name>``), tags dropped and entities decoded."""
    found = re.search(rf'<div class="lorakit-{name}"[^>]*>(.*?)</div>', w.details_html.value)
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))) if found else ""


def _compare_cell(w: FloatExplorer, name: str, column: int) -> str:
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", w.compare_html.value)[1:]:
        cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        if cells[0].split(" ")[0] == name:
            return cells[column]
    raise AssertionError(f"no row for {name}")


def assert_one_state(w: FloatExplorer, draw: bool = True) -> None:
    """Every view shows explain() of the widget's one state, or every view is empty and the error is shown.

    ``draw``: also draw the pending pictures and check what they show (the slow part: ~0.1-0.3 s).
    """
    fmt = w.format_dropdown.value
    try:
        want = explain(w._source, fmt, overflow=w.overflow_toggle.value, absmax=w.absmax_text.value)
    except ValueError as err:
        assert _text(w.error_label).endswith(str(err))
        assert w.explanation is None
        assert all(b.disabled and b.description == NO_BIT for b in w.bit_buttons)
        assert w.details_html.value == "" and w.compare_html.value == ""
        assert w.pictures.layout.display == "none" and w.explanation_box.layout.display == "none"
        return
    assert w.error_label.value == "" and w.explanation.format == fmt == want.format
    assert (w.explanation.code, w.explanation.input_text) == (want.code, want.input_text)
    assert _bits(w) == want.bits and not any(b.disabled for b in w.bit_buttons)
    assert len(w.bit_buttons) == FORMATS[fmt].bits
    assert want.stored_exact in _part(w, "value") and want.hex in _part(w, "hex")
    assert _part(w, "formula") == f"formula {want.formula}" and want.value_class in _part(w, "class")
    assert f"abs error {number_text(want.abs_error, 6)}" in _part(w, "rounding")
    assert _compare_cell(w, fmt, 2) == number_text(want.stored, 10)  # the table's row for this format
    assert f"block absmax {float(w.absmax_text.value):g}" in _text(w.compare_html)
    assert w.pictures.layout.display == "" and w.explanation_box.layout.display == ""
    if not draw:
        return
    title = ET.fromstring(w.picture.value).get("aria-label")  # drawn in the same update as the text
    assert title.startswith(f"{fmt}:") if FORMATS[fmt].is_float else "levels × absmax" in title


def test_abc_then_another_format_leaves_no_view_describing_the_old_value(explorer):
    explorer.format_dropdown.value = "fp16"
    explorer.value_text.value = "-33824"
    explorer.value_text.value = "abc"
    explorer.format_dropdown.value = "bf16"
    assert_one_state(explorer)
    assert "33824" not in explorer.compare_html.value + explorer.details_html.value + explorer.picture.value
    explorer.bit_buttons[3].click()  # disabled: nothing happens, and nothing pretends otherwise
    assert_one_state(explorer)
    explorer.value_text.value = "2"
    assert_one_state(explorer)
    assert _bits(explorer) == "0100000000000000"


ACTIONS = st.one_of(
    st.tuples(st.just("format"), st.sampled_from(list(FORMATS))),
    st.tuples(
        st.just("type"),
        st.one_of(
            st.sampled_from(["abc", "", "1", "-0", "0.1", "65520", "nan", "-inf", "0x3C00", "0b0101", "0x7",
                             "1e-99999999", "1e400", "1/3", "0.001", "-0.001", "1" * 1200]),  # fmt: skip
            st.floats().map(repr),
        ),
    ),
    st.tuples(st.just("bit"), st.integers(0, 31)),
    st.tuples(st.just("overflow"), st.sampled_from(["standard", "saturate"])),
    st.tuples(st.just("absmax"), st.sampled_from([1.0, 2.0, 0.5, -1.0, 0.0, 1e-50, 3.0e38])),
)


@settings(max_examples=20, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(ACTIONS, min_size=1, max_size=8))
@example(actions=[("format", "int8"), ("absmax", 3e38), ("bit", 0)])  # code -128: the table showed -127
def test_any_sequence_of_actions_keeps_one_state_in_every_view(actions):
    explorer = _reset(_shared_explorer())  # not a fixture argument: hypothesis would print the whole widget
    for kind, arg in actions:
        if kind == "format":
            explorer.format_dropdown.value = arg
        elif kind == "type":
            explorer.value_text.value = arg
        elif kind == "bit":
            explorer.bit_buttons[arg % len(explorer.bit_buttons)].click()
        elif kind == "overflow":
            explorer.overflow_toggle.value = arg
        else:
            explorer.absmax_text.value = arg
        assert_one_state(explorer)


def test_number_line_ticks_tell_the_values_apart(explorer):
    for fmt, value in (("fp32", "0.1"), ("fp32", "1e-8"), ("fp32", "3e38"), ("fp16", "1"), ("bf16", "100")):
        explorer.format_dropdown.value = fmt
        explorer.value_text.value = value
        root = ET.fromstring(explorer.picture.value)
        texts = list(root.iter(f"{SVG}text"))
        labels = ["".join(t.itertext()) for t in texts if "rotate" in (t.get("transform") or "")]
        assert len(labels) == 7 and len(set(labels)) == 7, (fmt, value, labels)
        if fmt == "fp32" and value == "0.1":  # every neighbour reads 0.1: offsets from the stored value
            assert "offset from the stored value 0.10000000149011612" == "".join(texts[-1].itertext())
            assert labels[3] == "0" and labels[4] == "+7.45e\u221209" and labels[2] == "\u22127.45e\u221209"


@settings(deadline=None, database=None)  # examples: the Hypothesis profile (tests/conftest.py)
@given(fmt=st.sampled_from([n for n, f in FORMATS.items() if f.is_float]), x=st.floats(allow_nan=False))
def test_number_line_labels_are_distinct_for_any_value(fmt, x):
    from lorakit.formats import values_around
    from lorakit.viz.format_svg import tick_labels

    e = explain(x, fmt)
    values = values_around(e, 3)
    if values:
        _, labels, _ = tick_labels(values, e.stored)
        assert len(set(labels)) == len(labels)


def test_controls_wrap_and_descriptions_are_never_cut(explorer):
    controls = explorer.children[0]
    assert controls.layout.flex_flow == "row wrap" and explorer.bits_box.layout.flex_flow == "row wrap"
    for control in (explorer.format_dropdown, explorer.value_text, explorer.absmax_text):
        assert control.style.description_width == "initial"  # as wide as "block absmax", not a fixed 100 px
    explorer.format_dropdown.value, explorer.value_text.value = "fp32", "0.1"
    assert "white-space:nowrap" in explorer.compare_html.value and "overflow-x:auto" in explorer.compare_html.value
    neighbours = re.search(r'<div class="lorakit-neighbours".*?</div>', explorer.details_html.value).group(0)
    assert "white-space:nowrap" in neighbours  # "ULP 7.45058e-09" stays on one line


def test_block_absmax_is_shown_wherever_it_applies(explorer):
    explorer.format_dropdown.value, explorer.value_text.value = "nf4", "0.3"
    explorer.absmax_text.value = 2.0
    explorer.format_dropdown.value = "fp32"  # the compare table's block rows still use absmax 2 ...
    assert explorer.absmax_text.layout.display in (None, "")  # ... so the box stays on screen
    assert "nf4, bnb_fp4, int8, int4, int2: block absmax 2" in _text(explorer.compare_html)
    at_2 = explain("0.3", "nf4", absmax=2.0).stored
    assert _compare_cell(explorer, "nf4", 2) == number_text(at_2, 10) and at_2 != explain("0.3", "nf4").stored
    assert explorer.overflow_toggle.layout.display in (None, "")  # the policy applies to the table too
    explorer.absmax_text.value = 1.0


def test_bnb_fp4_signed_zero_is_said_on_screen(explorer):
    explorer.format_dropdown.value, explorer.value_text.value = "bnb_fp4", "0.001"
    assert _bits(explorer) == "0000" and "+0 (code 0b0000)" in _part(explorer, "note")
    assert "bitsandbytes' CUDA kernel" in _part(explorer, "note")
    explorer.value_text.value = "-0.001"
    assert _bits(explorer) == "1000" and "−0 (code 0b1000)" in _part(explorer, "note")


def test_small_wordings_an_8_bit_pattern_and_a_nan_error(explorer):
    explorer.format_dropdown.value, explorer.value_text.value = "fp8_e4m3fn", "abc"
    assert "or an 8-bit pattern" in _text(explorer.error_label)
    explorer.value_text.value = "500"  # NaN in the standard policy: its error is NaN, not inf
    assert explorer.explanation.value_class == "nan"
    assert "abs error nan" in _part(explorer, "rounding") and "inf" not in _part(explorer, "rounding")
    assert _compare_cell(explorer, "fp8_e4m3fn", 3) == "nan"


@pytest.mark.parametrize(
    ("fmt", "text", "cls", "note"),
    [("fp32", "1e-99999999", "zero", "underflow"), ("fp32", "1e400", "inf", "overflow"),
     ("fp16", "1e-9999999", "zero", "underflow"), ("nf4", "1e400", "level", "clamped")],
)  # fmt: skip
def test_extreme_input_answers_at_once(explorer, fmt, text, cls, note):
    explorer.format_dropdown.value, explorer.value_text.value = fmt, "1"
    start = time.thread_time()
    explorer.value_text.value = text  # the explanation and the compare table (every format)
    assert time.thread_time() - start < 0.5
    assert explorer.explanation.value_class == cls and _part(explorer, "note").startswith(note)
    assert_one_state(explorer)


def test_specials_saturation_and_ulp_are_named_for_what_they_are(explorer):
    """Seen in a browser: "stored inf (exact decimal)", 65520 -> 6 in fp4_e2m1 classed plain "normal", and an
    "ULP" shown for NF4's unevenly spaced levels."""
    explorer.format_dropdown.value, explorer.value_text.value = "fp16", "65520"
    assert _part(explorer, "value") == "stored inf"  # a special value has no exact decimal
    assert _compare_cell(explorer, "fp16", 5) == "inf" and _compare_cell(explorer, "fp4_e2m1", 5) == "saturated"
    assert _compare_cell(explorer, "fp6_e2m3", 2) == "7.5" and _compare_cell(explorer, "fp6_e2m3", 5) == "saturated"
    assert _compare_cell(explorer, "fp32", 5) == "normal" and _compare_cell(explorer, "nf4", 5) == "clamped"
    explorer.format_dropdown.value = "fp4_e2m1"
    assert _part(explorer, "class") == "class normal, saturated" and _part(explorer, "note").startswith("overflow")
    explorer.value_text.value = "6"  # the largest value itself is not saturated
    assert _part(explorer, "class") == "class normal" and _compare_cell(explorer, "fp4_e2m1", 5) == "normal"
    explorer.format_dropdown.value, explorer.value_text.value = "bf16", "nan"
    assert _part(explorer, "value") == "stored nan"
    explorer.value_text.value = "0.1"
    assert _part(explorer, "value").endswith("(exact decimal)")
    assert f"ULP {number_text(2.0**-11, 6)}" in _part(explorer, "neighbours")  # 0.1 = 1.6 x 2^-4, 7 mantissa bits
    assert 'title="unit in the last place' in explorer.details_html.value
    explorer.format_dropdown.value, explorer.value_text.value = "nf4", "0.3"
    assert "ULP" not in _part(explorer, "neighbours") and "next up" in _part(explorer, "neighbours")
