"""The evaluations and previews around training, as a person watching them sees them: held-out examples of your
own data in the preview, progress while answering, the time they take counted in the ETA, Stop ending them, and
a resumed run that still knows its answers before training (issues 21 item 5 and 24 point 4)."""

from __future__ import annotations

import json

import pytest
from tiny import Recorder

from lorakit.training import StopHandle, TrainConfig, train
from lorakit.training.data import split_records
from lorakit.widgets.run_text import describe_summary

QUESTIONS = [{"prompt": f"What is {i} plus one?", "completion": str(i + 1)} for i in range(50)]


class Watcher(Recorder):
    """A Recorder that also keeps every on_progress record, and asks to stop at the first one ``stop_when``
    accepts."""

    def __init__(self, stop=None, stop_at=None, stop_when=None) -> None:
        super().__init__(stop, stop_at)
        self.progress: list[dict] = []
        self.stop_when = stop_when

    def on_progress(self, record):
        self.progress.append(dict(record))
        if self.stop_when is not None and self.stop_when(record) and not self.stop.stop_requested:
            self.stop.request_stop("test")
            self.progress[-1]["stop_pressed"] = True


def config(run_config, **overrides) -> TrainConfig:
    settings = dict(dataset=QUESTIONS, eval_split=0.4, max_seq_length=64, max_new_tokens=2, max_steps=3)
    return run_config(**{**settings, **overrides})


def test_the_preview_answers_held_out_examples_of_your_own_data(run_config):
    cfg = config(run_config, preview_examples=2)
    summary = train(cfg)
    _, held = split_records(QUESTIONS, cfg.eval_split)  # the held-out part, as the trainer splits it
    assert [row["prompt"] for row in summary.preview] == [r["prompt"] for r in held[:2]]
    assert [row["expected"] for row in summary.preview] == [r["completion"] for r in held[:2]]
    assert all(isinstance(row["before"], str) and isinstance(row["after"], str) for row in summary.preview)


def test_a_chat_dataset_previews_its_last_question_and_your_prompts_come_first(run_config):
    chats = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Say {i}"},
                           {"role": "assistant", "content": str(i)}]} for i in range(20)]
    summary = train(config(run_config, dataset=chats, preview_examples=1))
    _, held = split_records(chats, 0.4)
    assert summary.preview[0]["prompt"] == held[0]["messages"][1]["content"]
    assert summary.preview[0]["expected"] == held[0]["messages"][2]["content"]
    mine = train(config(run_config, dataset=chats, preview_prompts=["Say hello"], output_dir=None))
    assert [row["prompt"] for row in mine.preview] == ["Say hello"] and "expected" not in mine.preview[0]


def test_answering_reports_its_progress_and_the_eta_counts_the_evaluation_after(run_config):
    watcher = Watcher()
    summary = train(config(run_config, eval_exact_match=True, preview_examples=0, logging_steps=1), sinks=[watcher])
    held = len(split_records(QUESTIONS, 0.4)[1])
    assert held > 16  # more than one batch of answers, so progress comes before the last one
    answered = [r for r in watcher.progress if r["detail"].endswith("answered")]
    before = [r for r in answered if r["step"] == 0]
    after = [r for r in answered if r["step"] == summary.steps_done]
    assert [r["detail"] for r in before] == [f"16 of {held} answered", f"{held} of {held} answered"]
    assert [r["detail"] for r in after] == [r["detail"] for r in before]
    assert all(r["eta_s"] is None for r in before)  # before training, the training time is not known yet
    assert all(r["eta_s"] is not None and r["eta_s"] >= 0 for r in after)
    assert before[0]["part_eta_s"] > 0 and before[-1]["part_eta_s"] == 0
    last_log = watcher.logs()[-1]  # no steps left, but the evaluation after training is
    assert last_log["step"] == summary.steps_done and last_log["eta_s"] > 0


def test_the_eta_of_a_step_is_the_steps_left_plus_the_evaluation_before(run_config, monkeypatch):
    """The evaluation before training is made to take a day (the clock moves, no real waiting): every step's
    ETA then holds that day, because the evaluation after training does the same work."""
    import time

    from lorakit.training import evaluation

    day, offset, real_clock = 86_400.0, [0.0], time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + offset[0])
    original = evaluation.preview

    def slow_preview(*args, **kwargs):
        if not offset[0]:
            offset[0] += day
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluation, "preview", slow_preview)
    watcher = Watcher()
    train(config(run_config, preview_prompts=["Hi"], logging_steps=1), sinks=[watcher])
    assert all(day <= r["eta_s"] < 2 * day for r in watcher.logs())


