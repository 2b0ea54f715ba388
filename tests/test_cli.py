"""The command line: train a YAML config end to end, clear errors, prepare-model, export, explain."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lorakit.cli import main
from lorakit.training import read_metrics


def _write_config(tmp_path, model_dir, **extra) -> str:
    import yaml

    settings = {
        "model": str(model_dir),
        "dataset": ["the quick brown fox jumps over the lazy dog"] * 8,
        "per_device_train_batch_size": 4,
        "max_steps": 4,
        "logging_steps": 1,
        "learning_rate": 0.01,
        "eval_split": 0.0,
        "max_seq_length": 32,
        "output_dir": str(tmp_path / "run"),
        **extra,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def test_train_end_to_end_with_progress_and_files(tiny_model_dir, tmp_path, capsys):
    code = main(["train", _write_config(tmp_path, tiny_model_dir), "--set", "max_steps=3"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "[" + "#" * 30 + "] 3/3 loss" in err and "completed: Completed 3 steps" in err
    assert out.strip().endswith(str(tmp_path / "run"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    times = next(line for line in err.splitlines() if line.startswith("Time: "))  # the final line says each time
    assert f"training {summary['train_s']:.1f} s ({summary['tokens_per_s']:,.0f} tokens/s)" in times, times
    assert f"evaluation {summary['eval_s']:.1f} s, saving {summary['save_s']:.1f} s" in times, times
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["max_steps"] == 3
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()


def test_resume_from_the_command_line(tiny_model_dir, tmp_path, capsys):
    config = _write_config(tmp_path, tiny_model_dir)
    assert main(["train", config, "--set", "max_steps=2"]) == 0
    assert main(["train", config, "--resume", str(tmp_path / "run")]) == 0
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3, 4]


def test_configuration_errors_exit_2_with_the_advice(tiny_model_dir, tmp_path, capsys):
    code = main(["train", _write_config(tmp_path, tiny_model_dir, precision="tf32", device="cpu")])
    assert code == 2
    assert "matmul mode of NVIDIA tensor cores" in capsys.readouterr().err
    assert main(["train", _write_config(tmp_path, tiny_model_dir), "--set", "r=0"]) == 2


def test_explain_prints_bits_and_stored_value(capsys):
    assert main(["explain", "65504", "--format", "fp16"]) == 0
    out = capsys.readouterr().out
    assert "0111101111111111" in out and "stored 65504" in out


def test_module_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "lorakit.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "prepare-model" in out.stdout and "train" in out.stdout


@pytest.mark.slow
def test_prepare_model_and_export(embedded_model_dir, tiny_model_dir, tmp_path, capsys):
    assert main(["prepare-model"]) == 0
    assert capsys.readouterr().out.strip() == str(embedded_model_dir)
    assert main(["train", _write_config(tmp_path, tiny_model_dir, max_steps=2)]) == 0
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "model.safetensors").exists()


def test_bad_num_processes_exits_2_before_any_process_starts(tiny_model_dir, tmp_path, capsys):
    assert main(["train", _write_config(tmp_path, tiny_model_dir), "--num-processes", "0"]) == 2
    assert "num_processes=0 is out of range" in capsys.readouterr().err
    config = _write_config(tmp_path, tiny_model_dir, distributed="fsdp", quantization="int8")
    assert main(["train", config, "--num-processes", "2"]) == 2
    assert "cannot shard quantization='int8'" in capsys.readouterr().err


@pytest.mark.slow
def test_num_processes_2_runs_under_torchrun_with_the_losses_of_one_process(tiny_model_dir, tmp_path, capfd):
    """Two processes of batch 2 through torchrun log what one process of batch 4 logs."""
    config = _write_config(tmp_path, tiny_model_dir, device="cpu")
    assert main(["train", config, "--set", f"output_dir={tmp_path / 'one'}"]) == 0
    assert main(["train", config, "--num-processes", "2", "--set", "per_device_train_batch_size=2"]) == 0
    err = capfd.readouterr().err
    assert "x 2 processes (ddp), global batch 4" in err and "completed: Completed 4 steps" in err
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "run")
    assert [r["step"] for r in two] == [1, 2, 3, 4]  # rank 0 alone wrote the log
    for a, b in zip(two, one, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * b["loss"], (two, one)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["num_processes"] == 2


def test_the_console_says_compiling_and_then_the_compile_time(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from lorakit.training import compile as compile_module

    monkeypatch.setattr(compile_module, "BACKEND", "aot_eager")  # dynamo's path without generating C++
    monkeypatch.setenv("LORAKIT_CACHE_DIR", str(tmp_path / "cache"))  # compile_times.json of its own
    code = main(["train", _write_config(tmp_path, tiny_model_dir, device="cpu"), "--set", "compile=true"])
    _, err = capsys.readouterr()
    assert code == 0
    assert "compile: True (set in the config)" in err
    compiling, compiled = err.index("compiling 2 decoder blocks"), err.index("compiled the decoder blocks in")
    assert compiling < compiled < err.index("completed: Completed 4 steps")


def test_the_console_shows_held_out_answers_and_how_far_answering_is(tiny_model_dir, tmp_path, capsys):
    data = [{"prompt": f"What is {i} plus one?", "completion": str(i + 1)} for i in range(20)]
    code = main(["train", _write_config(tmp_path, tiny_model_dir, dataset=data, eval_split=0.3, max_steps=1,
                                        max_seq_length=64, max_new_tokens=2, preview_examples=1)])
    out, err = capsys.readouterr()
    assert code == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (row,) = summary["preview"]
    assert f"Q: {row['prompt']}\n  held-out answer: {row['expected']}\n  before: " in out
    assert "\r  1 of 1 preview prompts answered\n" in err
