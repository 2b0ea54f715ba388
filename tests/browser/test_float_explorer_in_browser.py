"""The FloatExplorer as a person sees it in JupyterLab: at 900 px and 1,400 px with the file browser open, and
at 700 px without it (Colab's narrow column).

What only a browser can show: controls that wrap instead of being cut off, descriptions that are not cut,
numbers that never break in the middle, the table and the pictures inside the widget (the table scrolls in
its own box with the format names fixed; every label inside its picture), the value, the bits and the number
line on one 900 px screen, and a bad input that leaves nothing on screen describing an earlier value.
"""

from __future__ import annotations

import pytest
from labdriver import (
    LAYOUTS,
    cut_problems,
    open_notebook,
    run_all_cells,
    screenshot,
    show_file_browser,
    wait_all_cells_done,
    widget_problems,
    write_notebook,
)
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = ["from lorakit import FloatExplorer\nFloatExplorer(fmt='fp32', value='0.1')"]

# Everything measured in one pass in the page: boxes against the output area, labels that overflow their
# box (ipywidgets cuts them with an ellipsis), and every number in the details and the compare table that the
# browser laid out over more than one line (found in the text itself, whatever the markup around it).
_MEASURE_JS = r"""(root) => {
  const box = (el) => el.getBoundingClientRect();
  // What the person can see: the output column, within the notebook's panel (a wide widget widens the
  // output area itself, and the panel then cuts it off).
  const output = box(root.closest('.jp-OutputArea-output'));
  const panel = box(root.closest('.jp-NotebookPanel') || document.body);
  const area = {right: Math.min(output.right, panel.right)};
  const name = (el) => (el.className || el.tagName).toString().slice(0, 60) + ': ' + el.textContent.slice(0, 30);
  const shown = (el) => el.offsetParent !== null;  // not display:none
  const controls = [...root.querySelectorAll('select, input, button')].filter(shown);
  const squeezed = [...root.querySelectorAll('.lorakit-bit')].filter(el => box(el).width < 20).length;
  const labels = [...root.querySelectorAll('.widget-label, .widget-toggle-button, .lorakit-controls button')];
  const broken = [];
  const places = '.lorakit-value, .lorakit-hex, .lorakit-rounding, .lorakit-neighbours, .lorakit-compare-table td';
  for (const place of root.querySelectorAll(places)) {
    const walker = document.createTreeWalker(place, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.textContent.matchAll(/[-+\u2212]?\d[\d.]*(?:e[-+\u2212]?\d+)?/gi)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (tops.size > 1) broken.push(m[0]);
      }
    }
  }
  const view = box(root.closest('.jp-WindowedPanel-outer') || document.body);
  const top = box(root.querySelector('.lorakit-controls')).top;
  return {
    areaRight: area.right,
    outside: controls.filter(el => box(el).right > area.right + 0.5).map(name),
    squeezedBits: squeezed,
    cutLabels: labels.filter(el => el.scrollWidth > el.clientWidth + 1).map(name),
    brokenNumbers: broken,
    pictures: [...root.querySelectorAll('svg')].map(svg => svg.getAttribute('aria-label')),
    // from the top of the controls to the bottom of the value line, the bits and the number line
    firstScreen: Math.max(...['.lorakit-value', '.lorakit-bit', '.lorakit-picture svg'].map(
      sel => Math.max(...[...root.querySelectorAll(sel)].map(el => box(el).bottom)))) - top,
    viewHeight: view.height,
    tableScrolls: (s => s.scrollWidth > s.clientWidth + 1)(root.querySelector('.lorakit-compare .lorakit-scroll')),
  };
}"""


def _open_at(page, lab_server, width: int, name: str, browser_open: bool = True):
    """A scratch notebook run at ``width`` x 900 px with the file browser open or closed; returns the widget root.

    Each test writes its own notebook: rewriting one that an earlier page had open races with its saving.
    (labdriver's saved_errors is not used: polling the file while the page saves large widget state can
    read it half-written, and an error output already fails wait_all_cells_done.)
    """
    page.set_viewport_size({"width": width, "height": 900})
    write_notebook(lab_server.root / name, CELLS)
    open_notebook(page, lab_server, name)
    run_all_cells(page)
    wait_all_cells_done(page, lab_server, name, timeout_s=120)
    assert widget_problems(page) == []
    show_file_browser(page, browser_open)
    root = page.locator(".lorakit-float-explorer")
    expect(root.locator(".lorakit-hex")).to_contain_text("0x3DCCCCCD")
    expect(root.locator(".lorakit-picture svg")).to_be_visible()
    return root


