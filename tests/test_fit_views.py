"""The fit views: the memory ledger under the dashboard's plots (from a real check), and the token lengths the
TrainerPanel shows before Start, driven through their state."""

from __future__ import annotations

import re

import pytest
from test_train_fit import VARIED

from lorakit.widgets.dashboard_views import DashboardView
from lorakit.widgets.fit_views import FitLedgerView, LengthSection


@pytest.fixture(scope="module")
def fit(tiny_model_dir, tmp_path_factory):
    from tiny import tiny_run_config

    from lorakit.training.fit import check_fit

    config = tiny_run_config(tiny_model_dir, tmp_path_factory.mktemp("fit"), dataset=VARIED, batch_size=3,
                             max_seq_length=64)
    return check_fit(config).as_dict()


def _cells(html: str) -> list[list[str]]:
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr) for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", html)]


def test_the_ledger_appears_after_the_first_step_with_every_component(fit):
    view = FitLedgerView()
    assert isinstance(view, DashboardView)
    view.show([], [], {"fit": fit})
    assert view.table.value == ""  # before the first step: nothing yet
    view.show([{"step": 1, "mem_peak_bytes": None}], [], {"fit": fit})
    rows = _cells(view.table.value)
    assert rows[0] == ["component", "planned MiB", "measured MiB", "error"]
    labels = [r[0] for r in rows[1:]]
    assert labels[:-1] == [r["label"] for r in fit["ledger"]]
    assert labels[-1] == f"<b>peak</b> at the {fit['peak_phase']} moment"
    peak = rows[-1]
    assert peak[1] == f"{fit['predicted_bytes'] / 2**20:,.1f}" and peak[2] == f"{fit['measured_bytes'] / 2**20:,.1f}"
    assert peak[3] == f"{fit['predicted_bytes'] / fit['measured_bytes'] - 1:+.1%}"
    assert "lorakit's tensor tracker (CPU)" in view.table.value and "fits" in view.table.value
    view.reset()
    assert view.table.value == ""


def test_on_a_gpu_the_ledger_adds_the_runs_own_peak(fit):
    view = FitLedgerView()
    gpu = dict(fit, device="cuda")
    view.show([{"step": 1, "mem_peak_bytes": 100 * 2**20}, {"step": 2, "mem_peak_bytes": 120 * 2**20}], [],
              {"fit": gpu})
    last = _cells(view.table.value)[-1]
    assert last[0] == "the run's peak to step 2" and last[2] == "120.0"
    assert "max_memory_allocated" in view.table.value


def test_the_panel_shows_the_token_lengths_before_start(run_config):
    from lorakit.training.lengths import token_lengths
    from lorakit.widgets import TrainerPanel

    config = run_config(dataset=VARIED, max_seq_length=64)
    panel = TrainerPanel(config)
    assert panel.config.check_fit is True  # the panel checks the fit by default
    assert isinstance(panel.lengths, LengthSection) and panel.lengths.selected_index is None
    assert panel.lengths.view.report is None  # nothing tokenized until it is opened
    panel.lengths.selected_index = 0
    report = panel.lengths.view.report
    expected = token_lengths(config)
    assert report.lengths.tolist() == expected.lengths.tolist() and report.max_seq_length == 64
    assert panel.lengths.view.picture.value[:4] == b"\x89PNG"
    assert f"max_seq_length 64: {expected.at(64).truncated} examples longer" in panel.lengths.view.text.value
    panel.fields["max_seq_length"].value = 16  # the cutoff moves without tokenizing again
    assert panel.lengths.view.report.max_seq_length == 16
    assert f"{expected.at(16).truncated} examples longer" in panel.lengths.view.text.value
    panel.fields["batch_size"].value = "lots"  # a bad value is said, not raised
    assert "batch_size=&#x27;lots&#x27; is not a number" in panel.lengths.view.text.value


def test_a_panel_run_checks_its_fit_and_shows_the_ledger(run_config):
    from lorakit.widgets import TrainerPanel

    panel = TrainerPanel(run_config(dataset=VARIED, max_seq_length=64, max_steps=2))
    ledger = panel.dashboard.views[0]
    assert isinstance(ledger, FitLedgerView)
    assert panel.start() and panel.wait(timeout=120)
    assert panel.summary.status == "completed" and "check_fit" in panel.summary.choices
    assert panel.dashboard.info["fit"]["fits"] is True
    assert "peak</b> at the" in ledger.table.value
