"""Several processes (CPU, gloo): the same losses as one process, files written once, Stop, errors, resume, FSDP.

The multi-process runs fork this pytest process through accelerate's notebook_launcher, as a notebook does;
each takes a few seconds on the tiny model. The bad-input checks need no process and run in milliseconds.
"""

from __future__ import annotations

import json
import os

import pytest
from tiny import Recorder, tiny_run_config

from lorakit.choices import PRECISIONS
from lorakit.formats import FORMATS
from lorakit.training import StopHandle, TrainConfig, read_metrics, train

# Sentences of different lengths (padding), 13 of them: with a global batch of 4 the last batch of each epoch
# has one row, so rank 1 gets an empty slice there (the case that must not desynchronise the ranks).
SENTENCES = [f"the quick brown fox number {i} jumps over the {'very ' * (i % 4)}lazy dog" for i in range(13)]
STEPS = 6


def config(model_dir, out, **overrides) -> TrainConfig:
    """The suite's tiny run config (tests/tiny.py) in two processes of batch 2 on SENTENCES, writing to ``out``."""
    settings = dict(dataset=SENTENCES, batch_size=2, num_processes=2, max_steps=STEPS, output_dir=str(out))
    return tiny_run_config(model_dir, out, **{**settings, **overrides})


def loss_tolerance(precision: str) -> float:
    """Relative tolerance between two runs' losses in ``precision``: what its rounding allows.

    fp32: 1e-4, for sums taken in another order across processes (fp32's epsilon is 1.2e-7). bf16: its machine
    epsilon, 2^-7: CPUs with native bf16 (AVX512-BF16, AMX) accumulate in another order than the emulation on
    AVX2-only CPUs, and a sharded run in another order than a whole one (seen: 1.4e-3 relative at step 1 of an
    nf4 base on an AVX512-BF16 machine).
    """
    return max(1e-4, FORMATS[PRECISIONS[precision].storage].eps)


def assert_same_losses(got: list[float], want: list[float], precision: str = "fp32") -> None:
    assert len(got) == len(want)
    rel = loss_tolerance(precision)
    for step, (a, b) in enumerate(zip(got, want, strict=True), start=1):
        assert abs(a - b) <= rel * abs(b), f"step {step}: {a} vs {b}, beyond {rel:.1e} (all: {got} vs {want})"


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """One process with batch_size 4, and two processes with batch_size 2: the same global batches."""
    base = tmp_path_factory.mktemp("distributed")
    one, two = Recorder(), Recorder()
    single = train(config(tiny_model_dir, base / "one", batch_size=4, num_processes=1), sinks=[one])
    double = train(config(tiny_model_dir, base / "two"), sinks=[two])
    return {"one": (single, one), "two": (double, two), "base": base}


@pytest.mark.slow
def test_two_processes_log_the_losses_of_one_process(runs):
    (single, one), (double, two) = runs["one"], runs["two"]
    assert single.status == double.status == "completed", (single.message, double.message)
    assert_same_losses([r["loss"] for r in two.logs()], [r["loss"] for r in one.logs()])
    assert [r["tokens_seen"] for r in two.logs()] == [r["tokens_seen"] for r in one.logs()]  # global counts


@pytest.mark.slow
def test_files_are_written_once_and_the_adapter_loads(runs, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    double, two = runs["two"]
    out = runs["base"] / "two"
    assert [r["step"] for r in read_metrics(out)] == list(range(1, STEPS + 1))  # one line per step, not two
    assert json.loads((out / "summary.json").read_text())["num_processes"] == 2
    assert json.loads((out / "checkpoint" / "state.json").read_text())["num_processes"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["adapter", "checkpoint", "config.json", "metrics.jsonl",
                                                     "summary.json"]
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), double.adapter_dir)
    start = two.events[0][1]
    assert (start["num_processes"], start["distributed"], start["global_batch_size"]) == (2, "ddp", 4)
    assert double.global_batch_size == 4
    memory = two.logs()[-1]["memory_by_rank"]  # every rank's memory reaches the caller's sinks
    assert len(memory) == 2 and all(m["rss_bytes"] > 0 for m in memory)
    assert two.logs()[-1]["rss_bytes"] == max(m["rss_bytes"] for m in memory)


