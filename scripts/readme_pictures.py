"""Make the README's pictures from the browser tests' own screenshots, and keep with each what it showed.

    .venv/bin/python scripts/readme_pictures.py                  # run the three browser tests, copy their shots
    .venv/bin/python scripts/readme_pictures.py --only float_explorer,lora_calculator
    .venv/bin/python scripts/readme_pictures.py --no-run         # copy what test-artifacts/ holds now

Each README picture is one browser test's screenshot (tests/browser/, headless Chromium, JupyterLab 4): the
script runs that test (one at a time: they are heavy on 2 cores), copies the screenshot to docs/img/ and
writes docs/img/pictures.json: for each picture the test it came from, the SHA-256 of the PNG and the text
the widget showed when it was taken (labdriver.screenshot saves it beside the PNG).
tests/test_readme_pictures.py then checks that every number in each picture's alt text is one the widget
shows now (for the FloatExplorer and the LoraCalculator, computed again from lorakit; for the TrainerPanel,
whose numbers come from a training run, the text saved with its picture), and that each PNG is the one its
record describes. When the code changes what a widget shows, that test fails until this script has run and
the alt text says the new numbers.

The TrainerPanel's picture is taken during a run (a tiny model, until two frames of the live plot have been
drawn): a minute or two.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
ARTIFACTS = ROOT / "test-artifacts"
RECORD = IMG / "pictures.json"
# README picture -> (the browser test that takes it, the screenshot it saves)
PICTURES = {
    "float_explorer": ("tests/browser/test_widgets_in_browser.py::test_float_explorer_bits_and_typed_values_round_trip",
                       "float_explorer.png"),
    "lora_calculator": ("tests/browser/test_widget_layout_in_browser.py::"
                        "test_lora_calculator_fits_and_lines_up[1400-True]", "lora_calculator_1400.png"),
    "trainer_panel": ("tests/browser/test_widgets_in_browser.py::test_trainer_panel_start_plot_stop_saves_adapter",
                      "trainer_panel.png"),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_test(node: str) -> None:
    """Run one browser test (it saves its screenshot and the text beside it in test-artifacts/)."""
    env = dict(os.environ, MPLBACKEND="Agg")
    env.setdefault("LORAKIT_CACHE_DIR", str(ROOT / ".cache" / "lorakit"))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", node]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def copy(name: str, node: str, shot: str, record: dict) -> None:
    """Copy one screenshot to docs/img/<name>.png and record what it showed."""
    src = ARTIFACTS / shot
    text = src.with_suffix(".txt")
    if not src.is_file() or not text.is_file():
        raise SystemExit(f"{src} (or its .txt) is missing: run {node}")
    dst = IMG / f"{name}.png"
    shutil.copyfile(src, dst)
    record[dst.name] = {"test": node, "sha256": sha256(dst), "shows": text.read_text(encoding="utf-8")}
    print(f"docs/img/{dst.name} <- test-artifacts/{shot}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(PICTURES)}")
    parser.add_argument("--no-run", action="store_true", help="do not run the tests; copy test-artifacts/ as is")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(PICTURES)
    unknown = sorted(set(names) - set(PICTURES))
    if unknown:
        parser.error(f"--only: unknown picture(s) {unknown}; choose from {', '.join(PICTURES)}")
    record = json.loads(RECORD.read_text(encoding="utf-8")) if RECORD.is_file() else {}
    for name in names:
        node, shot = PICTURES[name]
        if not args.no_run:
            (ARTIFACTS / shot).unlink(missing_ok=True)  # a shot from an earlier run must not pass for this one
            run_test(node)
        copy(name, node, shot, record)
    RECORD.write_text(json.dumps(dict(sorted(record.items())), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print("now check the README's alt texts: .venv/bin/python -m pytest -q tests/test_readme_pictures.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
