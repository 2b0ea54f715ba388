"""TrainerPanel driven through its state: Start, Stop mid-run, errors, refusals; a fake train() stands in
for the loop (the real loop on a tiny model runs in the slow test at the end)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

import lorakit.training
from lorakit.training.config import TrainConfig
from lorakit.training.events import TrainSummary
from lorakit.widgets.config_form import ConfigForm
from lorakit.widgets.trainer_panel import FIELDS, TrainerPanel, preview_html


class FakeTrain:
    """Stands in for lorakit.training.train: logs `steps` steps, honours the stop handle, saves an adapter and a
    checkpoint (state.json) as the loop does; `hold` (an Event) keeps it in its evaluation phase until set."""

    def __init__(self, steps: int = 5, step_s: float = 0.0, fail_at: int | None = None,
                 choices: dict | None = None, hold: threading.Event | None = None) -> None:
        self.steps, self.step_s, self.fail_at, self.choices, self.hold = steps, step_s, fail_at, choices, hold
        self.started = threading.Event()
        self.evaluating = threading.Event()
        self.configs: list[TrainConfig] = []
        self.resumed_from: list[str | None] = []

    def __call__(self, config, *, sinks=(), stop=None, resume_from=None):
        self.configs.append(config)
        self.resumed_from.append(resume_from)
        out = Path(config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")
        first = json.loads((out / "checkpoint" / "state.json").read_text())["step"] if resume_from else 0
        for sink in sinks:
            sink.on_train_start({"total_steps": self.steps, "device": "cpu", "precision": config.precision,
                                 "quantization": config.quantization, "predicted_peak_bytes": None,
                                 "choices": self.choices or {}})
        self.started.set()
        if self.hold is not None:
            for sink in sinks:
                sink.on_phase("evaluating", "evaluating the loss on 45 held-out examples")
            self.evaluating.set()
            self.hold.wait(30)
        done = first
        while done < self.steps and not (stop and stop.stop_requested):
            if done == self.fail_at:
                raise RuntimeError(f"boom at step {done}")
            time.sleep(self.step_s)
            done += 1
            for sink in sinks:
                sink.on_log({"step": done, "loss": 1.0 / done, "learning_rate": config.learning_rate,
                             "rss_bytes": 2**30})
        (out / "adapter").mkdir(parents=True, exist_ok=True)
        (out / "adapter" / "adapter_config.json").write_text(json.dumps({"r": config.r}))
        (out / "checkpoint").mkdir(exist_ok=True)
        (out / "checkpoint" / "state.json").write_text(json.dumps({"step": done}))
        stopped = done < self.steps
        summary = TrainSummary(
            status="stopped" if stopped else "completed", message=f"Stopped by user at step {done}" if stopped else "",
            steps_done=done, total_steps=self.steps, final_loss=1.0 / max(done, 1), output_dir=str(out),
            adapter_dir=str(out / "adapter"), metrics_path=str(out / "metrics.jsonl"),
            preview=[{"prompt": "What is <bf16>?", "before": "no idea", "after": "1/8/7"}],
            exact_match_before=0.25, exact_match_after=None if stopped else 0.75)
        for sink in sinks:
            sink.on_train_end(summary)
        return summary


@pytest.fixture
def fake_train(monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(lorakit.training, "train", fake, raising=False)
    return fake


def test_start_runs_to_completion_and_reports(fake_train, tmp_path):
    panel = TrainerPanel(output_dir=str(tmp_path), r=4)  # an existing empty folder: the first run goes there
    panel.fields["max_steps"].value = 12
    assert panel.start()
    summary = panel.wait(timeout=30)
    assert summary.status == "completed" and panel.summary is summary
    assert fake_train.configs[0].r == 4 and fake_train.configs[0].max_steps == 12  # controls reach the config
    assert "adapter saved" in panel.dashboard.status.value.lower()
    assert str(tmp_path / "adapter") in panel.dashboard.status.value
    assert [r["step"] for r in panel.dashboard.history] == [1, 2, 3, 4, 5]
    assert "1/8/7" in panel.preview.value and "&lt;bf16&gt;" in panel.preview.value  # escaped
    assert "25.0 % before" in panel.preview.value and "75.0 % after" in panel.preview.value
    assert not panel.start_button.disabled and panel.stop_button.disabled and not panel.fields["r"].disabled


def test_stop_mid_run_saves_and_says_so(monkeypatch, tmp_path):
    fake = FakeTrain(steps=10_000, step_s=0.005)
    monkeypatch.setattr(lorakit.training, "train", fake, raising=False)
    panel = TrainerPanel(output_dir=str(tmp_path))
    panel.start_button.click()
    assert fake.started.wait(10)
    assert panel.running and panel.start_button.disabled and not panel.stop_button.disabled
    panel.stop_button.click()
    assert "Stop requested" in panel.message.value
    summary = panel.wait(timeout=30)
    assert summary.status == "stopped" and 0 < summary.steps_done < 10_000
    status = panel.dashboard.status.value
    assert status.startswith(f"Stopped by user at step {summary.steps_done}.") and "adapter saved" in status.lower()
    assert panel.message.value == ""  # "Stop requested" is stale once the run has stopped
    # a stopped run is not scored after training: the panel says so instead of "n/a after"
    assert "n/a" not in panel.preview.value and "not scored after it: the run was stopped" in panel.preview.value
    assert f"after {summary.steps_done} of 10000 steps" in panel.preview.value  # the answers' column


def test_second_start_while_running_is_refused(monkeypatch, tmp_path):
    fake = FakeTrain(steps=10_000, step_s=0.005)
    monkeypatch.setattr(lorakit.training, "train", fake, raising=False)
    panel = TrainerPanel(output_dir=str(tmp_path))
    assert panel.start()
    assert fake.started.wait(10)
    assert panel.start() is False
    assert "already in progress" in panel.message.value
    panel.stop()
    panel.wait(timeout=30)
    assert len(fake.configs) == 1


def test_error_in_the_run_is_shown_and_the_panel_keeps_working(monkeypatch, tmp_path):
    monkeypatch.setattr(lorakit.training, "train", FakeTrain(steps=5, fail_at=2), raising=False)
    panel = TrainerPanel(output_dir=str(tmp_path))
    panel.start()
    with pytest.raises(RuntimeError, match="boom at step 2"):
        panel.wait(timeout=30)
    assert "Failed: RuntimeError: boom at step 2" in panel.dashboard.status.value
    assert "Traceback" in panel.message.value and "boom" in panel.error
    assert panel.summary is None and not panel.running and not panel.start_button.disabled
    monkeypatch.setattr(lorakit.training, "train", FakeTrain(steps=3), raising=False)
    assert panel.start()
    assert panel.wait(timeout=30).status == "completed"
    assert panel.error is None and "adapter saved" in panel.dashboard.status.value.lower()


def test_bad_control_value_is_reported_not_raised(fake_train, tmp_path):
    panel = TrainerPanel(output_dir=str(tmp_path))
    panel.fields["max_steps"].value = 0
    assert panel.start() is False
    assert "Cannot start: max_steps=0" in panel.message.value and not panel.running
    assert "or -1 to train for num_train_epochs" in panel.message.value  # the rule the field's hint gives
    assert fake_train.configs == []
    panel.fields["max_steps"].value = 3
    assert panel.start() and panel.wait(timeout=30).status == "completed"
    assert fake_train.configs[0].max_steps == 3


def test_bad_keyword_names_the_field():
    with pytest.raises(ValueError, match="precision: 'fp8' is not allowed"):
        TrainerPanel(precision="fp8")


def test_stop_without_a_run_is_harmless():
    panel = TrainerPanel()
    panel.stop()
    assert panel.message.value == "No run in progress." and panel.wait() is None


def test_preview_html_without_scores_or_preview_is_empty():
    summary = TrainSummary("completed", "", 1, 1, 0.5, "/x", None, "/x/m")
    assert preview_html(summary) == ""


def _wait_for(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_every_start_writes_to_a_new_folder_and_resume_continues_a_stopped_run(monkeypatch, tmp_path):
    fake = FakeTrain(steps=10_000, step_s=0.005)
    monkeypatch.setattr(lorakit.training, "train", fake, raising=False)
    base = tmp_path / "run"
    panel = TrainerPanel(output_dir=str(base))
    assert panel.start() and fake.started.wait(10)
    panel.stop()
    first = panel.wait(timeout=30)
    assert first.status == "stopped" and panel.run_dir == base
    assert panel.resume_from.value == str(base)  # Resume continues the last run unless told otherwise
    fake.started.clear()
    assert panel.start() and fake.started.wait(10)  # Start: a new folder, the stopped run stays as it was
    panel.stop()
    panel.wait(timeout=30)
    assert panel.run_dir == tmp_path / "run-2" and fake.configs[1].output_dir == str(tmp_path / "run-2")
    assert json.loads((base / "checkpoint" / "state.json").read_text())["step"] == first.steps_done
    fake.steps = first.steps_done + 3
    panel.resume_from.value = str(base)
    assert panel.resume()  # any run folder: here the first one
    resumed = panel.wait(timeout=30)
    assert fake.resumed_from[-1] == str(base) and fake.configs[-1].output_dir == str(base)
    assert resumed.status == "completed" and resumed.steps_done == first.steps_done + 3
    assert [r["step"] for r in panel.dashboard.history][0] == first.steps_done + 1


def test_resume_says_why_it_cannot(fake_train, tmp_path):
    panel = TrainerPanel(output_dir=str(tmp_path / "run"))
    assert panel.resume() is False and "Nothing to resume yet" in panel.message.value
    panel.resume_from.value = str(tmp_path / "nowhere")
    assert panel.resume() is False and "Cannot resume from" in panel.message.value
    assert panel.start() and panel.wait(timeout=30).status == "completed"  # 5 of 5 steps
    panel.fields["max_steps"].value = 5
    assert panel.resume() is False and "raise max_steps above 5" in panel.message.value
    assert fake_train.resumed_from == [None]


def test_fields_are_the_configs_own(fake_train, tmp_path):
    """Names, choices and bounds come from TrainConfig and lorakit.choices; new settings reach the run."""
    from lorakit.choices import CHECKPOINTING_CHOICES, COMPILE_CHOICES, LOSS_KERNELS, PRECISIONS
    from lorakit.training.config import BOUNDS

    panel = TrainerPanel(output_dir=str(tmp_path / "run"))
    assert list(panel.fields) == list(FIELDS)
    assert all(control.description == name for name, control in panel.fields.items())
    assert [v for _, v in panel.fields["precision"].options] == list(PRECISIONS)  # tf32 included
    # short names in the dropdown, every record's long label in its tooltip
    assert [label for label, _ in panel.fields["precision"].options] == list(PRECISIONS)
    assert all(PRECISIONS[name].label in panel.fields["precision"].tooltip for name in PRECISIONS)
    assert [v for _, v in panel.fields["gradient_checkpointing"].options] == list(CHECKPOINTING_CHOICES)
    assert [label for label, _ in panel.fields["gradient_checkpointing"].options] == ["off", "on", "auto"]
    assert [v for _, v in panel.fields["compile"].options] == list(COMPILE_CHOICES)
    assert [v for _, v in panel.fields["loss_kernel"].options] == list(LOSS_KERNELS)
    assert (panel.fields["r"].low, panel.fields["r"].high) == BOUNDS["r"][:2]
    assert (panel.fields["batch_size"].low, panel.fields["batch_size"].high) == BOUNDS["batch_size"][:2]
    panel.fields["batch_size"].value = "auto"  # a number, or auto (the largest batch that fits, measured)
    assert panel.config_from_controls().batch_size == "auto"
    panel.fields["batch_size"].value = "6"
    assert panel.config_from_controls().batch_size == 6
    panel.fields["batch_size"].value = "six"
    with pytest.raises(ValueError, match="batch_size='six' is not a number; type a whole number such as 8, or auto"):
        panel.config_from_controls()
    panel.fields["batch_size"].value = str(BOUNDS["batch_size"][1] + 1)
    with pytest.raises(ValueError, match="batch_size=65537 is out of range"):
        panel.config_from_controls()
    panel.fields["batch_size"].value = "4"
    assert panel.fields["gradient_checkpointing"].value == "auto"  # the config's default, shown as it is
    panel.fields["gradient_checkpointing"].value = True
    panel.fields["loss_kernel"].value = "plain"
    panel.fields["compile"].value = "auto"
    panel.fields["precision"].value = "tf32"
    assert panel.start() and panel.wait(timeout=30)
    config = fake_train.configs[0]
    assert (config.gradient_checkpointing, config.loss_kernel, config.compile, config.precision) == (
        True, "plain", "auto", "tf32")


def test_showing_one_more_field_is_one_more_name():
    from lorakit.training.config import BOUNDS

    form = ConfigForm(TrainConfig(), (*FIELDS, "warmup_steps", "lr_scheduler_type", "num_train_epochs"))
    form.controls["warmup_steps"].value = 3
    form.controls["lr_scheduler_type"].value = "cosine"
    config = form.apply(TrainConfig())
    assert (config.warmup_steps, config.lr_scheduler_type) == (3, "cosine")
    assert isinstance(form.values()["num_train_epochs"], float) and "num_train_epochs" not in FIELDS
    assert BOUNDS["warmup_steps"][1] is None  # one bound: a plain box, and TrainConfig names the range
    form.controls["warmup_steps"].value = -1
    with pytest.raises(ValueError, match="warmup_steps=-1 is out of range"):
        form.apply(TrainConfig())
    with pytest.raises(ValueError, match="not TrainConfig fields: colour"):
        ConfigForm(TrainConfig(), ("model", "colour"))


def test_the_run_says_what_it_is_doing_and_which_choices_it_made(monkeypatch, tmp_path):
    hold = threading.Event()
    choices = {"gradient_checkpointing": {"value": True, "reason": "auto: on for a quantized base (nf4)"}}
    fake = FakeTrain(steps=3, choices=choices, hold=hold)
    monkeypatch.setattr(lorakit.training, "train", fake, raising=False)
    panel = TrainerPanel(output_dir=str(tmp_path / "run"))
    assert panel.start() and fake.evaluating.wait(10)
    status = panel.dashboard.status
    assert _wait_for(lambda: "Evaluating the loss on 45 held-out examples" in status.value), status.value
    assert "gradient checkpointing: on (auto: on for a quantized base (nf4))" in panel.dashboard.setup.value
    hold.set()
    assert panel.wait(timeout=30).status == "completed"


def test_a_run_that_fails_before_its_first_picture_leaves_no_broken_image(monkeypatch, tmp_path):
    def refuse(config, **kwargs):
        raise ValueError("precision: tf32 needs a GPU")

    monkeypatch.setattr(lorakit.training, "train", refuse, raising=False)
    panel = TrainerPanel(output_dir=str(tmp_path / "run"))
    assert panel.dashboard.plot.layout.display == "none"  # before the first run
    panel.start()
    with pytest.raises(RuntimeError, match="tf32 needs a GPU"):
        panel.wait(timeout=30)
    assert panel.dashboard.plot.layout.display == "none"  # and after a failed one
    assert "Refused before anything loaded: precision: tf32 needs a GPU" in panel.dashboard.status.value


def test_dom_classes_for_browser_tests():
    panel = TrainerPanel()
    assert "lorakit-trainer-panel" in panel._dom_classes
    assert "lorakit-start" in panel.start_button._dom_classes
    assert "lorakit-stop" in panel.stop_button._dom_classes
    assert "lorakit-status" in panel.dashboard.status._dom_classes
    assert "lorakit-plot" in panel.dashboard.plot._dom_classes
    assert "lorakit-progress" in panel.dashboard.progress._dom_classes
    assert "lorakit-resume" in panel.resume_button._dom_classes
    assert "lorakit-setup" in panel.dashboard.setup._dom_classes
    assert all(f"lorakit-field-{name}" in c._dom_classes for name, c in panel.fields.items())


KERNEL_CELLS = [
    '''import lorakit.training
from lorakit.training.events import TrainSummary
from lorakit.widgets.trainer_panel import TrainerPanel

def fake_train(config, *, sinks=(), stop=None, resume_from=None):
    for sink in sinks:
        sink.on_train_start({"total_steps": 3})
    for step in (1, 2, 3):
        for sink in sinks:
            sink.on_log({"step": step, "loss": 1.0 / step})
    summary = TrainSummary("completed", "", 3, 3, 1 / 3, ".", None, "m")
    for sink in sinks:
        sink.on_train_end(summary)
    return summary

lorakit.training.train = fake_train
panel = TrainerPanel()
panel''',
    "panel.start()\nprint(panel.wait(timeout=60).status)",
    "panel",  # displayed again after the run: the static copy comes with it
]


@pytest.mark.slow
def test_kernel_output_keeps_a_static_png_of_the_final_plots(monkeypatch, tmp_path):
    """In a real kernel (nbclient, as nbconvert/nbval run notebooks), the panel's cell ends up with a PNG."""
    import os
    import sys

    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in KERNEL_CELLS])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    first, second, third = (cell.outputs for cell in nb.cells)
    widget_mime = "application/vnd.jupyter.widget-view+json"
    assert widget_mime in first[0].data  # the live panel
    assert "image/png" in first[1].data  # the placeholder, filled by the end-of-run update
    assert second[-1].text.strip() == "completed"
    assert widget_mime in third[0].data and "image/png" in third[1].data


