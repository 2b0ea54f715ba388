"""The training loop on a tiny random Llama: every CPU precision x quantization, stop/resume, failures, syncs."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import SENTENCE, Recorder
from tiny import tiny_run_config as tiny_config

from lorakit.training import MetricsSink, StopHandle, read_metrics, train

CPU_COMBOS = [
    ("fp32", "none", {}),
    ("fp32", "int8", {}),
    ("fp32", "nf4", {"bnb_4bit_use_double_quant": True}),
    ("fp32", "fp4", {}),
    ("bf16", "none", {}),
    ("bf16", "int8", {}),
    ("bf16", "nf4", {"bnb_4bit_use_double_quant": True}),
    ("bf16", "fp4", {}),
    ("fp32", "nf4", {"bnb_4bit_compute_dtype": "bf16"}),
    ("fp16", "none", {}),  # CPU autocast in float16 with torch.amp.GradScaler("cpu")
]


@pytest.mark.parametrize(("precision", "quantization", "extra"), CPU_COMBOS)
def test_every_cpu_combination_trains_and_the_loss_falls(
    tiny_model_dir, tmp_path, precision, quantization, extra
):
    recorder = Recorder()
    config = tiny_config(tiny_model_dir, tmp_path, precision=precision, quantization=quantization, **extra)
    summary = train(config, sinks=[recorder])
    assert summary.status == "completed", summary.message
    losses = recorder.losses()
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.5, losses
    start = recorder.events[0][1]
    assert start["precision"] == precision and start["quantization"] == config.quantization
    assert 0 < start["trainable_params"] < start["total_params"]
    assert recorder.events[-1] == ("end", summary)


@pytest.mark.parametrize(
    "extra",
    [
        {"packing": True, "dataset": [f"sample {i} " + "word " * i for i in range(12)]},
        {"padding_free": True},
        {"gradient_checkpointing": True},
        {"use_dora": True, "use_rslora": True, "lora_dropout": 0.1},
        {"optimizer": "adamw_8bit"},
        {"gradient_accumulation_steps": 2, "lr_scheduler_type": "cosine", "warmup_steps": 2},
        {"target_modules": ["q_proj", "v_proj"]},
    ],
    ids=["packing", "padding_free", "grad_ckpt", "dora_rslora", "adamw_8bit", "accum_cosine", "qv_only"],
)
def test_options_train(tiny_model_dir, tmp_path, extra):
    recorder = Recorder()
    summary = train(tiny_config(tiny_model_dir, tmp_path, **extra), sinks=[recorder])
    assert summary.status == "completed", summary.message
    losses = recorder.losses()
    assert losses[-1] < losses[0], losses


def test_run_folder_holds_every_artifact(tiny_model_dir, tmp_path):
    from peft import PeftConfig

    summary = train(
        tiny_config(tiny_model_dir, tmp_path, dataset=SENTENCE + ["other text"] * 4, eval_split=0.3)
    )
    out = tmp_path / "run"
    assert summary.output_dir == str(out)
    assert json.loads((out / "config.json").read_text())["model"] == str(tiny_model_dir)
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    records = read_metrics(out)
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [0, 6]
    assert {"loss", "learning_rate", "tokens_per_s", "tokens_seen", "eta_s", "rss_bytes"} <= set(records[1])
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert PeftConfig.from_pretrained(out / "adapter").r == 8
    assert (out / "checkpoint" / "state.json").exists()
    assert not list(out.glob(".*"))  # no temporary files or folders left behind



PLAIN = [f"record {i}: " + "alpha beta gamma " * (i % 3 + 1) for i in range(16)]
PAIRS = [{"prompt": f"What comes after {i}?", "completion": f"{i + 1} " * (i % 3 + 1)} for i in range(16)]


@pytest.mark.parametrize("data", [PLAIN, PAIRS], ids=["plain", "prompt_completion"])
def test_reloaded_adapter_reproduces_the_final_eval_loss(tiny_model_dir, tmp_path, data, eval_loss_from_adapter):
    """The loop's loss (logits only where a target is) equals full-logits cross-entropy from the saved adapter."""
    config = tiny_config(tiny_model_dir, tmp_path, dataset=data, eval_split=0.25, max_seq_length=64)
    summary = train(config)
    final_eval = [r for r in read_metrics(summary.output_dir) if r["kind"] == "eval"][-1]["eval_loss"]
    assert eval_loss_from_adapter(tiny_model_dir, summary.adapter_dir, config) == pytest.approx(
        final_eval, rel=1e-5
    )