def test_stop_during_the_preview_before_training_trains_nothing_and_saves_nothing(run_config, tmp_path):
    stop = StopHandle()
    watcher = Watcher(stop, stop_when=lambda r: r["phase"] == "generating")
    summary = train(config(run_config, preview_prompts=["a", "b"]), sinks=[watcher], stop=stop)
    assert summary.status == "stopped" and summary.steps_done == 0 and summary.adapter_dir is None
    assert "before the first training step: nothing was trained" in summary.message
    assert not (tmp_path / "run" / "adapter").exists() and not (tmp_path / "run" / "checkpoint").exists()
    text = describe_summary(summary)
    assert "Adapter saved" not in text and "0 of 3 steps" not in text
    assert watcher.logs() == [] and len(watcher.progress) == 1  # nothing after the stop: no eval, no step


def test_stop_during_the_evaluation_after_training_ends_it(run_config):
    stop = StopHandle()
    watcher = Watcher(stop, stop_when=lambda r: r["step"] == 3 and r["detail"].endswith("answered"))
    summary = train(config(run_config, eval_exact_match=True, preview_prompts=["Hi"]), sinks=[watcher], stop=stop)
    assert summary.status == "completed" and summary.steps_done == 3  # the training was done
    assert "Stop ended the evaluation after training early" in summary.message
    assert summary.exact_match_before is not None and summary.exact_match_after is None
    assert summary.preview[0]["after"] == "" and summary.adapter_dir is not None
    pressed = next(i for i, r in enumerate(watcher.progress) if r.get("stop_pressed"))
    assert pressed == len(watcher.progress) - 1  # not one more batch answered after Stop


def test_stop_during_training_skips_the_evaluation_after(run_config):
    stop = StopHandle()
    watcher = Watcher(stop, stop_at=2)
    summary = train(config(run_config, eval_exact_match=True, preview_prompts=["Hi"], logging_steps=1,
                           max_steps=50), sinks=[watcher], stop=stop)
    assert summary.status == "stopped" and summary.steps_done == 2
    assert all(r["step"] == 0 for r in watcher.progress)  # every answer was given before training
    assert [r["step"] for r in watcher.of("eval")] == [0]
    assert summary.preview[0]["after"] == "" and summary.exact_match_after is None


def test_a_resumed_run_reports_the_scores_and_answers_before_training_of_its_first_part(run_config, tmp_path):
    stop = StopHandle()
    cfg = config(run_config, eval_exact_match=True, preview_prompts=["Hi", "Bye"], logging_steps=1,
                 max_steps=4)
    first = train(cfg, sinks=[Recorder(stop, stop_at=2)], stop=stop)
    assert first.status == "stopped" and first.exact_match_before is not None
    saved = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["before"]
    assert saved["preview_before"] == [row["before"] for row in first.preview]
    watcher = Watcher()
    resumed = train(cfg, sinks=[watcher], resume_from=first.output_dir)
    assert resumed.status == "completed" and resumed.exact_match_before == first.exact_match_before
    assert [row["before"] for row in resumed.preview] == [row["before"] for row in first.preview]
    assert all(r["step"] == 4 for r in watcher.progress)  # nothing measured again before training
    other = train(TrainConfig(**{**cfg.__dict__, "preview_prompts": ["Other"], "max_steps": 5}),
                  resume_from=first.output_dir)
    assert other.preview == [{"prompt": "Other", "before": "", "after": other.preview[0]["after"]}]


@pytest.mark.parametrize("shape", ["pair", "messages"])
def test_preview_items_are_the_first_held_out_examples_that_ask(shape):
    from lorakit.training.evaluation import preview_items

    records = ["plain text asks nothing"] + [
        {"prompt": f"q{i}", "completion": f"a{i}"} if shape == "pair" else
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(5)]
    items = preview_items(TrainConfig(preview_examples=3), records)
    assert [(i.shown, i.expected) for i in items] == [("q0", "a0"), ("q1", "a1"), ("q2", "a2")]
    assert preview_items(TrainConfig(preview_examples=0), records) == []
    assert [i.ask for i in preview_items(TrainConfig(preview_prompts=["mine"]), records)] == ["mine"]