@pytest.mark.slow
def test_real_run_stopped_from_the_panel_keeps_its_adapter(tiny_model_dir, tmp_path):
    """The real loop on a tiny model: Stop after the first logged step; the adapter is on disk and loadable."""
    from peft import PeftConfig

    data = [{"prompt": f"What is {a} plus {a}?", "completion": f"{2 * a}"} for a in range(40)]
    panel = TrainerPanel(model=str(tiny_model_dir), dataset=data, max_steps=10_000, batch_size=2,
                         max_seq_length=64, logging_steps=1, output_dir=str(tmp_path / "run"))
    assert panel.start()
    deadline = time.monotonic() + 120
    while not panel.dashboard.history and time.monotonic() < deadline:
        time.sleep(0.05)
    panel.stop_button.click()
    summary = panel.wait(timeout=120)
    assert summary.status == "stopped" and 1 <= summary.steps_done < 10_000
    assert "adapter saved" in panel.dashboard.status.value.lower()
    assert PeftConfig.from_pretrained(summary.adapter_dir).r == 8
    assert panel.dashboard.info["total_steps"] == 10_000
    assert panel.dashboard.history[0]["step"] == 1 and panel.dashboard.history[0]["loss"] > 0


def test_preview_html_gives_format_match_and_exact_match_before_and_after():
    import dataclasses

    summary = dataclasses.replace(TrainSummary("completed", "", 20, 20, 0.5, "/x", None, "/x/m"),
                                  format_match_before=0.0, format_match_after=0.93,
                                  exact_match_before=0.0, exact_match_after=0.05)
    text = preview_html(summary)
    assert "<b>Format match" in text and "0.0 % before &rarr; 93.0 % after training" in text
    assert "<b>Exact match on held-out questions:</b> 0.0 % before &rarr; 5.0 % after training" in text
    assert text.index("Format match") < text.index("Exact match")