def test_stop_then_resume_gives_the_uninterrupted_losses(tiny_model_dir, tmp_path):
    settings = dict(max_steps=8, lora_dropout=0.1, dataset=[f"text {i} " * (1 + i % 4) for i in range(12)])
    whole = Recorder()
    train(tiny_config(tiny_model_dir, tmp_path / "a", **settings), sinks=[whole])

    stop = StopHandle()
    first = Recorder(stop, stop_at=3)
    config = tiny_config(tiny_model_dir, tmp_path / "b", **settings)
    summary = train(config, sinks=[first], stop=stop)
    assert summary.status == "stopped" and summary.steps_done == 3
    assert "resumable checkpoint" in summary.message
    second = Recorder()
    resumed = train(config, sinks=[second], resume_from=summary.output_dir)
    assert resumed.status == "completed" and resumed.steps_done == 8
    assert first.losses() + second.losses() == whole.losses()  # bit-identical on CPU, fp32, same seed
    assert [r["step"] for r in read_metrics(summary.output_dir)] == list(range(1, 9))


def _break_collate_at(monkeypatch, call: int, error: BaseException):
    from lorakit.training.data import Batches

    original, calls = Batches.collate, {"n": 0}

    def collate(self, indices):
        calls["n"] += 1
        if calls["n"] == call:
            raise error
        return original(self, indices)

    monkeypatch.setattr(Batches, "collate", collate)


@pytest.mark.parametrize(
    ("error", "status", "words"),
    [
        (KeyboardInterrupt(), "interrupted", "Interrupted at step 2"),
        (RuntimeError("bad record"), "error", "RuntimeError: bad record"),
        (torch.OutOfMemoryError("CUDA out of memory"), "oom", "gradient_checkpointing=True"),
    ],
)
def test_failures_end_cleanly_with_files_on_disk(tiny_model_dir, tmp_path, monkeypatch, error, status, words):
    _break_collate_at(monkeypatch, 3, error)
    recorder = Recorder()
    summary = train(tiny_config(tiny_model_dir, tmp_path), sinks=[recorder])
    assert summary.status == status and words in summary.message
    assert summary.steps_done == 2
    assert [r["step"] for r in read_metrics(summary.output_dir)] == [1, 2]
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == status
    assert recorder.events[-1][0] == "end"


def test_a_failing_sink_is_detached_and_the_run_goes_on(tiny_model_dir, tmp_path):
    class Broken(MetricsSink):
        def on_log(self, record):
            raise ZeroDivisionError("plot bug")

    with pytest.warns(RuntimeWarning, match="Broken failed in on_log"):
        summary = train(tiny_config(tiny_model_dir, tmp_path), sinks=[Broken()])
    assert summary.status == "completed" and "plot bug" in summary.warnings[0]