@pytest.mark.slow
def test_stop_ends_every_rank_with_files_on_disk_and_resume_continues(runs, tiny_model_dir, tmp_path):
    stop = StopHandle()
    recorder = Recorder(stop, stop_at=2)
    stopped = train(config(tiny_model_dir, tmp_path / "run"), sinks=[recorder], stop=stop)
    assert stopped.status == "stopped", stopped.message
    assert 2 <= stopped.steps_done < STEPS
    checkpoint = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert checkpoint["step"] == stopped.steps_done and checkpoint["num_processes"] == 2
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()

    resumed = Recorder()
    done = train(config(tiny_model_dir, tmp_path / "run"), sinks=[resumed], resume_from=tmp_path / "run")
    assert done.status == "completed" and done.steps_done == STEPS, done.message
    uninterrupted = [r["loss"] for r in runs["two"][1].logs()]
    assert_same_losses([r["loss"] for r in resumed.logs()], uninterrupted[stopped.steps_done:])
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == list(range(1, STEPS + 1))


@pytest.mark.slow
def test_an_error_on_rank_1_ends_the_run_with_its_message(tiny_model_dir, tmp_path, monkeypatch):
    from lorakit.training import step

    loss, calls = step.batch_loss, []

    def failing_loss(parts, batch, n_targets):  # the ranks are forked from this process: they inherit the patch
        calls.append(n_targets)  # one call per optimizer step here: no accumulation, no evaluation
        if os.environ.get("RANK") == "1" and len(calls) == 3:  # in the third step, after steps 1 and 2
            raise RuntimeError("rank one cannot go on")
        return loss(parts, batch, n_targets)

    monkeypatch.setattr(step, "batch_loss", failing_loss)
    summary = train(config(tiny_model_dir, tmp_path / "run"), sinks=[Recorder()])
    assert summary.status == "error"
    assert "rank one cannot go on" in summary.message and "rank 1 of 2" in summary.message, summary.message
    assert "rank one cannot go on" in summary.traceback  # rank 1's traceback, not rank 0's broken collective
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["status"] == "error" and on_disk["message"] == summary.message
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2]


@pytest.mark.slow
def test_fsdp_trains_like_one_process_saves_a_whole_adapter_and_resumes(runs, tiny_model_dir, tmp_path):
    """FSDP2 over gloo: one process's losses, an adapter gathered whole, a checkpoint that resumes."""
    from safetensors.torch import load_file

    stop = StopHandle()
    first = Recorder(stop, stop_at=3)
    cut = train(config(tiny_model_dir, tmp_path / "run", distributed="fsdp", save_steps=2,
                       preview_prompts=["the quick"]), sinks=[first], stop=stop)
    # stopped: generate() ran on the sharded model before and after training (an exception would say error)
    assert cut.status == "stopped", cut.message + (cut.traceback or "")
    one = [r["loss"] for r in runs["one"][1].logs()]
    assert_same_losses([r["loss"] for r in first.logs()], one[: cut.steps_done])
    adapter = load_file(tmp_path / "run" / "adapter" / "adapter_model.safetensors")
    whole = load_file(runs["base"] / "two" / "adapter" / "adapter_model.safetensors")
    assert {k: v.shape for k, v in adapter.items()} == {k: v.shape for k, v in whole.items()}

    rest = Recorder()
    resumed = train(config(tiny_model_dir, tmp_path / "run", distributed="fsdp"), sinks=[rest],
                    resume_from=tmp_path / "run")
    assert resumed.status == "completed", resumed.message + (resumed.traceback or "")
    assert_same_losses([r["loss"] for r in rest.logs()], one[cut.steps_done :])


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_fsdp_on_a_bf16_base_trains_like_ddp(tiny_model_dir, tmp_path, quantization):
    """LoRA on a sharded bf16 base, and the QLoRA recipe (4-bit codes stored in bf16, the compute dtype)."""
    settings = dict(precision="bf16", quantization=quantization, max_steps=2)  # bf16 is emulated on most CPUs
    if quantization == "nf4":
        settings.update(bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype="bf16")  # TrainConfig.qlora()
    fsdp, ddp = Recorder(), Recorder()
    sharded = train(config(tiny_model_dir, tmp_path / "fsdp", distributed="fsdp", **settings), sinks=[fsdp])
    assert sharded.status == "completed", sharded.message + (sharded.traceback or "")
    train(config(tiny_model_dir, tmp_path / "ddp", **settings), sinks=[ddp])
    assert_same_losses([r["loss"] for r in fsdp.logs()], [r["loss"] for r in ddp.logs()], precision="bf16")