def test_a_number_typed_wrong_is_refused_where_it_was_typed_and_at_start(fake_train, tmp_path):
    """Issue 24: "abc" typed into learning_rate silently reverted to 0.001 (the browser's number box), and Start
    ran. The text reaches the kernel as typed, and both the form and Start say it was refused."""
    panel = TrainerPanel(output_dir=str(tmp_path / "run"))
    panel.fields["learning_rate"].value = "abc"  # what the browser sends when a person types it and leaves the box
    assert "learning_rate=&#x27;abc&#x27; is not a number" in panel.form.problems.value
    assert panel.start() is False and fake_train.configs == []
    assert "Cannot start: learning_rate=&#x27;abc&#x27; is not a number" in panel.message.value
    assert panel.fields["learning_rate"].value == "abc"  # left as typed, to be corrected
    panel.fields["max_steps"].value = "2.5"
    panel.fields["learning_rate"].value = "2e-4"
    assert "max_steps=&#x27;2.5&#x27; is not a whole number" in panel.form.problems.value
    panel.fields["max_steps"].value = "0"
    assert "max_steps=0 is out of range" in panel.form.problems.value  # TrainConfig's own bound, at once
    panel.fields["max_steps"].value = "3"
    assert panel.form.problems.value == ""
    assert panel.start() and panel.wait(timeout=30).status == "completed"
    assert (fake_train.configs[0].learning_rate, fake_train.configs[0].max_steps) == (2e-4, 3)


