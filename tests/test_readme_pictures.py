"""The README's pictures follow the code: every number an alt text states is one the widget shows now.

The pictures are the browser tests' own screenshots, copied by scripts/readme_pictures.py, which records with
each the text the widget showed (docs/img/pictures.json). Here, without a browser:

* each picture is the one its record describes (same SHA-256), and every number of its alt text is in that
  record: the alt text describes the picture;
* for the FloatExplorer and the LoraCalculator, the widget is built again in the state its browser test left
  it in, and every alt number is one it shows now, and what it shows now (the count, the advice, the bits) is
  in the record: the picture is of the current code. The TrainerPanel's numbers come from a training run,
  so its record is the oracle.

When this fails after a change to what a widget shows: .venv/bin/python scripts/readme_pictures.py, then
write the new numbers into the alt text.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RECORD = json.loads((ROOT / "docs" / "img" / "pictures.json").read_text(encoding="utf-8"))
PICTURES = dict((path, alt) for alt, path in re.findall(r"!\[([^\]]*)\]\((docs/img/[\w.]+\.png)\)", README))
# A number as a person reads it in an alt text: not part of a name (Llama-3.1-8B, L4, SmolLM2-135M, FP16).
ALT_NUMBER = re.compile(r"(?<![\w.\-])(\d[\d,]*)(?:\.(\d+))?(?![\w\-]|\.\d)")
ANY_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def alt_numbers(alt: str) -> list[tuple[float, int, str]]:
    """(value, decimals, as written) of every number the alt text states."""
    return [(float(m.group(1).replace(",", "") + (f".{m.group(2)}" if m.group(2) else "")), len(m.group(2) or ""),
             m.group(0)) for m in ALT_NUMBER.finditer(alt)]


def missing_numbers(alt: str, shown: str) -> list[str]:
    """The alt text's numbers that ``shown`` does not show (to the precision the alt text writes them)."""
    values = [float(n.replace(",", "")) for n in ANY_NUMBER.findall(shown)]
    return [written for value, decimals, written in alt_numbers(alt)
            if not any(abs(v - value) <= 0.5 * 10.0**-decimals + 1e-9 for v in values)]


def _text(markup: str) -> str:
    """HTML or SVG as the text a person reads (tags dropped, entities decoded, one line per element)."""
    return html.unescape(re.sub(r"<[^>]+>", "\n", markup))


def _svg_text(svg: str) -> str:
    return "\n".join("".join(t.itertext()) for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text"))


def float_explorer_now() -> tuple[str, list[str]]:
    """What the FloatExplorer shows in the state its browser test leaves it in (bf16 1, then fp16, then the
    last bit clicked), and the lines of it the picture must show."""
    from lorakit.widgets.float_explorer import FloatExplorer

    w = FloatExplorer(fmt="bf16", value="1")
    w.format_dropdown.value = "fp16"
    w.bit_buttons[-1].click()
    shown = "\n".join([w.value_text.value, _text(w.fields_label.value), _text(w.details_html.value),
                       _text(w.compare_html.value), _svg_text(w.picture.value)])
    return shown, [w.explanation.hex, w.explanation.stored_exact, w.explanation.formula]


def lora_calculator_now() -> tuple[str, list[str]]:
    """What the LoraCalculator shows as its browser test opens it, and the lines the picture must show."""
    from lorakit.widgets.lora_calculator import LoraCalculator

    calc = LoraCalculator("Llama-3.1-8B", r=16, gpu="L4 24 GB")
    gpu_label = next(label for label, value in calc.gpu_dropdown.options if value == calc.gpu_dropdown.value)
    shown = "\n".join([f"r={calc.rank.value}", gpu_label, _text(calc.trainable_label.value),
                       _text(calc.advice_label.value), _text(calc.comparison_table.value), _svg_text(calc.chart.value)])
    return shown, [f"trainable {calc.count.trainable_params:,}", calc.advice.sentence]


NOW = {"docs/img/float_explorer.png": float_explorer_now, "docs/img/lora_calculator.png": lora_calculator_now}


def test_the_number_reader():
    alt = "Llama-3.1-8B at r=16 on an L4 24 GB (22.5 GiB usable): LoRA 19.4 GiB, 1,024 wide; FP16 1.0009765625"
    assert [w for _, _, w in alt_numbers(alt)] == ["16", "24", "22.5", "19.4", "1,024", "1.0009765625"]
    assert missing_numbers("LoRA 19.4 GiB, r=16", "LoRA: 19.43 GiB\nr=16") == []
    assert missing_numbers("LoRA 19.4 GiB", "LoRA: 19.46 GiB") == ["19.4"]


def test_every_picture_has_its_record_and_is_the_recorded_one():
    assert set(PICTURES) == {"docs/img/float_explorer.png", "docs/img/lora_calculator.png",
                             "docs/img/trainer_panel.png"}
    for path in PICTURES:
        record = RECORD[Path(path).name]
        assert hashlib.sha256((ROOT / path).read_bytes()).hexdigest() == record["sha256"], (
            f"{path} is not the picture docs/img/pictures.json describes: run scripts/readme_pictures.py")


@pytest.mark.parametrize("path", sorted(PICTURES))
def test_alt_text_numbers_are_in_the_picture(path):
    alt, shows = PICTURES[path], RECORD[Path(path).name]["shows"]
    assert alt_numbers(alt), f"{path}: the alt text states no number"
    assert missing_numbers(alt, shows) == [], f"{path}: alt text numbers the picture does not show"


@pytest.mark.parametrize("path", sorted(NOW))
def test_alt_text_and_picture_show_what_the_widget_shows_now(path):
    pytest.importorskip("transformers")
    shown, key_lines = NOW[path]()
    assert missing_numbers(PICTURES[path], shown) == [], f"{path}: the alt text's numbers are no longer shown"
    recorded = RECORD[Path(path).name]["shows"]
    stale = [line for line in key_lines if line not in recorded]
    assert not stale, f"{path} shows older numbers than the widget does now: run scripts/readme_pictures.py"