def test_device_reads_happen_only_at_logging_steps(tiny_model_dir, tmp_path, monkeypatch):
    """Twice the steps with the same number of logs performs the same number of Tensor.item() calls."""
    calls = {"n": 0}
    original = torch.Tensor.item

    def counting_item(self):
        calls["n"] += 1
        return original(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    counts = []
    for steps in (4, 8):
        calls["n"] = 0
        summary = train(tiny_config(tiny_model_dir, tmp_path / str(steps), max_steps=steps, logging_steps=steps))
        counts.append(calls["n"])
        assert summary.host_reads["log"] == 1
    assert counts[0] == counts[1]


def test_previews_and_exact_match_are_reported(tiny_model_dir, tmp_path):
    data = [{"prompt": f"What is {i} plus one?", "completion": str(i + 1)} for i in range(10)]
    config = tiny_config(
        tiny_model_dir,
        tmp_path,
        dataset=data,
        eval_split=0.3,
        eval_exact_match=True,
        max_new_tokens=3,
        preview_prompts=["Hello?"],
        max_steps=2,
        max_seq_length=64,
    )
    summary = train(config)
    assert summary.exact_match_before is not None and 0.0 <= summary.exact_match_after <= 1.0
    assert [p["prompt"] for p in summary.preview] == ["Hello?"] and isinstance(
        summary.preview[0]["after"], str
    )
    evals = [r for r in read_metrics(summary.output_dir) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 2] and all("exact_match" in r for r in evals)


def test_the_summary_splits_the_time_into_training_evaluation_and_saving(tiny_model_dir, tmp_path, monkeypatch):
    """Each second is counted once, where it was spent: evaluations and saves during the loop are neither
    training time nor in a logging window's tokens/s, tokens/s is the tokens over the training time, and the
    three together fit in the elapsed time.

    Every preview and checkpoint moves the clock on by a day (no real waiting), so a second counted in the wrong
    place shows as a day, whatever this machine's speed.
    """
    import time

    from lorakit.training import checkpoint, evaluation

    day, offset, real_clock = 86_400.0, [0.0], time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + offset[0])
    preview, save = evaluation.preview, checkpoint.save_run_checkpoint

    def slow_preview(*args, **kwargs):
        offset[0] += day
        return preview(*args, **kwargs)

    def slow_save(*args, **kwargs):
        offset[0] += day
        return save(*args, **kwargs)

    monkeypatch.setattr(evaluation, "preview", slow_preview)
    monkeypatch.setattr(checkpoint, "save_run_checkpoint", slow_save)
    config = tiny_config(tiny_model_dir, tmp_path, eval_split=0.25, eval_steps=2, save_steps=2, max_steps=4,
                         preview_prompts=["the quick"], max_new_tokens=2)
    summary = train(config)
    assert summary.status == "completed", summary.message
    # previews before and after (2 days); checkpoints at steps 2 and 4 and the final one (3 days)
    assert 2 * day <= summary.eval_s < 3 * day and 3 * day <= summary.save_s < 4 * day
    assert 0 < summary.train_s < day  # the checkpoint at step 2, inside the loop, is not training time
    assert summary.train_s + summary.eval_s + summary.save_s <= summary.elapsed_s
    logs = [r for r in read_metrics(summary.output_dir) if r["kind"] == "train"]
    assert summary.tokens_per_s == pytest.approx(logs[-1]["tokens_seen"] / summary.train_s, rel=1e-12)
    assert all(r["tokens_per_s"] > 1e3 / day for r in logs)  # no window holds the day of a checkpoint
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {k: on_disk[k] for k in ("train_s", "eval_s", "save_s", "elapsed_s", "tokens_per_s")} == {
        "train_s": summary.train_s, "eval_s": summary.eval_s, "save_s": summary.save_s,
        "elapsed_s": summary.elapsed_s, "tokens_per_s": summary.tokens_per_s}


def test_exact_match_counts_normalized_hits(monkeypatch):
    from lorakit.training import evaluate

    monkeypatch.setattr(evaluate, "generate_answers", lambda *a, **k: ["8.", "Yes", "7 bits", ""])
    examples = [{"prompt": "p", "completion": c} for c in ("8", "yes", "7", "1")]
    assert evaluate.exact_match(None, None, examples) == 0.5  # "8." and "Yes" count; "7 bits" and "" do not


def test_export_merged_matches_base_plus_adapter(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lorakit.training import export_merged

    summary = train(tiny_config(tiny_model_dir, tmp_path, max_steps=3))
    merged_dir = export_merged(summary.output_dir, tmp_path / "merged")
    ids = torch.tensor([[1, 537, 827, 1296, 2]])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(merged_dir)(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        adapted = PeftModel.from_pretrained(base, summary.adapter_dir)(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(input_ids=ids).logits
    torch.testing.assert_close(merged, adapted, atol=1e-4, rtol=1e-4)
    assert (merged - plain).abs().max() > 1e-3  # the adapter changed something
    assert not any(k.startswith("base_model") for k in json.loads((merged_dir / "config.json").read_text()))