def test_the_dataset_and_the_preview_prompts_are_fields_of_the_panel(fake_train, tmp_path):
    from lorakit.training.records import DATASET_HELP

    data = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(40)]
    panel = TrainerPanel(dataset=data, preview_prompts=["What is BF16?"], output_dir=str(tmp_path / "run"))
    assert panel.fields["dataset"].value == "<in-memory list: 40 examples>"
    assert panel.fields["dataset"].tooltip == DATASET_HELP  # the accepted shapes, where the person types
    assert panel.fields["preview_prompts"].value == "What is BF16?"
    panel.fields["preview_prompts"].value = "What is FP8?\n\n  How many bits has NF4?  \n"
    assert panel.start() and panel.wait(timeout=30)
    assert fake_train.configs[0].dataset is data  # a dataset given in code is kept while its text is unchanged
    assert fake_train.configs[0].preview_prompts == ["What is FP8?", "How many bits has NF4?"]
    panel.fields["dataset"].value = "builtin-json"
    panel.fields["preview_prompts"].value = ""
    assert panel.start() and panel.wait(timeout=30)
    assert (fake_train.configs[1].dataset, fake_train.configs[1].preview_prompts) == ("builtin-json", [])


def test_preview_html_shows_the_held_out_answer_and_only_the_columns_the_run_reached():
    import dataclasses

    completed = dataclasses.replace(TrainSummary("completed", "", 20, 20, 0.5, "/x", None, "/x/m"), preview=[
        {"prompt": "What is 2+2?", "expected": "4", "before": "5", "after": "4"}])
    text = preview_html(completed)
    assert "<th style='text-align:left'>held-out answer</th>" in text and "<td style='text-align:left;" \
        "vertical-align:top'>4</td>" in text and "after training</th>" in text
    stopped_first = dataclasses.replace(TrainSummary("stopped", "", 0, 20, None, "/x", None, "/x/m"), preview=[
        {"prompt": "Hi?", "before": "", "after": ""}])
    assert preview_html(stopped_first) == ""  # stopped during the preview: no answers, no table
    stopped = dataclasses.replace(stopped_first, steps_done=5, preview=[{"prompt": "Hi?", "before": "Hello", "after": ""}])
    assert "before training" in preview_html(stopped) and "after 5 of 20 steps" not in preview_html(stopped)