def test_the_qlora_fsdp_recipe_stores_4_bit_codes_in_the_compute_dtype():
    import torch

    recipe = TrainConfig.qlora(num_processes=2, distributed="fsdp").bnb_config()
    assert recipe.bnb_4bit_quant_storage == recipe.bnb_4bit_compute_dtype == torch.bfloat16
    fp32 = TrainConfig(num_processes=2, distributed="fsdp", quantization="nf4", bnb_4bit_compute_dtype="fp32")
    assert fp32.bnb_config().bnb_4bit_quant_storage == torch.float32
    assert TrainConfig(quantization="nf4").bnb_config().bnb_4bit_quant_storage == torch.uint8  # DDP: as usual


@pytest.mark.slow
def test_the_trainer_panel_starts_the_processes_plots_every_rank_and_stops_them(tiny_model_dir, tmp_path):
    """The panel calls lorakit.train in its thread; its dashboard gets rank 0's events, its Stop ends both."""
    import time

    from lorakit.widgets.trainer_panel import TrainerPanel

    panel = TrainerPanel(config(tiny_model_dir, tmp_path / "run", max_steps=500))
    assert panel.start()
    deadline = time.monotonic() + 300
    while len(panel.dashboard.history) < 2 and time.monotonic() < deadline and panel.running:
        time.sleep(0.2)
    panel.stop()
    summary = panel.wait(timeout=300)
    assert summary is not None and summary.status == "stopped", panel.error or summary
    assert len(panel.dashboard.history[-1]["memory_by_rank"]) == 2
    from lorakit.widgets.run_text import describe_setup

    assert "2 processes (ddp), global batch 4" in describe_setup(panel.dashboard.info)
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()
    assert (tmp_path / "run" / "checkpoint" / "state.json").exists()


def test_the_memory_plot_has_one_curve_per_rank():
    from lorakit.viz.training import rank_memory_series

    steps = [[{"rss_bytes": 10, "mem_allocated_bytes": None}, {"rss_bytes": 12, "mem_allocated_bytes": None}],
             [{"rss_bytes": 11, "mem_allocated_bytes": None}, {"rss_bytes": 13, "mem_allocated_bytes": None}]]
    assert rank_memory_series(steps) == {"rank 0 process RSS": [10, 11], "rank 1 process RSS": [12, 13]}
    gpu = [[{"rss_bytes": 1, "mem_allocated_bytes": 5}, {"rss_bytes": 1, "mem_allocated_bytes": 6}]]
    assert rank_memory_series(gpu) == {"rank 0 GPU allocated": [5], "rank 1 GPU allocated": [6]}
    assert rank_memory_series([None, None]) == {}


# ---- bad input: refused before any process starts ----------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"num_processes": 0}, "num_processes=0 is out of range"),
        ({"num_processes": -2}, "num_processes=-2 is out of range"),
        ({"distributed": "deepspeed"}, "distributed: 'deepspeed' is not allowed; choose one of 'ddp', 'fsdp'"),
        ({"distributed": "fsdp", "quantization": "int8"}, "cannot shard quantization='int8'"),
        ({"distributed": "fsdp", "num_processes": 1}, "needs num_processes >= 2"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(overrides, words):
    with pytest.raises(ValueError) as info:
        TrainConfig(**{"num_processes": 2, **overrides})
    assert words in str(info.value)


def test_more_processes_than_gpus_is_refused_before_any_process_starts(monkeypatch):
    from lorakit.training import launch

    monkeypatch.setattr(launch, "_gpu_count", lambda: 2)
    monkeypatch.setattr("lorakit.training.preflight.resolve_device", lambda config: "cuda")
    with pytest.raises(ValueError, match=r"num_processes=4 but this machine has 2 GPU\(s\)"):
        train(TrainConfig(num_processes=4))


def test_what_one_process_refuses_is_refused_before_the_processes_start():
    with pytest.raises(ValueError, match="matmul mode of NVIDIA tensor cores"):
        train(TrainConfig(num_processes=2, precision="tf32", device="cpu"))


def test_resuming_with_another_number_of_processes_is_refused(tmp_path):
    checkpoint = tmp_path / "run" / "checkpoint"
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.json").write_text(json.dumps({"step": 3, "num_processes": 2}))
    for n in (1, 3):
        with pytest.raises(ValueError, match=rf"num_processes={n}: it was trained by 2 process"):
            train(TrainConfig(num_processes=n, device="cpu"), resume_from=tmp_path / "run")


def test_the_global_batch_counts_every_process_and_accumulation_step():
    assert TrainConfig(batch_size=2, num_processes=4, gradient_accumulation_steps=3).global_batch_size == 24
    assert TrainConfig(batch_size=8).global_batch_size == 8