@pytest.mark.parametrize(("width", "browser_open"), LAYOUTS)
def test_float_explorer_layout(lab_server, page, artifacts, width, browser_open):
    root = _open_at(page, lab_server, width, f"scratch_float_layout_{width}.ipynb", browser_open)
    root.locator(".lorakit-controls").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    m = root.evaluate(_MEASURE_JS)
    problems = [f"cut: {p}" for p in cut_problems(root)]
    screenshot(page, root, artifacts / f"float_explorer_{width}px.png")
    root.locator("select").first.select_option("nf4")  # a block format: its absmax is the one that matters
    expect(root.locator(".lorakit-formula")).to_contain_text("nf4[")
    m_nf4 = root.evaluate(_MEASURE_JS)
    problems += [f"nf4: {what}: {m_nf4[what]}" for what in ("outside", "cutLabels", "brokenNumbers") if m_nf4[what]]
    problems += [f"nf4, cut: {p}" for p in cut_problems(root)]
    if m["outside"]:
        problems.append(f"cut off at the right edge ({m['areaRight']} px): {m['outside']}")
    if m["squeezedBits"]:
        problems.append(f"{m['squeezedBits']} bit buttons squeezed narrower than 20 px")
    if m["cutLabels"]:
        problems.append(f"labels cut by their box: {m['cutLabels']}")
    if m["brokenNumbers"]:
        problems.append(f"numbers broken over two lines: {m['brokenNumbers']}")
    if m["tableScrolls"] and width >= 1400:  # room for the whole table: it has a row of its own if need be
        problems.append("the compare table scrolls at 1,400 px")
    if len(m["pictures"]) != 2:
        problems.append(f"{len(m['pictures'])} pictures, not 2 (number line, range chart): {m['pictures']}")
    if m["firstScreen"] > m["viewHeight"]:  # issue 24: the bits and the number line were never on one screen
        problems.append(f"value, bits and number line take {m['firstScreen']:.0f} px of a {m['viewHeight']:.0f} px view")
    assert not problems, "\n".join(problems)


def test_bad_input_leaves_no_view_of_the_old_value(lab_server, page, artifacts):
    root = _open_at(page, lab_server, 1400, "scratch_float_bad_input.ipynb")
    value_box = root.get_by_role("textbox", name="value", exact=True)
    root.locator("select").first.select_option("fp16")
    expect(root.locator(".lorakit-hex")).to_contain_text("0x2E66")  # 0.1 in fp16
    value_box.fill("abc")
    value_box.press("Enter")
    expect(root.locator(".lorakit-error")).to_contain_text("fp16: not a number")
    root.locator("select").first.select_option("bf16")  # another format while the input is bad
    expect(root.locator(".lorakit-error")).to_contain_text("bf16: not a number")
    expect(root.locator(".lorakit-bit")).to_have_count(16)
    for bit in root.locator(".lorakit-bit").all():
        expect(bit).to_be_disabled()
        expect(bit).to_have_text("·")
    for css in ("lorakit-value", "lorakit-formula", "lorakit-hex", "lorakit-rounding", "lorakit-compare-table"):
        expect(root.locator(f".{css}")).to_have_count(0)  # emptied, not hidden with the old value inside
    expect(root.locator(".lorakit-details")).to_be_hidden()
    expect(root.locator(".lorakit-picture")).to_be_hidden()
    screenshot(page, root, artifacts / "float_explorer_bad_input.png")
    value_box.fill("2")
    value_box.press("Enter")
    expect(root.locator(".lorakit-hex")).to_contain_text("0x4000")
    expect(root.locator(".lorakit-error")).to_have_text("")
    expect(root.locator(".lorakit-picture svg")).to_be_visible()
    expect(root.locator(".lorakit-bit").first).to_be_enabled()