@pytest.mark.slow
def test_stop_during_the_preview_before_training_says_nothing_was_trained(tiny_model_dir, tmp_path, monkeypatch):
    """Issue 24: stopping during the preview said "after 0 of 20 steps ... Adapter saved". The real loop, held
    in its first preview until Stop is pressed (no race with the machine's speed)."""
    from lorakit.training import evaluation

    previewing, real = threading.Event(), evaluation.generate_answers

    def held(*args, **kwargs):
        previewing.set()
        assert _wait_for(lambda: panel._stop.stop_requested, 60)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "generate_answers", held)
    panel = TrainerPanel(model=str(tiny_model_dir), dataset=["a b c d e"] * 8, max_steps=20, max_seq_length=32,
                         preview_prompts=["Hi?"], device="cpu", output_dir=str(tmp_path / "run"))
    assert panel.start() and previewing.wait(60)
    panel.stop_button.click()
    summary = panel.wait(timeout=120)
    assert summary.status == "stopped" and summary.steps_done == 0 and summary.adapter_dir is None
    status = panel.dashboard.status.value
    assert "before the first training step: nothing was trained" in status
    assert "Adapter saved" not in status and "0 of 20" not in status and "0/20 steps" not in status
    assert "after 0 of 20" not in panel.preview.value
    assert not (tmp_path / "run" / "adapter").exists()


def test_a_dataset_typed_wrong_is_refused_in_the_panel_before_anything_loads(tiny_model_dir, tmp_path,
                                                                              monkeypatch):
    """Issue 21: a file path typed into the panel's dataset field that does not exist is refused by the real
    train() before the weights load; the panel says so as a refusal (no traceback), makes no run folder and does
    not offer that folder to resume."""
    import lorakit.training.parts as parts_module

    def refuse(*args, **kwargs):
        raise AssertionError("the base model's weights were loaded before the run was refused")

    monkeypatch.setattr(parts_module, "load_base", refuse)
    panel = TrainerPanel(model=str(tiny_model_dir), device="cpu", output_dir=str(tmp_path / "run"))
    panel.fields["dataset"].value = str(tmp_path / "my_data.jsonl")
    assert panel.start()
    with pytest.raises(RuntimeError, match="does not exist"):
        panel.wait(timeout=60)
    status, message = panel.dashboard.status.value, panel.message.value
    assert status.startswith("Refused before anything loaded: ") and "my_data.jsonl" in status
    assert "Cannot start: " in message and "does not exist" in message and "Traceback" not in message
    assert list(tmp_path.iterdir()) == [] and panel.resume_from.value == ""
    assert not panel.running and not panel.start_button.disabled
