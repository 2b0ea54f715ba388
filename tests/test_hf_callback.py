"""The Trainer callbacks on a real transformers.Trainer (a tiny random Llama, a few CPU steps): the training
layer's MetricsCallback (sinks + StopHandle, no widgets) and the widgets' LiveDashboardCallback on top of it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from tiny import Recorder, tiny_causal_lm
from transformers import Trainer, TrainerCallback, TrainingArguments

import lorakit
from lorakit.training.events import MetricsSink, StopHandle
from lorakit.training.hf_callback import MetricsCallback
from lorakit.widgets.hf_callback import LiveDashboardCallback


class TokenDataset(torch.utils.data.Dataset):
    """Fixed random token sequences; labels = inputs (causal LM)."""

    def __init__(self, n: int = 64, seq: int = 16, vocab: int = 128) -> None:
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (n, seq), generator=gen)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def make_trainer(tmp_path, callback, max_steps=6, extra_callbacks=()) -> Trainer:
    model = tiny_causal_lm(vocab_size=128, max_position_embeddings=64, tie_word_embeddings=False)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=max_steps, per_device_train_batch_size=4,
                             learning_rate=1e-3, logging_steps=1, eval_strategy="steps", eval_steps=3,
                             save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                             include_num_input_tokens_seen=True, dataloader_num_workers=0)
    return Trainer(model=model, args=args, train_dataset=TokenDataset(),
                   eval_dataset=TokenDataset(n=8), callbacks=[callback, *extra_callbacks])


@pytest.mark.slow
def test_history_mirrors_the_trainer_logs(tmp_path):
    callback = LiveDashboardCallback(display=False)
    trainer = make_trainer(tmp_path, callback)
    trainer.train()
    dash = callback.dashboard
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [r["step"] for r in dash.history] == [entry["step"] for entry in logged] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in dash.history] == pytest.approx([entry["loss"] for entry in logged])
    assert [r["learning_rate"] for r in dash.history] == [entry["learning_rate"] for entry in logged]
    evals = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert dash.eval_history == [{"step": e["step"], "eval_loss": e["eval_loss"]} for e in evals]
    assert len(evals) == 2
    # 4 sequences x 16 tokens per step; tokens/s is positive and finite
    assert dash.history[-1]["tokens_seen"] == 6 * 4 * 16
    assert all(0 < r["tokens_per_s"] < float("inf") for r in dash.history)
    assert all(r["rss_bytes"] > 10 * 2**20 and r["mem_allocated_bytes"] is None for r in dash.history)
    assert dash.info["total_steps"] == 6 and dash.info["precision"] == "fp32"
    assert dash.info["trainable_params"] == dash.info["total_params"] > 0
    assert dash.summary.status == "completed" and dash.summary.steps_done == 6
    # a run of seconds: the drawing budget allows the final frame (and the figure is drawn off this thread)
    assert dash.redraw_count >= 1 and bytes(dash.plot.value).startswith(b"\x89PNG")
    assert dash.draw_threads == {"lorakit-dashboard"}


class ClickStopAt(TrainerCallback):
    """Presses the dashboard's Stop button at the end of a given step (as a user would, mid-run)."""

    def __init__(self, callback: LiveDashboardCallback, step: int) -> None:
        self.callback, self.step = callback, step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.callback.stop_button.click()


@pytest.mark.slow
def test_stop_button_stops_the_trainer(tmp_path):
    callback = LiveDashboardCallback(display=False)
    trainer = make_trainer(tmp_path, callback, max_steps=50, extra_callbacks=[ClickStopAt(callback, 2)])
    trainer.train()
    assert trainer.state.global_step == 3  # clicked during step 3: it finishes, then the Trainer stops
    assert callback.dashboard.summary.status == "stopped"
    assert callback.dashboard.status.value.startswith("Stopped by the Stop button after 3/50 steps")
    assert callback.stop_button.disabled


@pytest.mark.slow
def test_start_training_runs_in_the_background_and_wait_returns(tmp_path):
    callback = LiveDashboardCallback(display=False)
    trainer = make_trainer(tmp_path, callback, max_steps=3)
    thread = callback.start_training(trainer)
    assert thread.name == "lorakit-hf-train"
    summary = callback.wait(timeout=120)
    assert summary.status == "completed" and trainer.state.global_step == 3
    trainer.train_dataset = None  # the next run fails in the thread; wait() re-raises it
    callback.start_training(trainer)
    with pytest.raises(RuntimeError, match="trainer.train\\(\\) failed"):
        callback.wait(timeout=60)
    assert callback.dashboard.status.value.startswith("Failed:")


class Broken(MetricsSink):
    def on_log(self, record):
        raise RuntimeError("a drawing bug")


class StopAt(TrainerCallback):
    def __init__(self, stop: StopHandle, step: int) -> None:
        self.stop, self.step = stop, step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.stop.request_stop("a test")


@pytest.mark.slow
def test_metrics_callback_forwards_the_trainers_events_and_honours_a_stop_handle(tmp_path):
    recorder, stop = Recorder(), StopHandle()
    callback = MetricsCallback(sinks=[Broken(), recorder], stop=stop)
    trainer = make_trainer(tmp_path, callback, max_steps=50, extra_callbacks=[StopAt(stop, 2)])
    with pytest.warns(RuntimeWarning, match="Broken failed in on_log and was detached"):
        trainer.train()
    kinds = [kind for kind, _ in recorder.events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("log") == 3
    info = recorder.events[0][1]
    assert info["total_steps"] == 50 and info["precision"] == "fp32" and info["quantization"] == "none"
    assert [r["step"] for kind, r in recorder.events if kind == "log"] == [1, 2, 3]
    assert [r["step"] for kind, r in recorder.events if kind == "eval"] == [3]
    summary = recorder.events[-1][1]
    assert summary.status == "stopped" and summary.message == "Stopped by a test after 3/50 steps"
    assert len(callback.sinks) == 1  # the broken sink was detached, the run went on


def test_the_training_layer_imports_no_widgets():
    code = ("import sys, lorakit.training.hf_callback as m; "
            "assert m.MetricsCallback; "
            "bad = [n for n in sys.modules if n.split('.')[0] in ('ipywidgets', 'matplotlib') "
            "or n.startswith('lorakit.widgets')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_the_public_name_still_works():
    assert lorakit.LiveDashboardCallback is LiveDashboardCallback
    assert issubclass(LiveDashboardCallback, MetricsCallback)
    callback = LiveDashboardCallback(display=False)
    callback.request_stop()
    assert callback.stop_requested and callback.stop_button.disabled
